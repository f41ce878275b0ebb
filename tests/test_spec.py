"""xmr.spec.parse_spec: the one NAME[:ARG] parser, and the callers that use it keep their syntax and errors."""
from __future__ import annotations

import dataclasses

import pytest

from xmr.errors import ConfigError
from xmr.spec import Spec, parse_spec


@pytest.mark.parametrize("text,name,arg", [
    ("tiny", "tiny", None),
    ("tiny:", "tiny", ""),
    ("  hf:openai/clip-vit-base-patch32 ", "hf", "openai/clip-vit-base-patch32"),
    ("openclip:ViT-B-32:laion2b_s34b_b79k", "openclip", "ViT-B-32:laion2b_s34b_b79k"),  # first colon only
    ("openclip:ViT-B-32:C:\\ckpt.pt", "openclip", "ViT-B-32:C:\\ckpt.pt"),
    ("video:tiny+xpool@/h", "video", "tiny+xpool@/h"),
    (":x", "", "x"),
])
def test_split_at_the_first_colon(text, name, arg):
    s = parse_spec(text)
    assert (s.name, s.arg, s.raw, str(s)) == (name, arg, text.strip(), text.strip())
    n, a = s  # unpacks like the old (name, arg) tuples
    assert (n, a) == (name, arg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "x"


@pytest.mark.parametrize("text", ["", "   ", None, 3])
def test_empty_specs_name_the_kind(text):
    with pytest.raises(ConfigError, match=r"empty re-ranker spec .*; e\.g\. xattn:DIR"):
        parse_spec(text, "re-ranker", hint="e.g. xattn:DIR")


def test_default_replaces_a_missing_spec():
    assert parse_spec(None, default="concept") == Spec("concept", None, "concept")
    assert parse_spec("  ", default="concept:fast").arg == "fast"
    assert parse_spec("tiny", default="concept").name == "tiny"


def test_callers_keep_their_syntax_and_errors():
    from xmr.encoders import create_encoder
    from xmr.encoders import parse_spec as encoder_spec
    from xmr.encoders.openclip import parse_arg
    from xmr.multiquery import parse_fuse_spec
    from xmr.rerank import create_reranker

    assert encoder_spec(" hf:./m ") == ("hf", "./m") and encoder_spec("tiny") == ("tiny", None)
    with pytest.raises(ConfigError, match="empty encoder spec ''; try 'concept'"):
        create_encoder("")
    with pytest.raises(ConfigError, match="unknown encoder 'nope'. Available: concept"):
        create_encoder("nope:x")
    assert parse_arg("ViT-B-32:laion2b") == ("ViT-B-32", "laion2b") and parse_arg("ViT-B-32:") == ("ViT-B-32", None)
    assert parse_arg("hf-hub:org/x") == ("hf-hub:org/x", None)
    assert parse_fuse_spec("max") == ("max", None)
    with pytest.raises(ConfigError, match="takes no argument"):
        parse_fuse_spec("max:3")
    with pytest.raises(ConfigError, match="learned:DIR"):
        parse_fuse_spec("learned")
    with pytest.raises(ConfigError, match="empty re-ranker spec"):
        create_reranker(" ")
    with pytest.raises(ConfigError, match="needs a model: xattn:DIR"):
        create_reranker("xattn:")


def test_dataset_specs_keep_their_richer_syntax():
    from xmr.data import parse_dataset_spec

    assert parse_dataset_spec("coco:/d:val2017?captions=first5") == ("coco", "/d", {"split": "val2017",
                                                                                   "captions": "first5"})
    assert parse_dataset_spec("/data/eval.jsonl:test") == ("manifest", "/data/eval.jsonl", {"split": "test"})
    assert parse_dataset_spec("/x/dataset_coco.json?root=C:/imgs") == ("karpathy", "/x/dataset_coco.json",
                                                                      {"root": "C:/imgs"})
    with pytest.raises(ConfigError, match="empty dataset spec"):
        parse_dataset_spec(" ")
    with pytest.raises(ConfigError, match="no dataset scheme in '\\?x=1'"):
        parse_dataset_spec("?x=1")
    with pytest.raises(ConfigError, match="unknown dataset scheme 'nope'"):
        parse_dataset_spec("nope:/x")
