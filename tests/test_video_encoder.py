"""``video:<image spec>+<head>[@DIR]``: a trained temporal head used by `xmr index`, `xmr search` and `xmr eval`."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("av")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from xmr.synth.videos import generate_videos

    return generate_videos(tmp_path_factory.mktemp("synth"), n=6, seed=3)


@pytest.fixture(scope="module")
def seq_head(tmp_path_factory, synth):
    from xmr.cli import main

    out = tmp_path_factory.mktemp("heads") / "seq"
    assert main(["-q", "train-head", "--dataset", f"manifest:{synth}", "--split", "all", "--encoder", "tiny",
                 "--head", "seqtransf", "--out", str(out), "--epochs", "1"]) == 0
    return out


def test_spec_parsing():
    from xmr.encoders.video import parse_video_arg
    from xmr.errors import ConfigError

    assert parse_video_arg("concept+mean") == ("concept", "mean", None)
    assert parse_video_arg("hf:/m/x+seqtransf@/h/seq") == ("hf:/m/x", "seqtransf", "/h/seq")
    for bad in (None, "concept", "+mean", "concept+mean@"):
        with pytest.raises(ConfigError):
            parse_video_arg(bad)


def test_unsuitable_heads_are_refused(tmp_path):
    from xmr import create_encoder
    from xmr.errors import ConfigError
    from xmr.heads import create_head

    with pytest.raises(ConfigError, match="train-head"):
        create_encoder("video:tiny+seqtransf")  # trained head without weights
    create_head("ts2net", dim=64, width=64).save(tmp_path / "ts")
    with pytest.raises(ConfigError, match="patch tokens"):  # concept has no patch tokens
        create_encoder(f"video:concept:fast+ts2net@{tmp_path / 'ts'}")
    create_head("ts2net", dim=64, width=32, heads=4).save(tmp_path / "ts32")
    with pytest.raises(ConfigError, match="width 32"):
        create_encoder(f"video:tiny+ts2net@{tmp_path / 'ts32'}")
    create_head("seqtransf", dim=32).save(tmp_path / "small")
    with pytest.raises(ConfigError, match="dim 32"):
        create_encoder(f"video:tiny+seqtransf@{tmp_path / 'small'}")
    with pytest.raises(ConfigError, match="holds a 'seqtransf'"):
        create_encoder(f"video:tiny+mean@{tmp_path / 'small'}")


def test_trained_head_pools_index_vectors(tmp_path, synth, seq_head, capsys):
    from xmr import create_encoder
    from xmr.cli import main
    from xmr.heads import load_head
    from xmr.index import IndexStore
    from xmr.video import VideoIndexConfig, embed_video

    spec = f"video:tiny+seqtransf@{seq_head}"
    enc = create_encoder(spec)
    index = tmp_path / "idx"
    assert main(["-q", "index", str(synth.parent), "--index", str(index), "--model", spec]) == 0
    capsys.readouterr()
    assert main(["-q", "search", "a red circle", "--index", str(index), "--json", "--k", "3"]) == 0
    res = json.loads(capsys.readouterr().out)["results"]
    assert len(res) == 3 and all(r["media_type"] == "video" and "start" in r for r in res)
    # the stored vector of a clip is the head's pooling of its frame embeddings, not the plain mean
    clip = sorted((synth.parent / "videos").glob("*.mp4"))[0]
    head = load_head(seq_head)
    want = embed_video(clip, enc.base, VideoIndexConfig(), pool=head.as_pool()).vector
    want = want / np.linalg.norm(want)
    plain = embed_video(clip, enc.base, VideoIndexConfig()).vector
    with IndexStore(index) as st:
        row = st.db.execute("SELECT id FROM items WHERE path=?", (str(clip),)).fetchone()
        got = next(v for ids, vecs in st.iter_vectors() for i, v in zip(ids, vecs) if i == row[0])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(got, plain, atol=1e-3)


def test_index_stores_absolute_head_path_so_search_works_from_anywhere(tmp_path, synth, seq_head, monkeypatch,
                                                                         capsys):
    import shutil

    from xmr.cli import main
    from xmr.encoders import absolute_spec
    from xmr.index import IndexStore

    work = tmp_path / "work"
    shutil.copytree(seq_head, work / "heads" / "seq")
    monkeypatch.chdir(work)
    assert absolute_spec("video:tiny+seqtransf@heads/seq") == f"video:tiny+seqtransf@{work / 'heads' / 'seq'}"
    assert absolute_spec("hf:openai/clip-vit-base-patch32") == "hf:openai/clip-vit-base-patch32"  # not a path
    index = tmp_path / "idx"
    assert main(["-q", "index", str(synth.parent), "--index", str(index), "--model",
                 "video:tiny+seqtransf@heads/seq"]) == 0
    with IndexStore(index) as st:
        assert st.model_spec == f"video:tiny+seqtransf@{work / 'heads' / 'seq'}"
    # the same model written relatively is accepted on a re-run; search runs from another directory
    assert main(["-q", "index", str(synth.parent), "--index", str(index), "--model",
                 "video:tiny+seqtransf@heads/seq"]) == 0
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["-q", "search", "a red circle", "--index", str(index), "--json", "--k", "1"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 1
