"""Non-reference picture skipping for HEVC (xmr.media._nal): the NAL header rules on hand-built packets, and on
generated libx265 clips (MP4 / MKV, one and three temporal sub-layers) the exact path returns the reference decode's
frames (same times, same pixels) while leaving non-reference pictures undecoded."""
from __future__ import annotations

import numpy as np
import pytest

from xmr.media._nal import NalLayout, is_non_reference

H264 = NalLayout("h264", 4)


def _nal(header: bytes, payload: bytes = b"\x80\x00") -> bytes:
    body = header + payload
    return len(body).to_bytes(4, "big") + body


def _hevc_header(typ: int, tid: int = 0, layer: int = 0) -> bytes:
    return bytes([(typ << 1) | (layer >> 5), ((layer & 31) << 3) | (tid + 1)])


def test_h264_rules_on_hand_built_packets():
    sei = _nal(bytes([0x06]))  # SEI (type 6) before the slice
    assert is_non_reference(sei + _nal(bytes([0x01])), H264)  # non-IDR slice, nal_ref_idc 0
    assert not is_non_reference(sei + _nal(bytes([0x41])), H264)  # nal_ref_idc 2
    assert not is_non_reference(_nal(bytes([0x65])), H264)  # IDR slice
    assert not is_non_reference(sei, H264)  # no slice: decoded
    assert not is_non_reference(b"", H264)


def test_hevc_rules_on_hand_built_packets():
    one = NalLayout("hevc", 4, max_temporal_id=0)
    three = NalLayout("hevc", 4, max_temporal_id=2)
    prefix = _nal(_hevc_header(39))  # prefix SEI (non-VCL) first
    for typ in (0, 2, 4, 6, 8, 10, 12, 14):  # TRAIL_N, TSA_N, STSA_N, RADL_N, RASL_N, RSV_VCL_N10/12/14
        assert is_non_reference(prefix + _nal(_hevc_header(typ)), one), typ
    for typ in (1, 3, 5, 7, 9, 19, 21):  # *_R, IDR_W_RADL, CRA
        assert not is_non_reference(prefix + _nal(_hevc_header(typ)), one), typ
    # a sub-layer non-reference picture below the highest sub-layer may be referenced by a higher one: kept
    assert not is_non_reference(_nal(_hevc_header(0, tid=0)), three)
    assert not is_non_reference(_nal(_hevc_header(2, tid=1)), three)
    assert is_non_reference(_nal(_hevc_header(2, tid=2)), three)
    assert not is_non_reference(_nal(_hevc_header(0, layer=1)), one)  # not the base layer
    assert not is_non_reference(prefix, one)
    assert not is_non_reference(_nal(bytes([0x00])), one)  # truncated header: decoded


# ---- generated clips ------------------------------------------------------------------------------------------------
av = pytest.importorskip("av", reason="video support needs PyAV (pip install 'xmr[video]')")
if "libx265" not in av.codecs_available:
    pytest.skip("this PyAV/FFmpeg build has no libx265 encoder to generate HEVC clips", allow_module_level=True)

from _video_clips import frame_index, index_image  # noqa: E402
from xmr.media._nal import nal_layout  # noqa: E402
from xmr.media.video import VideoReader  # noqa: E402

N, FPS = 250, 25  # frame_index reads 8 bits: N <= 256


def _hevc_clip(path, temporal_layers: int | None = None, gop: int = 100):
    params = "log-level=error" + (f":temporal-layers={temporal_layers}" if temporal_layers else "")
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx265", rate=FPS)
        s.width, s.height, s.pix_fmt = 128, 48, "yuv420p"
        s.codec_context.gop_size = gop
        s.codec_context.options = {"x265-params": params}
        for i in range(N):
            for p in s.encode(av.VideoFrame.from_ndarray(index_image(i, 128, 48), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _reference(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [(float(f.pts * v.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(v)]
    return np.array([t - frames[0][0] for t, _ in frames]), [a for _, a in frames]


@pytest.mark.parametrize("ext, layers", [("mp4", None), ("mkv", None), ("mp4", 3)])
@pytest.mark.parametrize("seed", [0, 1])
def test_hevc_exact_frames_with_skipping(tmp_path, ext, layers, seed):
    path = _hevc_clip(tmp_path / f"h.{ext}", temporal_layers=layers)
    with av.open(str(path)) as c:
        layout = nal_layout(c.streams.video[0])
    assert layout is not None and layout.codec == "hevc"
    assert layout.max_temporal_id == (layers - 1 if layers else 0)
    targets = np.sort(np.random.default_rng(seed).uniform(0, N / FPS - 1e-3, size=9))
    with VideoReader(path) as r:
        got = list(r.frames_at(targets))
        skipped = r.skipped
    ref_t, ref_f = _reference(path)
    want = [min(int(np.floor(t * FPS + 1e-9)), N - 1) for t in targets]
    for (t, arr), i in zip(got, want):
        assert abs(t - ref_t[i]) < 1e-6
        np.testing.assert_array_equal(arr, ref_f[i])  # bit-identical to the full decode
    assert [frame_index(a) for _, a in got] == want
    assert skipped > 20  # non-reference pictures between the targets were not decoded


def test_hevc_without_skipping_decodes_the_same(tmp_path):
    """The same targets with skipping turned off give the same pixels (the skip changes only the work)."""
    path = _hevc_clip(tmp_path / "h.mp4")
    targets = np.sort(np.random.default_rng(5).uniform(0, N / FPS - 1e-3, size=12))
    with VideoReader(path) as r:
        fast = list(r.frames_at(targets))
        assert r.skipped > 0
    with VideoReader(path) as r:
        r._nal = None
        slow = list(r.frames_at(targets))
        assert r.skipped == 0
    for (ta, a), (tb, b) in zip(fast, slow):
        assert ta == tb
        np.testing.assert_array_equal(a, b)


def test_hevc_in_mpeg_ts_is_decoded_whole(tmp_path):
    path = _hevc_clip(tmp_path / "h.ts")  # Annex-B: no length-prefixed layout, no skipping
    with av.open(str(path)) as c:
        assert nal_layout(c.streams.video[0]) is None
