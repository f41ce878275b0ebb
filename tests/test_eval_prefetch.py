"""`xmr eval`'s image gallery through the prefetching path (worker threads decode / preprocess the next batches):
the same similarities as the sequential reference path, bad files all named, frame snap recorded."""
from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

from conftest import FIXTURES, SAMPLES


def _sample_paths():
    return sorted(str(p) for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg"))


@pytest.mark.parametrize("name", ["concept", "tiny"])
def test_prefetched_gallery_equals_sequential(name, concept_encoder, tiny_encoder):
    """Split-API encoder (concept: views built in the workers) and plain encoder (tiny: images decoded in the
    workers): bit-identical embeddings, hence identical similarity matrices, whatever the batch size / workers."""
    from xmr.eval._images import encode_images_prefetched

    enc = concept_encoder if name == "concept" else tiny_encoder
    paths = _sample_paths() + _sample_paths()[:3]  # 12 files: batches of 5 leave a remainder
    bad: list[str] = []
    ref = encode_images_prefetched(paths, enc, 5, bad, workers=0)
    assert not bad and ref.shape == (len(paths), enc.dim)
    texts = enc.encode_text(["an astronaut", "a cup of coffee", "a cat"])
    for workers, ahead in ((1, 1), (3, 2)):
        got = encode_images_prefetched(paths, enc, 5, bad, workers=workers, ahead=ahead)
        assert not bad
        assert np.array_equal(got, ref)
        assert np.array_equal(texts @ got.T, texts @ ref.T)


def test_eval_results_identical_with_and_without_prefetch(tiny_encoder):
    from xmr.data import load_dataset
    from xmr.eval import evaluate_model

    ds = load_dataset(f"coco:{FIXTURES / 'coco_tiny'}")
    a = evaluate_model(ds, tiny_encoder, batch_size=2, prefetch_workers=0)
    b = evaluate_model(ds, tiny_encoder, batch_size=2, prefetch_workers=2)
    assert a["t2i"] == b["t2i"] and a["i2t"] == b["i2t"] and a["fingerprint"] == b["fingerprint"]


def test_workers_overlap_decoding_with_encoding(tiny_encoder, monkeypatch):
    """While the model encodes batch 1, batch 2's files are decoded by worker threads (the encode call waits until
    a worker starts on them: with a sequential loop that would never happen, and the wait times out)."""
    from xmr.eval import _images
    from xmr.media import image as image_mod

    paths = _sample_paths()[:6]
    second_batch = set(paths[2:4])
    started = threading.Event()
    decoders: set[str] = set()
    real_load = image_mod.load_image

    def load(p, **kw):
        decoders.add(threading.current_thread().name)
        if p in second_batch:
            started.set()
        return real_load(p, **kw)

    seen: list[bool] = []

    class Spy:
        dim, split_preprocessing = tiny_encoder.dim, False

        def encode_images(self, images, **kw):
            if not seen:
                seen.append(started.wait(timeout=20))
            return tiny_encoder.encode_images(images, **kw)

    monkeypatch.setattr("xmr.index.prefetch.load_image", load)
    out = _images.encode_images_prefetched(paths, Spy(), 2, [], workers=2, ahead=1)
    assert out.shape == (6, tiny_encoder.dim)
    assert seen == [True]
    assert decoders and all(t.startswith("xmr-prefetch") for t in decoders)


def test_bad_files_all_named_and_nothing_dropped(tmp_path, tiny_encoder):
    from xmr.errors import MediaError
    from xmr.eval._images import encode_images_prefetched

    paths = [str(p) for p in _sample_paths()[:4]]
    broken = tmp_path / "broken.jpg"
    shutil.copy(FIXTURES / "truncated.jpg", broken)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    bad: list[str] = []
    out = encode_images_prefetched([paths[0], str(broken), *paths[1:], str(empty)], tiny_encoder, 2, bad, workers=2)
    assert out is None
    assert len(bad) == 2 and str(broken) in bad[0] and str(empty) in bad[1]
    from xmr.data import load_dataset
    from xmr.eval import evaluate_model

    rows = [{"image": p, "caption": f"photo {i}"} for i, p in enumerate([paths[0], str(broken), *paths[1:]])]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_dataset(f"manifest:{tmp_path / 'm.jsonl'}")
    with pytest.raises(MediaError, match="1 gallery file") as e:
        evaluate_model(ds, tiny_encoder, batch_size=2)
    assert "broken.jpg" in str(e.value)


def test_eval_cli_checks_new_flags(capsys):
    from xmr.cli import main

    for flag, value in (("--frame-snap", "0.7"), ("--frame-snap", "-1"), ("--frame-snap", "nan"),
                        ("--prefetch-workers", "-1")):
        code = main(["eval", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}", "--model", "tiny", flag, value])
        assert code == 2
        assert flag in capsys.readouterr().err


def test_eval_api_refuses_bad_snap_and_workers(tiny_encoder):
    from xmr.data import load_dataset
    from xmr.errors import ConfigError
    from xmr.eval import evaluate_model

    ds = load_dataset(f"coco:{FIXTURES / 'coco_tiny'}")
    for v in (0.6, -0.1, float("nan"), True):
        with pytest.raises(ConfigError, match="frame_snap"):
            evaluate_model(ds, tiny_encoder, frame_snap=v)
    for w in (-1, 65, 1.5, True):
        with pytest.raises(ConfigError, match="prefetch_workers"):
            evaluate_model(ds, tiny_encoder, prefetch_workers=w)


def test_video_eval_snap_recorded_in_fingerprint(tmp_path, tiny_encoder):
    pytest.importorskip("av")
    from _video_clips import make_clip
    from xmr.data import load_dataset
    from xmr.eval import evaluate_model

    for i in range(2):
        make_clip(tmp_path / f"v{i}.mp4", n_frames=40, fps=10, gop=10)
    rows = [{"media": f"v{i}.mp4", "captions": [f"clip {i}"]} for i in range(2)]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_dataset(f"manifest:{tmp_path / 'm.jsonl'}")
    exact = evaluate_model(ds, tiny_encoder, num_frames=4)
    snapped = evaluate_model(ds, tiny_encoder, num_frames=4, frame_snap=0.5)
    assert "frame_snap" not in exact["fingerprint"]["video"]
    assert snapped["fingerprint"]["video"]["frame_snap"] == 0.5
    # the id names the benchmark (same data, same protocol); the sampling is a property of the run, recorded beside it
    assert snapped["fingerprint"]["id"] == exact["fingerprint"]["id"]
    assert snapped["fingerprint"]["video"]["frames"] == exact["fingerprint"]["video"]["frames"] == 4
