"""One frames -> features path (xmr.video): the sampling plan reproduces the index's fps grid and the train/eval
uniform sampler bit-for-bit; frame features follow the encoder's declared capabilities; pooling is the head's or
meanP; the index records its plan."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import FIXTURES
from xmr.errors import ConfigError, MediaError
from xmr.video import FramePlan, VideoIndexConfig, encode_frames, mean_pool, pool_frames

CLIP = FIXTURES / "video" / "video9771.mp4"  # 320x240, 13.98 s


def _old_frame_times(duration, fps, min_frames, max_frames):
    """xmr.index.video.frame_times as it was before the move (the rule every existing index was built with)."""
    n = duration * fps
    if n > max_frames:
        scale = n / max_frames
        n = max_frames
    else:
        scale = 1.0
    n = int(min(max_frames, max(min_frames, math.floor(n + 0.5))))
    return (np.arange(n) + 0.5) * duration / n, scale


# ---- plan -------------------------------------------------------------------------------------------------------


def test_fps_grid_hand_computed_cases():
    plan = FramePlan.fps_grid(fps=1.0, min_frames=8, max_frames=100)
    t, scale = plan.times(3.0)  # short clip: 3 frames at 1 fps < min_frames -> 8 centres of 3/8 s parts
    np.testing.assert_array_equal(t, [0.1875, 0.5625, 0.9375, 1.3125, 1.6875, 2.0625, 2.4375, 2.8125])
    assert scale == 1.0 and t.dtype == np.float64
    t, scale = plan.times(10.0)  # 10 frames, one per second, at the half seconds
    np.testing.assert_array_equal(t, np.arange(10) + 0.5)
    assert scale == 1.0
    t, scale = plan.times(7200.0)  # 2 h at 1 fps = 7200 > 100: 100 frames every 72 s, windows 72x longer
    assert len(t) == 100 and scale == 72.0 and t[0] == 36.0 and t[-1] == 7164.0
    t, _ = FramePlan.fps_grid(fps=2.0, min_frames=1, max_frames=1800).times(1.3)  # round(2.6) = 3 frames
    np.testing.assert_allclose(t, [1.3 / 6, 1.3 / 2, 5 * 1.3 / 6], rtol=0, atol=1e-15)


@pytest.mark.parametrize("fps,lo,hi", [(1.0, 8, 1800), (4.0, 8, 1800), (0.5, 1, 100), (1.0, 8, 8), (3.0, 2, 50)])
def test_fps_grid_is_bit_for_bit_the_old_index_rule(fps, lo, hi):
    plan = VideoIndexConfig(fps=fps, min_frames=lo, max_frames=hi).plan
    for d in (0.4, 1.0, 2.5, 5.0, 13.980633, 59.94, 600.0, 3601.7, 7200.0, 12345.678):
        t, scale = plan.times(d)
        want_t, want_scale = _old_frame_times(d, fps, lo, hi)
        np.testing.assert_array_equal(t, want_t)
        assert scale == want_scale


def test_uniform_plan_is_bit_for_bit_the_media_sampler():
    from xmr.media.video import sample_timestamps

    for n in (1, 8, 12, 32):
        for d, s, e in [(13.980633, None, None), (7.0, None, None), (13.98, 2.0, 6.0), (13.98, 0.0, 1.3),
                        (13.98, 10.0, 99.0), (3600.0, 1234.5, 1300.25)]:
            t, scale = FramePlan.uniform(n).times(d, s, e)
            np.testing.assert_array_equal(t, sample_timestamps(d, n, start=s, end=e))
            assert scale == 1.0 and len(t) == n


@pytest.mark.parametrize("plan", [FramePlan.uniform(12), FramePlan.uniform(1), FramePlan.fps_grid(),
                                  FramePlan.fps_grid(fps=10.0, min_frames=2, max_frames=5)])
def test_moment_window_times_stay_inside_the_window(plan):
    for d, s, e in [(13.98, 2.0, 6.0), (13.98, 4.0, 99.0), (100.0, 0.0, 0.5), (7200.0, 3000.0, 7100.0)]:
        t, _ = plan.times(d, s, e)
        assert len(t) >= 1 and np.all(t >= s) and np.all(t < min(e, d)) and np.all(np.diff(t) > 0)
    with pytest.raises(ValueError, match="window"):
        plan.times(13.98, 20.0, 30.0)  # past the clip's end
    with pytest.raises(ValueError, match="window"):
        plan.times(13.98, 5.0, 5.0)


def test_fps_grid_over_a_window_is_the_grid_of_the_window_shifted():
    plan = FramePlan.fps_grid(fps=1.0, min_frames=4, max_frames=10)
    t, scale = plan.times(500.0, 100.0, 120.0)  # 20 s of a long clip: 10 frames (cap), scale 2
    want, want_scale = _old_frame_times(20.0, 1.0, 4, 10)
    np.testing.assert_allclose(t, 100.0 + want, rtol=0, atol=1e-12)
    assert scale == want_scale == 2.0


@pytest.mark.parametrize("make", [
    lambda: FramePlan.uniform(0), lambda: FramePlan.uniform(2.5), lambda: FramePlan.uniform(True),
    lambda: FramePlan.uniform(8, size=0), lambda: FramePlan.fps_grid(fps=0), lambda: FramePlan.fps_grid(fps=-1.0),
    lambda: FramePlan.fps_grid(fps=float("nan")), lambda: FramePlan.fps_grid(min_frames=0),
    lambda: FramePlan.fps_grid(min_frames=10, max_frames=5), lambda: FramePlan("bogus", num_frames=3),
    lambda: FramePlan("uniform", num_frames=8, fps=1.0), lambda: FramePlan("fps", fps=1.0, min_frames=1,
                                                                           max_frames=2, num_frames=3),
    lambda: VideoIndexConfig(fps=0), lambda: VideoIndexConfig(min_frames=9, max_frames=8),
    lambda: VideoIndexConfig(frame_size=16), lambda: VideoIndexConfig(stride=0)])
def test_invalid_plans_raise_config_error(make):
    with pytest.raises(ConfigError):
        make()


def test_presets_and_recorded_settings():
    assert FramePlan.uniform(12).to_dict() == {"sampling": "uniform", "num_frames": 12, "frame_size": 224}
    assert FramePlan.uniform(8, size=None).to_dict()["frame_size"] is None
    assert FramePlan.fps_grid().to_dict() == {"sampling": "fps", "fps": 1.0, "min_frames": 8, "max_frames": 1800,
                                              "frame_size": 336}
    cfg = VideoIndexConfig()
    assert cfg.plan == FramePlan.fps_grid()
    assert cfg.to_dict() == {"frames": FramePlan.fps_grid().to_dict(), "window": 4.0, "stride": 2.0}
    json.dumps(cfg.to_dict())


# ---- features and pooling ---------------------------------------------------------------------------------------


def _images(n=5, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def head_dirs(tmp_path_factory):
    from xmr.heads import create_head

    d = tmp_path_factory.mktemp("heads")
    create_head("ts2net", dim=64, width=64).save(d / "ts2net")
    create_head("seqtransf", dim=64, num_frames=4).save(d / "seq")
    return d


def test_encode_frames_gives_tokens_for_ts2net_and_embeddings_otherwise(tiny_encoder, head_dirs):
    from xmr import create_encoder

    ims = _images()
    ts = create_encoder(f"video:tiny+ts2net@{head_dirs / 'ts2net'}")
    tokens = encode_frames(ts, ims, batch_size=2)
    assert tokens.shape == (5, 1 + 16, 64) and tokens.dtype == np.float32  # tiny: 32 px / 8 px patches + class
    np.testing.assert_allclose(tokens, tiny_encoder.encode_image_tokens(ims).numpy(), atol=1e-5)
    emb = encode_frames(tiny_encoder, ims)
    assert emb.shape == (5, 64) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    seq = create_encoder(f"video:tiny+seqtransf@{head_dirs / 'seq'}")
    np.testing.assert_allclose(encode_frames(seq, ims), emb, atol=1e-6)  # embedding heads: the image tower's
    np.testing.assert_allclose(encode_frames(ts, ims, tokens=False), emb, atol=1e-6)  # forced
    np.testing.assert_allclose(encode_frames(tiny_encoder, ims, tokens=True), tokens, atol=1e-5)


def test_encode_frames_refuses_tokens_without_the_capability(concept_encoder):
    with pytest.raises(ConfigError, match="ts2net"):
        encode_frames(concept_encoder, _images(2), tokens=True)


def test_pool_frames_is_mean_pool_for_a_plain_encoder_and_the_head_otherwise(tiny_encoder, head_dirs):
    from xmr import create_encoder

    feats = encode_frames(tiny_encoder, _images(6))
    times = np.arange(6) + 0.5
    np.testing.assert_array_equal(pool_frames(tiny_encoder, feats, times), mean_pool(feats, times))
    manual = feats.mean(0) / np.linalg.norm(feats.mean(0))
    np.testing.assert_allclose(mean_pool(feats, times), manual, atol=1e-6)
    seq = create_encoder(f"video:tiny+seqtransf@{head_dirs / 'seq'}")
    got = pool_frames(seq, feats, times)
    np.testing.assert_array_equal(got, seq.video_pool(feats, times))
    assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-5) and not np.allclose(got, manual, atol=1e-3)


# ---- decoding (PyAV) --------------------------------------------------------------------------------------------


def test_item_frames_equal_sample_frames_and_clip_features_encode_them(tiny_encoder):
    pytest.importorskip("av")
    from xmr.media.video import probe, sample_frames
    from xmr.video import clip_features, decode_frames, item_frames

    item = SimpleNamespace(media=str(CLIP), start=2.0, end=6.0)
    want = sample_frames(CLIP, 6, start=2.0, end=6.0, size=224)
    got = item_frames(item, 6, 224)
    np.testing.assert_array_equal(np.stack([np.asarray(f) for f in got]), want)
    times, frames = decode_frames(CLIP, FramePlan.uniform(6), start=2.0, end=6.0)
    assert np.all((times >= 2.0) & (times < 6.0)) and len(frames) == 6
    t, feats = clip_features(tiny_encoder, item, FramePlan.uniform(6), batch_size=4)  # two batches
    np.testing.assert_array_equal(t, times)
    np.testing.assert_allclose(feats, tiny_encoder.encode_images(got), atol=1e-6)
    t, _ = clip_features(tiny_encoder, CLIP, FramePlan.fps_grid())  # a path, the index's grid
    np.testing.assert_array_equal(t, _old_frame_times(probe(CLIP).duration, 1.0, 8, 1800)[0])
    assert len(t) == 14


def test_clip_features_errors_are_media_errors(tmp_path, tiny_encoder):
    pytest.importorskip("av")
    from xmr.video import clip_features

    with pytest.raises(MediaError, match="window"):  # a moment past the clip's end: no frames, no placeholder
        clip_features(tiny_encoder, SimpleNamespace(media=str(CLIP), start=50.0, end=60.0), FramePlan.uniform(4))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 2000)
    with pytest.raises(MediaError):
        clip_features(tiny_encoder, bad, FramePlan.uniform(4))


def test_index_records_its_plan_and_info_shows_it(tmp_path, tiny_encoder, capsys):
    pytest.importorskip("av")
    import shutil

    from xmr.cli import main
    from xmr.index import index_folder

    d = tmp_path / "media"
    d.mkdir()
    shutil.copy(CLIP, d / "clip.mp4")
    cfg = VideoIndexConfig(fps=2.0, window=3.0, stride=1.5)
    index_folder(d, tmp_path / "idx", tiny_encoder, show_progress=False, video=cfg)
    capsys.readouterr()
    assert main(["-q", "info", "--index", str(tmp_path / "idx"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["video_settings"] == cfg.to_dict()
    assert main(["-q", "info", "--index", str(tmp_path / "idx")]) == 0
    assert "videos: 2 fps (8-1800 frames), frames 336 px, segments 3 s every 1.5 s" in capsys.readouterr().out
