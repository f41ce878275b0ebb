"""Long-video sampling with a timestamp tolerance (xmr.media.video ``tolerance=``, FramePlan ``snap``): the frames
returned are real frames of the reference decode (same pixels), each shown within the tolerance of its target, and
the decoder's work is one keyframe per target when each window holds one (counted, not timed)."""
from __future__ import annotations

import numpy as np
import pytest

av = pytest.importorskip("av", reason="video support needs PyAV (pip install 'xmr[video]')")

from _video_clips import frame_index, make_clip  # noqa: E402
from conftest import FIXTURES, SHARED_DATA, requires_shared  # noqa: E402
from xmr.errors import ConfigError  # noqa: E402
from xmr.media.video import VideoReader, iter_frames, sample_frames, sample_timestamps  # noqa: E402
from xmr.video import FramePlan, decode_frames  # noqa: E402


def _reference(path, keys: bool = False):
    """Every frame of a plain sequential decode: (display times from the first frame (n,), RGB frames[, keyframe
    flags (n,)])."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [(float(f.pts * v.time_base), f.to_ndarray(format="rgb24"), bool(f.key_frame)) for f in c.decode(v)]
    t0 = frames[0][0]
    out = np.array([t - t0 for t, _, _ in frames]), [a for _, a, _ in frames]
    return (*out, np.array([k for _, _, k in frames])) if keys else out


def _check_within(path, targets, tol, got) -> list[int]:
    """Each returned (time, frame) is a reference frame (same time and pixels) shown within ``tol`` of its target;
    returns the reference indices."""
    ref_t, ref_f = _reference(path)
    out = []
    for t, (ft, arr) in zip(targets, got):
        i = int(np.argmin(np.abs(ref_t - ft)))
        assert abs(ref_t[i] - ft) < 1e-6, f"{ft} is not a frame time"
        shown_until = ref_t[i + 1] if i + 1 < len(ref_t) else np.inf
        assert ref_t[i] <= t + tol + 1e-6 and shown_until > t - tol - 1e-6, (t, tol, ref_t[i])
        np.testing.assert_array_equal(arr, ref_f[i])
        out.append(i)
    return out


class _Counter:
    """Counts decoded pictures of a VideoReader (its _next_frame)."""

    def __init__(self, reader):
        self.n = 0
        inner = reader._next_frame

        def counted():
            got = inner()
            self.n += got is not None
            return got

        reader._next_frame = counted


@pytest.mark.parametrize("codec, gop", [("mpeg4", 10), ("libx264", 25)])  # libx264 default preset: B-frames
def test_tolerance_takes_keyframes_and_decodes_one_picture_per_target(tmp_path, codec, gop):
    n, fps = 200, 10
    path = make_clip(tmp_path / f"c_{codec}.mp4", n_frames=n, fps=fps, gop=gop, codec=codec, size=(128, 48))
    with VideoReader(path) as r:
        ts = sample_timestamps(r.info.duration, 4)  # parts of 5 s; each holds a keyframe (every 1 or 2.5 s)
        tol = 0.5 * r.info.duration / 4
        exact = _Counter(r)
        list(r.frames_at(ts))
        n_exact = exact.n
    with VideoReader(path) as r:
        snapped = _Counter(r)
        got = list(r.frames_at(ts, tolerance=tol))
        n_snap = snapped.n
    idx = _check_within(path, ts, tol, got)
    is_key = _reference(path, keys=True)[2]  # every `gop` frames, plus the encoder's scene-cut keyframes
    assert idx[0] == 0 and all(is_key[idx]), idx  # target 1: the decoder starts at frame 0, inside the window
    assert [frame_index(a) for _, a in got] == idx  # the stripes agree: the picture really is frame i
    # one decoded picture per target (+1: the first target reads frame 1 to know frame 0 is still shown), against
    # decoding up to each exact frame
    assert n_snap <= len(ts) + 1 < n_exact, (n_snap, n_exact)


def test_tolerance_without_a_keyframe_in_the_window_decodes_to_its_start(tmp_path):
    path = make_clip(tmp_path / "sparse.mp4", n_frames=120, fps=10, gop=60)  # keyframes at 0 s and 6 s
    targets = np.array([2.0, 3.05, 9.0])
    got = list(iter_frames(path, targets, tolerance=0.5))
    idx = _check_within(path, targets, 0.5, got)
    assert idx == [15, 25, 85]  # no keyframe within 0.5 s of any target: the frame shown at t - 0.5 each time


def test_exact_call_after_keyframe_grabs_on_the_same_reader(tmp_path):
    # a reader left in key-only decoding by a tolerant call must give exact frames on the next call
    path = make_clip(tmp_path / "c.mp4", n_frames=100, fps=10, gop=10)
    ts = sample_timestamps(10.0, 4)
    with VideoReader(path) as r:
        snapped = [frame_index(a) for _, a in r.frames_at(ts, tolerance=1.25)]
        exact = [frame_index(a) for _, a in r.frames_at(ts)]
    assert np.all(_reference(path, keys=True)[2][snapped[1:]])  # keyframes (the first: frame 0, cheap to reach)
    assert exact == [int(np.floor(t * 10 + 1e-9)) for t in ts] == [12, 37, 62, 87]


def test_zero_tolerance_is_the_exact_path_and_bad_values_are_refused():
    clip = FIXTURES / "video" / "video9771.mp4"
    np.testing.assert_array_equal(sample_frames(clip, 6, size=64, tolerance=0.0), sample_frames(clip, 6, size=64))
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tolerance"):
            sample_frames(clip, 2, tolerance=bad)


def test_real_clip_fixture_within_tolerance():
    # real MSR-VTT clip (h264, 29.97 fps, 14 s): snapped frames are reference frames within half a part
    clip = FIXTURES / "video" / "video9771.mp4"
    with VideoReader(clip) as r:
        ts = sample_timestamps(r.info.duration, 12)
        tol = 0.5 * r.info.duration / 12
        got = list(r.frames_at(ts, tolerance=tol))
    _check_within(clip, ts, tol, got)


@requires_shared
@pytest.mark.parametrize("name", ["video9770.mp4", "video9771.mp4"])
def test_real_msrvtt_clips_within_tolerance(name):
    path = SHARED_DATA / "msrvtt-mini" / name
    for n in (3, 12):
        with VideoReader(path) as r:
            ts = sample_timestamps(r.info.duration, n)
            tol = 0.5 * r.info.duration / n
            got = list(r.frames_at(ts, tolerance=tol))
        _check_within(path, ts, tol, got)


def test_frame_plan_snap(tmp_path):
    path = make_clip(tmp_path / "c.mp4", n_frames=200, fps=10, gop=20)
    plan = FramePlan.uniform(5, size=None, snap=0.5)
    assert plan.to_dict()["snap"] == 0.5 and "snap" not in FramePlan.uniform(5).to_dict()  # exact plans unchanged
    assert plan.tolerance(np.array([2.0, 6.0, 10.0])) == 2.0 and plan.tolerance(np.array([3.0])) == 0.0
    times, frames = decode_frames(path, plan)
    is_key = _reference(path, keys=True)[2]
    assert all(is_key[[frame_index(np.asarray(f)) for f in frames]])  # every part of 4 s holds a keyframe
    with pytest.raises(ConfigError, match="snap"):
        FramePlan.uniform(5, snap=0.7)


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_path_skips_non_reference_pictures_and_returns_the_same_frames(tmp_path, seed):
    # libx264's default preset: 3 B-frames, B-pyramid -> some B-pictures are never referenced; those before a target
    # are not decoded at all, and the frames returned are still exactly the reference decode's
    n, fps = 250, 25  # frame_index reads 8 bits: n <= 256
    path = make_clip(tmp_path / "b.mp4", n_frames=n, fps=fps, gop=100, codec="libx264", size=(128, 48))
    targets = np.sort(np.random.default_rng(seed).uniform(0, n / fps - 1e-3, size=9))
    with VideoReader(path) as r:
        got = list(r.frames_at(targets))
        skipped = r.skipped
    idx = _check_within(path, targets, 0.0, got)
    assert idx == [min(int(np.floor(t * fps + 1e-9)), n - 1) for t in targets]
    assert [frame_index(a) for _, a in got] == idx
    assert skipped > 20  # non-reference pictures between the targets were not decoded


def test_real_h264_clip_exact_frames_with_skipping():
    clip = FIXTURES / "video" / "video9771.mp4"  # MSR-VTT, h264
    targets = np.sort(np.random.default_rng(3).uniform(0, 13.9, size=15))
    with VideoReader(clip) as r:
        got = list(r.frames_at(targets))
    _check_within(clip, targets, 0.0, got)


def test_tolerance_without_a_keyframe_index(tmp_path):
    # MPEG-TS has no keyframe index: every target decodes forward to its window's start, still within tolerance
    path = make_clip(tmp_path / "c.ts", n_frames=80, fps=10, gop=10)
    with VideoReader(path) as r:
        assert r._keyframes is None
        ts = sample_timestamps(r.info.duration, 4)
        got = list(r.frames_at(ts, tolerance=0.5))
    _check_within(path, ts, 0.5, got)
    assert [frame_index(a) for _, a in got] == [int(round((t - 0.5) * 10)) for t in ts]


@requires_shared
@pytest.mark.parametrize("name", ["video9770.mp4", "video9771.mp4"])
def test_real_msrvtt_clips_exact_frames(name):
    # exact path (with non-reference pictures left undecoded) = reference decode, pixels and times
    path = SHARED_DATA / "msrvtt-mini" / name
    with VideoReader(path) as r:
        targets = np.sort(np.random.default_rng(7).uniform(0, r.info.duration - 0.05, size=20))
        got = list(r.frames_at(targets))
    _check_within(path, targets, 0.0, got)
