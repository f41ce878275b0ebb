"""The video decoder behind :mod:`xmr.media.video`: :class:`VideoReader` and the rules it follows.

Holds :class:`VideoReader` (open a file, map every PyAV / OS error to a :class:`~xmr.errors.MediaError`, return
the frame shown at each target time), the tunables of its seek rule (``SEEK_MIN_GAP_S``, ``SEEK_NO_INDEX_GAP_S``;
tests and benchmarks set them on this module, where the reader reads them), its memory and truncation limits
(``MAX_FRAME_PIXELS``, ``END_TOLERANCE_S``) and ``_av`` (the PyAV import with the ``xmr[video]`` install hint).
What a target time means and which errors are raised: :mod:`xmr.media.video`.

Seeking or decoding forward
---------------------------
Targets are visited in increasing order with one decoder. Before each target we decide between *seeking*
(``container.seek`` to the keyframe at or before the target, then decoding forward to it) and *decoding forward*
from where the decoder already is. The rule (:meth:`VideoReader._should_seek`):

* if the container has a keyframe index (MP4/MOV, AVI, MKV with cues): seek only when there is a keyframe
  after the decoder's position and at or before the target, and it is more than ``SEEK_MIN_GAP_S`` seconds
  ahead; otherwise decoding forward touches no more frames than a seek would;
* without an index: seek when the target is more than ``SEEK_NO_INDEX_GAP_S`` seconds ahead.

So short clips and dense sampling (targets closer than a keyframe interval) decode sequentially with no seek at
all, and a long file sampled sparsely decodes about half a keyframe interval per target.

H.264 and HEVC in MP4/MOV/MKV: on the way to a target, packets of pictures no other picture is predicted from
(H.264 ``nal_ref_idc == 0``; HEVC sub-layer non-reference types in the highest temporal sub-layer, see
:mod:`xmr.media._nal`: most B-pictures of a typical encode) are not sent to the decoder when a picture shown later
but still at or before the target has already been read, so they cannot be the frame shown at the target; every
picture that is decoded is bit-identical to a full decode (``VideoReader.skipped`` counts the packets left out).

With a timestamp tolerance, for each target the reader takes the cheaper of

* the keyframe nearest ``t`` inside the window, found in the container's keyframe index: one seek and one
  decoded packet (only the keyframe's packet is sent to the decoder, which is then drained so the picture comes
  out without waiting for the frames after it), so nothing between targets is decoded (the effect
  ``codec_context.skip_frame = "NONKEY"`` aims at, without its wait for the next keyframe; TSN's view of a
  segment: any frame of a uniform part stands for it);
* decoding forward (or from the keyframe before) to ``t - tolerance``, as in the exact rule, when the decoder is
  already within ``SEEK_MIN_GAP_S`` of the window or no keyframe lies inside it.

Only the frame just before the target is kept while decoding, so memory is the sampled frames (downscaled with
``size``) plus the decoder's own buffers, whatever the file's length.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, Union

import numpy as np

from ..errors import CorruptMediaError, MediaTooLargeError, NoVideoStreamError, UnreadableMediaError
from ._nal import is_non_reference, nal_layout
from .video_info import (
    _IMAGE_CODEC_NAMES,
    VIDEO_EXTENSIONS,
    VideoInfo,
    _msg,
    _open_failure,
    _parse_hms,
    _rotation_of,
)

#: with a keyframe index: seek only if it skips more than this many seconds of decoding
SEEK_MIN_GAP_S = 1.0
#: without a keyframe index: seek only if the target is this many seconds ahead of the decoder
SEEK_NO_INDEX_GAP_S = 5.0
#: frames larger than this (width x height, before ``size``) are refused (decoder memory guard)
MAX_FRAME_PIXELS = 8192 * 8192
#: a target may lie this far past the last decodable frame's end before the file counts as truncated
END_TOLERANCE_S = 0.25

PathLike = Union[str, os.PathLike]
Size = Union[int, tuple[int, int], None]


def _av():
    from .._deps import require

    return require("av", "video", "av (PyAV)")


class VideoReader:
    """An open video: ``info`` (:class:`VideoInfo`) and :meth:`frames_at`; a context manager.

    Opening reads the headers and decodes the first frame (rotation, size, a first check that the stream
    decodes); every PyAV / OS error is mapped to a :class:`~xmr.errors.MediaError` subclass."""

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self.container = None
        av = _av()
        try:
            size = self.path.stat().st_size
        except OSError as e:
            raise UnreadableMediaError(self.path, f"cannot stat file ({e.strerror or e})") from None
        if self.path.is_dir():
            raise UnreadableMediaError(self.path, "is a directory")
        if size == 0:
            raise UnreadableMediaError(self.path, "empty file (0 bytes)")
        try:
            self.container = av.open(str(self.path), mode="r", metadata_errors="ignore")
        except PermissionError as e:
            raise UnreadableMediaError(self.path, f"permission denied ({e.strerror})") from None
        except av.error.FFmpegError as e:
            raise CorruptMediaError(self.path, f"{_open_failure(self.path)} ({_msg(e)})") from None
        except OSError as e:
            raise UnreadableMediaError(self.path, f"cannot open ({e.strerror or e})") from None
        try:
            self._init_stream()
        except BaseException:
            self.close()
            raise

    def _init_stream(self) -> None:
        av = _av()
        c = self.container
        if not c.streams.video:
            kinds = sorted({s.type for s in c.streams}) or ["no streams"]
            raise NoVideoStreamError(self.path, f"no video stream (has: {', '.join(kinds)})")
        self.stream = v = c.streams.video[0]
        v.thread_type = "AUTO"
        self._nal = nal_layout(v)  # H.264 / HEVC in MP4/MOV/MKV: non-reference packets can be skipped
        self.skipped = 0  # packets not sent to the decoder (non-reference pictures before a target)
        self._target_ts = -1 << 62
        self._refuse_still_image()
        self.tb = float(v.time_base) if v.time_base else 1e-6
        self.t_start = float(v.start_time * v.time_base) if v.start_time is not None and v.time_base else 0.0
        rate = v.average_rate or v.guessed_rate or v.base_rate
        self.fps = float(rate) if rate else 0.0
        dur = float(v.duration * v.time_base) if v.duration and v.time_base else None
        if dur is None:  # Matroska/WebM: the per-stream DURATION tag (the container's may include a longer audio)
            dur = _parse_hms((v.metadata or {}).get("DURATION"))
        if dur is None and c.duration:
            dur = c.duration / 1_000_000 - max(0.0, self.t_start - (c.start_time or 0) / 1_000_000)
        self._keyframes = self._keyframe_times()
        try:
            first = next(self._decode_from_start())
        except StopIteration:
            raise CorruptMediaError(self.path, "no decodable video frame") from None
        except av.error.FFmpegError as e:
            raise CorruptMediaError(self.path, f"cannot decode the first frame ({_msg(e)})") from None
        cw, ch = first.width, first.height
        self._coded = (cw, ch)  # output sizes derive from the first frame, so a mid-stream size change is rescaled
        if cw * ch > MAX_FRAME_PIXELS:
            raise MediaTooLargeError(self.path, f"{cw}x{ch} frames are over the {MAX_FRAME_PIXELS}-pixel limit")
        self.rotation = _rotation_of(first, v)
        t_first = self._time(first)
        if t_first is not None:
            self.t_start = t_first  # t = 0 is the first frame actually shown
        # index entries are decode times (dts); with B-frames a keyframe is shown a constant reorder delay later
        self._kf_shift = 0.0
        if self._keyframes is not None and t_first is not None:
            self._kf_shift = max(0.0, t_first - float(self._keyframes[0]))
        if not dur or dur <= 0:
            dur = self._scan_duration()
        if self.fps <= 0:
            self.fps = (v.frames / dur) if v.frames and dur else 25.0
        n_est = int(v.frames) if v.frames else int(round(dur * self.fps))
        w, h = (ch, cw) if self.rotation in (90, 270) else (cw, ch)
        self.info = VideoInfo(round(dur, 6), round(self.fps, 6), w, h, self.rotation,
                              bool(c.streams.audio), n_est)
        self._reset()

    def _refuse_still_image(self) -> None:
        """A still image (e.g. a PNG renamed ``.mp4``) opens as a one-frame "video": refuse it with what it is.

        FFmpeg reads a single image through an image-pipe demuxer (``png_pipe``, ``jpeg_pipe``, ``bmp_pipe``,
        ``tiff_pipe``, ``webp_pipe``, ...) or ``image2``; those are always refused. GIF and APNG can be animated:
        they are kept when they have at least two frames (a moving picture decodes and samples like a clip) and
        refused when they hold one frame only. Motion JPEG inside a real container (AVI, MOV) is a video, kept.
        """
        fmt = (self.container.format.name or "").split(",")[0]
        codec = self.stream.codec_context.name or fmt
        if fmt.endswith("_pipe") or fmt == "image2":
            pass
        elif fmt in ("gif", "apng"):
            if self.stream.frames > 1:
                return
            av = _av()
            n = 0
            try:
                for _ in self._decode_from_start():
                    n += 1
                    if n > 1:
                        return
            except av.error.FFmpegError:
                return  # not decodable: the first-frame check that follows says so
            if n == 0:
                return
        else:
            return
        kind = _IMAGE_CODEC_NAMES.get(codec, codec.upper())
        ext = " with a video file extension" if self.path.suffix.lower() in VIDEO_EXTENSIONS else ""
        raise CorruptMediaError(self.path, f"not a video: a {kind} image{ext}")

    # -- decoder state
    def _reset(self) -> None:
        self._it = None  # current frame generator (every path from here starts with a seek, which flushes)
        self._prev = None  # last frame with time <= the current target
        self._pending = None  # first frame with time > the current target (look-ahead)
        self._eof = False
        self._last_time = None  # time of the newest decoded frame
        self._keyonly = False  # the decoder was drained by a keyframe grab: seek before decoding on
        self._target_ts = -1 << 62  # current target in stream time-base units (no packet is skipped before one)
        self._floor = -math.inf  # tolerance mode: effective targets never go back in time

    def _decode_from_start(self):
        av = _av()
        try:
            self.container.seek(0, backward=True, any_frame=False, stream=self.stream)
        except av.error.FFmpegError:
            pass  # unseekable input: decode from where the demuxer is (the start)
        return self._decode()

    def _decode(self):
        """Frames from the demuxer's position, like ``container.decode(stream)``, except that H.264 packets of
        non-reference pictures that cannot be the frame shown at the current target (``self._target_ts``) are not
        sent to the decoder (see :mod:`xmr.media._nal`): no other picture is predicted from them, so every
        picture that is decoded comes out bit-identical."""
        cc = self.stream.codec_context
        recent: list[int] = []  # pts of the last packets since the seek (B-pictures follow their later anchor)
        for pkt in self.container.demux(self.stream):
            p = pkt.pts
            if self._nal is not None and p is not None and pkt.size and not pkt.is_keyframe:
                # skippable: a non-reference picture with a later-shown one already seen that is still <= target
                tgt = self._target_ts
                if any(p < q <= tgt for q in recent) and is_non_reference(pkt, self._nal):
                    self.skipped += 1
                    continue
            if p is not None:
                recent.append(p)
                if len(recent) > 32:
                    del recent[0]
            yield from cc.decode(pkt)

    def _seek(self, t_abs: float) -> None:
        av = _av()
        self._keyonly = False  # the seek flushes the decoder (also after a drain)
        try:
            self.container.seek(int(math.floor(t_abs / self.tb)), backward=True, any_frame=False, stream=self.stream)
        except av.error.FFmpegError as e:
            raise CorruptMediaError(self.path, f"seek to {t_abs - self.t_start:.2f} s failed ({_msg(e)})") from None
        self._it = self._decode()
        self._prev = self._pending = None
        self._eof = False
        self._last_time = None

    def _keyframe_times(self) -> np.ndarray | None:
        """Keyframe times (absolute seconds, sorted) from the container index; None when there is no index."""
        try:
            entries = self.stream.index_entries
            ts = [e.timestamp for e in entries if e.is_keyframe]
        except Exception:  # noqa: BLE001 - optional information; older PyAV lacks index_entries
            return None
        if len(ts) < 2:
            return None  # no index, or one keyframe: nothing to choose between
        return np.asarray(sorted(ts), dtype=np.float64) * self.tb

    def _should_seek(self, t_abs: float) -> bool:
        if self._keyonly:
            return True  # a keyframe grab drained the decoder: it restarts at a keyframe
        if self._it is None:
            pos = self.t_start  # a fresh decoder started at the beginning costs nothing to start
        elif self._last_time is None:
            return False
        else:
            pos = self._last_time
        if t_abs <= pos:
            return False
        if self._keyframes is not None:
            i = int(np.searchsorted(self._keyframes, t_abs, side="right")) - 1  # last keyframe <= target
            return i >= 0 and self._keyframes[i] - pos > SEEK_MIN_GAP_S
        return t_abs - pos > SEEK_NO_INDEX_GAP_S

    def _frame_near(self, t_abs: float, tol: float):
        """Tolerance mode: ``(frame, time)`` of a frame shown within ``[t_abs - tol, t_abs + tol]``, the cheapest
        to reach (see the module docstring). Targets come in increasing order."""
        lo, hi = max(self.t_start, t_abs - tol), t_abs + tol
        k = self._keyframe_in(lo, hi, t_abs)
        if k is not None and not self._forward_is_cheap(lo):
            got = self._grab_keyframe(k)
            if got is not None and got[1] <= hi + 1e-6 and got[1] >= lo - 1e-6:
                self._floor = got[1]
                return got
            # the index pointed elsewhere (an estimate of the keyframe's display time was off): take the exact path
        te = max(lo, self._floor)
        got = self._frame_for(te)
        self._floor = te
        return got

    def _keyframe_in(self, lo: float, hi: float, t_abs: float) -> float | None:
        """Display time (absolute s) of the keyframe nearest ``t_abs`` within ``[lo, hi]``, or None."""
        if self._keyframes is None:
            return None
        kf = self._keyframes + self._kf_shift
        a, b = np.searchsorted(kf, lo - 1e-9, side="left"), np.searchsorted(kf, hi + 1e-9, side="right")
        if a >= b:
            return None
        cand = kf[a:b]
        return float(cand[int(np.argmin(np.abs(cand - t_abs)))])

    def _forward_is_cheap(self, lo: float) -> bool:
        """Decoding on from the decoder's position to ``lo`` costs no more than a seek (within SEEK_MIN_GAP_S)."""
        if self._keyonly:
            return False
        pos = self.t_start if self._it is None else self._last_time
        return pos is not None and lo - pos <= SEEK_MIN_GAP_S

    def _grab_keyframe(self, k_abs: float):
        """Seek to the keyframe shown at ``k_abs`` and decode that one packet alone -> ``(frame, time)``, or None
        when no keyframe picture comes out. The decoder is drained (end-of-stream sent) so the picture comes out
        at once instead of after the reorder delay (with B-frames the decoder would otherwise hold it until more
        pictures arrive, and with non-key frames skipped that means the next keyframe, a GOP later); the next
        decode therefore starts with a seek, which flushes the decoder (``_keyonly``)."""
        av = _av()
        # seeks take display times (the MP4 demuxer maps them to its decode-time index itself); aim half a frame past
        # the keyframe so rounding cannot land on the keyframe before it
        self._seek(k_abs + 0.5 / max(self.fps, 1.0))
        self._keyonly = True
        self._it = None
        self._prev = self._pending = None
        cc = self.stream.codec_context
        try:
            for pkt in self.container.demux(self.stream):
                if pkt.size == 0 or not pkt.is_keyframe:
                    continue  # the demuxer's end-of-stream packet; a seek lands on a keyframe, so rarely anything else
                frames = list(cc.decode(pkt)) + list(cc.decode(None))
                if not frames:
                    return None
                f = frames[0]
                t = self._time(f)
                if t is None:
                    return None
                self._last_time = t
                self._prev = (f, t)
                return self._prev
        except av.error.FFmpegError as e:
            raise CorruptMediaError(self.path,
                                    f"cannot decode the keyframe at {self._rel(k_abs)} s ({_msg(e)})") from None
        return None

    def _time(self, frame) -> float | None:
        if frame.pts is None:
            return None
        return float(frame.pts) * self.tb

    def _next_frame(self):
        """Next decoded ``(frame, time)`` or None at the end of the stream."""
        av = _av()
        try:
            f = next(self._it)
        except StopIteration:
            self._eof = True
            return None
        except av.error.FFmpegError as e:
            raise CorruptMediaError(self.path, f"decode error after {self._rel(self._last_time)} s ({_msg(e)})") from None
        except MemoryError:
            raise MediaTooLargeError(self.path, "ran out of memory while decoding") from None
        t = self._time(f)
        if t is None:  # no pts (rare, raw streams): continue from the previous frame at the nominal rate
            t = (self._last_time + 1.0 / self.fps) if self._last_time is not None else self.t_start
        self._last_time = t
        return f, t

    def _frame_for(self, t_abs: float):
        """``(frame, time)`` shown at ``t_abs`` (absolute seconds); targets must come in increasing order."""
        self._target_ts = math.floor((t_abs + 1e-6) / self.tb)  # packets shown after this are never skipped
        if self._it is None and not self._should_seek(t_abs):
            self._it = self._decode_from_start()
        elif self._should_seek(t_abs):
            self._seek(t_abs)
        eps = 1e-6
        while True:
            if self._pending is None:
                if self._eof:
                    break
                nxt = self._next_frame()
                if nxt is None:
                    break
                self._pending = nxt
            if self._pending[1] <= t_abs + eps:
                self._prev, self._pending = self._pending, None
                continue
            break
        if self._prev is not None:
            if self._pending is None and self._eof:  # target lies after the last decodable frame
                f, pt = self._prev
                fdur = f.duration * self.tb if getattr(f, "duration", None) else 0.0
                if t_abs > pt + max(fdur, 1.0 / self.fps) + END_TOLERANCE_S:
                    raise CorruptMediaError(
                        self.path, f"truncated: no frame at {self._rel(t_abs)} s, last decodable frame at "
                        f"{self._rel(pt)} s of {self.info.duration:.2f} s")
            return self._prev
        if self._pending is not None:  # target before the first frame after the seek point
            return self._pending
        raise CorruptMediaError(self.path, f"truncated: no decodable frame at or after {self._rel(t_abs)} s")

    def _rel(self, t_abs: float | None) -> str:
        return "?" if t_abs is None else f"{t_abs - self.t_start:.2f}"

    def _scan_duration(self) -> float:
        """Duration from packet timestamps (demux only, no decoding), for containers without one."""
        av = _av()
        end = None
        try:
            self.container.seek(0, backward=True, any_frame=False, stream=self.stream)
        except av.error.FFmpegError:
            pass
        try:
            for pkt in self.container.demux(self.stream):
                if pkt.pts is not None:
                    e = float(pkt.pts + (pkt.duration or 0)) * self.tb
                    end = e if end is None else max(end, e)
        except av.error.FFmpegError:
            pass  # damaged tail: the frames before it still count
        if end is None or end <= self.t_start:
            raise CorruptMediaError(self.path, "cannot determine the video duration")
        return end - self.t_start

    def frames_at(self, ts: np.ndarray, *, size: Size = None, tolerance: float = 0.0
                  ) -> Iterator[tuple[float, np.ndarray]]:
        """Yield (frame time s, (H, W, 3) uint8) for sorted target times ``ts`` (seconds from the first frame);
        ``tolerance`` (seconds, >= 0) as in :func:`~xmr.media.video.sample_frames`."""
        tol = float(tolerance)
        if not (math.isfinite(tol) and tol >= 0):
            raise ValueError(f"tolerance must be a number of seconds >= 0, got {tolerance!r}")
        if len(ts) == 0:
            return
        ts = np.asarray(ts, dtype=np.float64)
        if np.any(np.diff(ts) < 0):
            raise ValueError("timestamps must be sorted in increasing order")
        self._reset()
        av = _av()
        for t in ts:
            t_abs = self.t_start + float(t)
            f, ft = self._frame_near(t_abs, tol) if tol > 0 else self._frame_for(t_abs)
            try:
                arr = self._to_array(f, size)
            except av.error.FFmpegError as e:
                raise CorruptMediaError(self.path, f"cannot convert frame at {t:.2f} s ({_msg(e)})") from None
            yield max(0.0, ft - self.t_start), arr

    def _to_array(self, f, size: Size) -> np.ndarray:
        rot = self.rotation
        cw, ch = self._coded
        if size is None:
            w, h = cw, ch
        elif isinstance(size, int):
            dw, dh = (ch, cw) if rot in (90, 270) else (cw, ch)
            s = min(1.0, size / min(dw, dh))
            w, h = max(1, round(cw * s)), max(1, round(ch * s))
        else:
            dw, dh = int(size[0]), int(size[1])
            w, h = (dh, dw) if rot in (90, 270) else (dw, dh)
        if (w, h) == (f.width, f.height):
            arr = f.to_ndarray(format="rgb24")
        else:
            arr = f.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
        if rot:
            arr = np.ascontiguousarray(np.rot90(arr, k=rot // 90))
        return arr

    def close(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001 - closing a broken container must not mask the real error
                pass
            self.container = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


__all__ = ["END_TOLERANCE_S", "MAX_FRAME_PIXELS", "SEEK_MIN_GAP_S", "SEEK_NO_INDEX_GAP_S", "VideoReader"]
