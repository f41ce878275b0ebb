"""The offline default model on real images: the search results a user sees."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, SAMPLES
from xmr.index import IndexStore, index_folder
from xmr.retrieval import search_index

CAPTIONS = json.loads((SAMPLES / "captions.json").read_text())


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory, concept_encoder):
    import shutil

    photos = tmp_path_factory.mktemp("photos")
    for f in CAPTIONS:
        shutil.copy(SAMPLES / f, photos / f)
    shutil.copy(FIXTURES / "truncated.jpg", photos / "truncated.jpg")
    index = tmp_path_factory.mktemp("idx") / "index"
    rep = index_folder(photos, index, concept_encoder, show_progress=False)
    return index, rep


def test_truncated_jpeg_reported_and_skipped(sample_index):
    _, rep = sample_index
    assert rep.total == 8
    assert [Path(p).name for p, _ in rep.skipped] == ["truncated.jpg"]


def test_tabby_cat_query_finds_chelsea_first(sample_index, concept_encoder):
    index, _ = sample_index
    with IndexStore(index) as st:
        res = search_index(st, concept_encoder, text="a facial photo of a tabby cat", k=8)
    assert Path(res[0].path).name == "chelsea.png"
    assert len(res) == 8 and all(res[i].score >= res[i + 1].score for i in range(7))


def test_captions_find_their_own_image(sample_index, concept_encoder):
    index, _ = sample_index
    hits = []
    with IndexStore(index) as st:
        for fname, cap in CAPTIONS.items():
            hits.append(Path(search_index(st, concept_encoder, text=cap, k=1)[0].path).name == fname)
    assert sum(hits) >= 6, dict(zip(CAPTIONS, hits))


def test_image_query_finds_itself(sample_index, concept_encoder):
    index, _ = sample_index
    with IndexStore(index) as st:
        res = search_index(st, concept_encoder, image=SAMPLES / "coffee.png", k=1)
    assert Path(res[0].path).name == "coffee.png" and res[0].score == pytest.approx(1.0, abs=1e-4)


def test_embeddings_are_normalised_and_batch_invariant(concept_encoder):
    files = [SAMPLES / f for f in list(CAPTIONS)[:3]]
    a = concept_encoder.encode_images(files, batch_size=1)
    b = concept_encoder.encode_images(files, batch_size=3)
    np.testing.assert_allclose(a, b, atol=1e-5)
    t = concept_encoder.encode_text(["a dog", "a red car on a road", "x"])
    assert a.dtype == np.float32 and a.shape == (3, concept_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)


def test_concept_presets_and_bad_variant():
    from xmr.encoders.concept import ConceptConfig, resolve_concept_config
    from xmr.errors import ConfigError

    assert resolve_concept_config(None) == ConceptConfig(adapter="flickr8k-coco-logits", adapter_weight=0.3, caption_weight=0.3,
                                                         rescore="qbnorm", querybank="multi30k-en-train-5k")
    assert resolve_concept_config("zeroshot") == ConceptConfig()  # no re-scoring by default (docs/concept.md)
    assert resolve_concept_config("fast").views == "center"
    with pytest.raises(ConfigError, match="Available"):
        resolve_concept_config("nope")
    with pytest.raises(ConfigError):
        ConceptConfig(space="banana")
