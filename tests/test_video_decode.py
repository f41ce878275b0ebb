"""Video decoding (xmr.media.video): real clips, exact frame choice (seek path == sequential path == full decode),
variable frame rate, rotation, and every kind of bad file raising a MediaError."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="video support needs PyAV (pip install 'xmr[video]')")

from _video_clips import frame_index, make_audio_only, make_clip  # noqa: E402
from conftest import FIXTURES, SHARED_DATA, requires_shared  # noqa: E402
from xmr.errors import CorruptMediaError, MediaError, NoVideoStreamError, UnreadableMediaError  # noqa: E402
from xmr.media import video as vmod  # noqa: E402
from xmr.media import video_reader as vreader  # noqa: E402 - the seek tunables are read there
from xmr.media.video import iter_frames, probe, sample_frames, sample_timestamps  # noqa: E402

CLIP = FIXTURES / "video" / "video9771.mp4"  # real MSR-VTT clip: h264 320x240 29.97 fps 14 s, no audio


def _is_real_video(frames: np.ndarray) -> bool:
    """Not blank, and the picture changes over the clip."""
    per_frame_std = frames.reshape(len(frames), -1).std(axis=1)
    return bool((per_frame_std > 5).all() and np.abs(np.diff(frames.astype(np.int16), axis=0)).mean() > 1)


def test_fixture_clip_12_frames():
    info = probe(CLIP)
    assert (info.width, info.height, info.rotation, info.has_audio) == (320, 240, 0, False)
    assert info.duration == pytest.approx(13.98, abs=0.05) and info.fps == pytest.approx(29.97, abs=0.01)
    assert info.num_frames_estimate == 419
    frames = sample_frames(CLIP, 12)
    assert frames.shape == (12, 240, 320, 3) and frames.dtype == np.uint8
    assert _is_real_video(frames)


@requires_shared
@pytest.mark.parametrize("name, has_audio", [("video9770.mp4", True), ("video9771.mp4", False)])
def test_real_msrvtt_clips(name, has_audio):
    path = SHARED_DATA / "msrvtt-mini" / name
    assert probe(path).has_audio is has_audio
    frames = sample_frames(path, 12)
    assert frames.shape == (12, 240, 320, 3) and _is_real_video(frames)


def test_options_fps_window_size():
    assert sample_frames(CLIP, 4, size=120).shape == (4, 120, 160, 3)  # shorter side 120, aspect kept
    assert sample_frames(CLIP, 2, size=(64, 32)).shape == (2, 32, 64, 3)
    assert sample_frames(CLIP, 2, size=1000).shape == (2, 240, 320, 3)  # never upscales
    assert sample_frames(CLIP, None, fps=2.0, start=1.0, end=3.0, size=60).shape[0] == 4
    assert sample_frames(CLIP, 3, fps=2.0).shape[0] == 3  # num_frames caps the fps grid
    times = [t for t, _ in iter_frames(CLIP, [0.0, 2.0, 5.5, 13.9])]
    assert times == pytest.approx([0.0, 2.0, 5.5, 13.9], abs=1 / 29.97 + 1e-6)  # frame shown at t: pts <= t
    with pytest.raises(ValueError):
        sample_frames(CLIP, 4, start=5.0, end=5.0)


def test_sample_timestamps_rules():
    assert sample_timestamps(12.0, 4).tolist() == [1.5, 4.5, 7.5, 10.5]  # centres of equal parts
    assert sample_timestamps(10.0, None, fps=1.0, start=2.0, end=5.0).tolist() == [2.5, 3.5, 4.5]
    assert len(sample_timestamps(3600.0, 12, fps=1.0)) == 12


@pytest.mark.parametrize("gop", [1, 7, 50])
def test_seeking_and_sequential_pick_the_same_frames_as_full_decode(tmp_path, monkeypatch, gop):
    n, fps = 60, 10
    path = make_clip(tmp_path / "idx.mp4", n_frames=n, fps=fps, gop=gop)
    targets = np.sort(np.random.default_rng(gop).uniform(0, n / fps - 1e-3, size=15))
    expected = [min(int(np.floor(t * fps + 1e-9)), n - 1) for t in targets]  # ground truth: frame i shows [i/fps, (i+1)/fps)

    def picked():
        return [frame_index(a, n) for _, a in iter_frames(path, targets)]

    assert picked() == expected  # default heuristic
    monkeypatch.setattr(vreader, "SEEK_MIN_GAP_S", 0.0)  # seek whenever a keyframe lies in between
    monkeypatch.setattr(vreader, "SEEK_NO_INDEX_GAP_S", 0.0)
    assert picked() == expected
    monkeypatch.setattr(vreader, "SEEK_MIN_GAP_S", 1e9)  # never seek: one sequential pass
    monkeypatch.setattr(vreader, "SEEK_NO_INDEX_GAP_S", 1e9)
    assert picked() == expected


def test_seek_heuristic_seeks_on_long_sparse_and_not_on_short(tmp_path, monkeypatch):
    calls = []
    orig = vmod.VideoReader._seek
    monkeypatch.setattr(vmod.VideoReader, "_seek", lambda self, t: (calls.append(t), orig(self, t))[1])
    sample_frames(CLIP, 12)  # 14 s clip with 2 keyframes, 12 targets: decoded sequentially
    assert calls == []
    long = make_clip(tmp_path / "long.mp4", n_frames=400, fps=10, gop=20)  # 40 s, keyframe every 2 s
    sample_frames(long, 4)  # targets 10 s apart: each one is reached by a seek
    assert len(calls) >= 3


def test_seek_tunables_are_read_from_video_reader(tmp_path, monkeypatch):
    """The seek rule's tunables live in xmr.media.video_reader (where VideoReader reads them): setting them there
    changes how many seeks a pass makes (guards the patch targets of the tests above)."""
    calls = []
    orig = vreader.VideoReader._seek
    monkeypatch.setattr(vreader.VideoReader, "_seek", lambda self, t: (calls.append(t), orig(self, t))[1])
    path = make_clip(tmp_path / "gop7.mp4", n_frames=60, fps=10, gop=7)
    targets = np.linspace(0.5, 5.5, 6)
    monkeypatch.setattr(vreader, "SEEK_MIN_GAP_S", 1e9)
    list(iter_frames(path, targets))
    assert calls == []
    monkeypatch.setattr(vreader, "SEEK_MIN_GAP_S", 0.0)
    list(iter_frames(path, targets))
    assert len(calls) >= 4


def test_public_names_stay_importable_from_media_video():
    """Splitting the module kept every name users import from xmr.media.video (the same objects)."""
    from xmr.media import video_info

    for name in vmod.__all__:
        assert getattr(vmod, name) is not None
    assert vmod.VideoReader is vreader.VideoReader and vmod.VideoInfo is video_info.VideoInfo
    assert vmod.VIDEO_EXTENSIONS is video_info.VIDEO_EXTENSIONS
    for name in ("SEEK_MIN_GAP_S", "SEEK_NO_INDEX_GAP_S", "MAX_FRAME_PIXELS", "END_TOLERANCE_S", "PathLike", "Size"):
        assert getattr(vmod, name) is getattr(vreader, name)


def test_variable_frame_rate_is_sampled_by_time(tmp_path):
    pts_ms = [0, 100, 150, 400, 420, 1000, 1100, 1900, 2000, 2500]
    path = make_clip(tmp_path / "vfr.mp4", n_frames=10, pts_ms=pts_ms)
    ts = [0.05, 0.12, 0.3, 0.41, 0.9, 1.05, 1.5, 1.95, 2.2, 2.55]
    got = [(round(t, 3), frame_index(a, 10)) for t, a in iter_frames(path, ts)]
    assert [i for _, i in got] == list(range(10))
    assert [t for t, _ in got] == [p / 1000 for p in pts_ms]


def test_rotation_metadata_is_applied(tmp_path):
    path = make_clip(tmp_path / "rot.mp4", rotation=90, pattern="half", size=(64, 48))  # left half white
    info = probe(path)
    assert (info.rotation, info.width, info.height) == (90, 48, 64)
    f = sample_frames(path, 1)[0].astype(int)
    assert f.shape == (64, 48, 3)
    # rotated 90 degrees counter-clockwise for display: the stored left half is now the bottom half
    assert f[48:].mean() > 200 and f[:16].mean() < 50
    assert sample_frames(path, 1, size=24).shape == (1, 32, 24, 3)


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_audio_track_longer_than_video_is_not_truncation(tmp_path, ext):
    path = make_clip(tmp_path / f"with_audio.{ext}", n_frames=25, fps=10, audio=True, audio_seconds=6.0)
    info = probe(path)
    assert info.has_audio and info.duration == pytest.approx(2.5, abs=0.15)  # the video stream's, not the file's
    assert [frame_index(a) for a in sample_frames(path, 5)] == [2, 7, 12, 17, 22]


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    data = CLIP.read_bytes()
    out = {
        "corrupt": tmp_path / "corrupt.mp4",
        "truncated": tmp_path / "truncated.mp4",  # first 20%: the 'moov' index (at the end) is missing
        "zero": tmp_path / "zero.mp4",
        "audio_only": make_audio_only(tmp_path / "audio_only.mp4"),
        "missing": tmp_path / "missing.mp4",
    }
    out["corrupt"].write_bytes(np.random.default_rng(0).bytes(50_000))
    out["truncated"].write_bytes(data[: len(data) // 5])
    out["zero"].write_bytes(b"")
    # index at the front, data cut at 50%: opens fine, but the second half's timestamps cannot be decoded
    fs = make_clip(tmp_path / "faststart_src.mp4", n_frames=100, pattern="noise", faststart=True)
    out["truncated_faststart"] = tmp_path / "truncated_faststart.mp4"
    out["truncated_faststart"].write_bytes(fs.read_bytes()[: fs.stat().st_size // 2])
    return out


@pytest.mark.parametrize("kind, error, words", [
    ("corrupt", CorruptMediaError, "not a readable video"),
    ("truncated", CorruptMediaError, "truncated"),
    ("truncated_faststart", CorruptMediaError, "truncated"),
    ("zero", UnreadableMediaError, "empty file"),
    ("audio_only", NoVideoStreamError, "no video stream"),
    ("missing", UnreadableMediaError, "cannot stat"),
])
def test_bad_files_raise_media_errors(tmp_path, kind, error, words):
    path = _bad_files(tmp_path)[kind]
    for fn in (lambda: sample_frames(path, 12), lambda: probe(path)) if kind != "truncated_faststart" else (
            lambda: sample_frames(path, 12),):
        with pytest.raises(error, match=words) as ei:
            fn()
        assert isinstance(ei.value, MediaError) and ei.value.path == str(path) and ei.value.reason


# ---- still images with a video extension ----------------------------------------------------------------------
def _still(tmp_path: Path, fmt: str, name: str) -> Path:
    from PIL import Image

    from conftest import SAMPLES

    out = tmp_path / name
    Image.open(SAMPLES / "chelsea.png").convert("RGB").save(out, format=fmt)
    return out


@pytest.mark.parametrize("fmt, kind", [("PNG", "PNG"), ("JPEG", "JPEG"), ("BMP", "BMP"), ("TIFF", "TIFF"),
                                       ("WEBP", "WebP"), ("GIF", "GIF")])
def test_still_image_with_video_extension_is_refused(tmp_path, fmt, kind):
    """A photo renamed .mp4 opens in FFmpeg as a one-frame 'video' (0.04 s): refused with what it really is."""
    path = _still(tmp_path, fmt, "x.mp4")
    for fn in (lambda: probe(path), lambda: vmod.VideoReader(path), lambda: sample_frames(path, 4)):
        with pytest.raises(CorruptMediaError, match=f"not a video: a {kind} image with a video file extension") as ei:
            fn()
        assert ei.value.path == str(path)


def test_png_copied_to_mp4_is_refused(tmp_path):
    from conftest import SAMPLES

    path = tmp_path / "x.mp4"
    path.write_bytes((SAMPLES / "chelsea.png").read_bytes())
    with pytest.raises(CorruptMediaError) as ei:
        probe(path)
    assert ei.value.reason == "not a video: a PNG image with a video file extension"
    with pytest.raises(CorruptMediaError, match="not a video: a PNG image$"):
        probe(SAMPLES / "chelsea.png")  # under its own name: no word about the extension


def test_short_real_clips_and_animated_images_are_still_videos(tmp_path):
    """One- and two-frame real clips stay videos; an animated GIF / APNG (two or more frames) is read as a clip."""
    from PIL import Image

    for n in (1, 2):
        info = probe(make_clip(tmp_path / f"short{n}.mp4", n_frames=n, fps=25))
        assert info.num_frames_estimate == n and info.duration > 0
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)) for _ in range(5)]
    for fmt, name in (("GIF", "anim_gif.mp4"), ("PNG", "anim_png.mp4")):
        path = tmp_path / name
        frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
        info = probe(path)
        assert (info.width, info.height, info.num_frames_estimate) == (60, 40, 5)
        assert info.duration == pytest.approx(0.5, abs=0.01)
        assert sample_frames(path, 5).shape == (5, 40, 60, 3)
