"""`xmr eval` on a video dataset: 12 frames sampled uniformly, encoded, mean-pooled; bad clips stop the run with their names."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SHARED_DATA, requires_shared

pytest.importorskip("av")


@pytest.fixture(scope="module")
def synth_manifest(tmp_path_factory):
    from xmr.synth.videos import generate_videos

    return generate_videos(tmp_path_factory.mktemp("synth"), n=6, seed=1)


def test_video_eval_matches_hand_pooled_embeddings(synth_manifest, tiny_encoder):
    from xmr.data import load_dataset
    from xmr.eval import evaluate_model, evaluate_sims
    from xmr.video import item_frames, mean_pool

    ds = load_dataset(f"manifest:{synth_manifest}")
    res = evaluate_model(ds, tiny_encoder, show_progress=False)
    assert res["fingerprint"]["num_gallery_items"] == 6 and set(res["t2i"]) >= {"R@1", "MdR"}
    assert res["fingerprint"]["video"]["frames"] == 12
    # the same numbers from 12 uniformly sampled frames per clip, mean-pooled by hand
    vids = np.stack([mean_pool(tiny_encoder.encode_images(item_frames(it, 12, 224)), None) for it in ds.items])
    expected = evaluate_sims(tiny_encoder.encode_text(ds.texts) @ vids.T, ds.text_to_item)
    assert res["t2i"] == pytest.approx(expected["t2i"]) and res["i2t"] == pytest.approx(expected["i2t"])


def test_bad_clip_in_gallery_is_named(tmp_path, synth_manifest, tiny_encoder):
    from xmr.data import load_dataset
    from xmr.errors import MediaError
    from xmr.eval import evaluate_model

    lines = synth_manifest.read_text().splitlines()[:2]
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 2000)
    lines.append(json.dumps({"media": str(bad), "captions": ["nothing"]}))
    rows = [json.loads(l) for l in lines]
    for r in rows:
        if not r["media"].startswith("/"):
            r["media"] = str(synth_manifest.parent / r["media"])
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(MediaError, match="broken.mp4"):
        evaluate_model(load_dataset(f"manifest:{m}"), tiny_encoder, show_progress=False)


@requires_shared
def test_msrvtt_mini_eval_cli(capsys):
    from xmr.cli import main

    spec = f"msrvtt:{SHARED_DATA / 'msrvtt-mini' / 'captions_test.jsonl'}"
    assert main(["-q", "eval", "--dataset", spec, "--model", "tiny", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["fingerprint"]["num_gallery_items"] == 2 and res["fingerprint"]["num_queries_t2i"] == 2
