"""Speed and memory of xmr's frame sampling vs full decoding, on real clips and on long generated files.

Three ways to get 12 uniformly spread frames from a video, each run in its own subprocess (clean peak RSS):

* ``sample``: :func:`xmr.media.video.sample_frames` exact (the frame shown at each target: seek to the keyframe
  before a target when that skips decoding, else decode forward, not decoding H.264 non-reference pictures that
  come before a target; only the 12 picked frames are converted to RGB);
* ``snap``: the same with ``tolerance`` = half a part (``FramePlan.uniform(12, snap=0.5)``): any frame shown inside a
  target's own part of the clip; the reader takes the keyframe nearest the target (one decoded picture) when the
  part holds one;
* ``full``: what CLIP4Clip's extractor does: decode every frame in order and keep the ones whose time is nearest
  the targets. To be fair to it, only those are converted to RGB and nothing else is kept (loading the whole
  clip into an array, as ``torchvision.io.read_video`` does, would need ``frames * H * W * 3`` bytes: 41 GB for
  10 minutes of 720p at 25 fps).

The parent checks the frames against the full decode: ``sample`` must return the same frames (timestamps within
one frame, same pixels); ``snap``'s frames must be frames of the full decode (the full worker also picks the frames
at the snapped timestamps, so its pixels are compared) shown within the tolerance of their targets. Then it prints
a markdown table: wall time (best of ``--repeat``; files over 30 minutes: ``full`` once), the CPU time of that run
(user + system, decoder threads included: steadier than wall time on a shared machine), pictures decoded, peak
RSS, and the speed ratios against ``full`` (wall and CPU). A baseline row gives the RSS of a worker that only
imports PyAV and numpy.

    python benchmarks/video_decode.py --data ../shared/data/msrvtt-mini           # real clips + 10 and 60 min files
    python benchmarks/video_decode.py --data ../shared/data/msrvtt-mini --long-minutes 1   # quicker
    python benchmarks/video_decode.py --fps-grid FILE   # the index's 1 fps grid, with / without skipping
    python benchmarks/video_decode.py --fps-grid FILE --uniform 12   # 12 exact uniform frames, with / without
    python benchmarks/video_decode.py --codec libx265 --long-minutes 2 --repeat-long --workdir W --keep  # HEVC file

``--fps-grid FILE`` times what ``xmr index`` decodes (``FramePlan.fps_grid()``: 1 frame per second, 336 px) on one
file, twice each way alternately, with and without leaving H.264 non-reference pictures undecoded (the reader
before that change), in this process: wall, CPU time and packets not decoded.

Long files are generated once with PyAV into ``--workdir`` (default: a temp dir, deleted afterwards unless
``--keep``): 1280x720, 25 fps, libx264 ``veryfast`` (3 B-frames, B-pyramid), CRF 28, a keyframe every 250
frames (10 s, no scene cuts), moving textured content. The first ``--long-minutes`` file is encoded; longer ones
(``--repeat-long``, default 6: 60 minutes) are that file stream-copied several times in a row (same encoding).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


# ---- workers (run in a subprocess) ---------------------------------------------------------------------------


def _worker(method: str, path: str, num_frames: int, extra_times: list[float]) -> dict:
    import av  # noqa: F401 - imported in every method so the baseline is comparable

    t0, c0 = time.perf_counter(), _cpu_s()
    decoded = 0
    targets: list[float] = []
    if method == "baseline":
        frames, times = [], []
    elif method in ("sample", "snap"):  # exactly what sample_frames(path, num_frames[, tolerance]) does
        from xmr.media.video import VideoReader, sample_timestamps

        with VideoReader(path) as clip:
            decoded = _count_pictures(clip)
            ts = sample_timestamps(clip.info.duration, num_frames)
            tol = 0.5 * clip.info.duration / num_frames if method == "snap" else 0.0
            pairs = list(clip.frames_at(ts, tolerance=tol))
            decoded = decoded()
        targets = [float(t) for t in ts]
        times, frames = [t for t, _ in pairs], [a for _, a in pairs]
    elif method == "full":
        frames, times, decoded, targets = _full_decode(path, num_frames, extra_times)
    else:
        raise SystemExit(f"unknown method {method}")
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "method": method, "wall_s": wall, "cpu_s": cpu, "frames": len(frames), "decoded": decoded,
        "peak_rss_mb": rss_kb / 1024,
        "targets": targets, "times": [float(t) for t in times],
        "checksums": [int(a.astype(np.int64).sum()) for a in frames],
        "shape": list(frames[0].shape) if frames else None,
    }


def _cpu_s() -> float:
    """User + system CPU seconds of this process, decoder threads included (steadier than wall time on a shared
    machine)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _count_pictures(clip):
    """Count the pictures the reader decodes from now on (instruments its private decode steps; benchmark only)."""
    n = [0]
    step, grab = clip._next_frame, clip._grab_keyframe

    def counted_step():
        got = step()
        n[0] += got is not None
        return got

    def counted_grab(k):
        got = grab(k)
        n[0] += got is not None
        return got

    clip._next_frame, clip._grab_keyframe = counted_step, counted_grab
    return lambda: n[0]


def _full_decode(path: str, num_frames: int, extra_times: list[float]):
    """Decode every frame; keep the ones shown at the uniform target times (CLIP4Clip-style, best case) and at
    ``extra_times`` (the snapped frames' timestamps, to check their pixels)."""
    import av

    from xmr.media.video import probe, sample_timestamps

    info = probe(path)
    ts = sorted(set(float(t) for t in sample_timestamps(info.duration, num_frames)) | set(extra_times))
    targets = list(ts)
    frames, times = [], []
    decoded = 0
    with av.open(path) as c:
        v = c.streams.video[0]
        v.thread_type = "AUTO"
        t_first = None
        prev = None
        for f in c.decode(v):
            decoded += 1
            t = float(f.pts * f.time_base)
            if t_first is None:
                t_first = t
            t -= t_first
            while ts and t > ts[0] + 1e-6:  # the frame shown at ts[0] is the previous one
                frames.append((prev or (f, t))[0].to_ndarray(format="rgb24"))
                times.append((prev or (f, t))[1])
                ts.pop(0)
            prev = (f, t)
        while ts and prev is not None:
            frames.append(prev[0].to_ndarray(format="rgb24"))
            times.append(prev[1])
            ts.pop(0)
    return frames, times, decoded, targets


# ---- the long test file ----------------------------------------------------------------------------------------


def make_long_video(path: Path, minutes: float, width: int = 1280, height: int = 720, fps: int = 25,
                    gop: int = 250, codec: str = "libx264", preset: str = "veryfast") -> Path:
    """Moving textured content (a large random texture scrolled diagonally, plus a progress bar), encoded with
    libx264 ``preset`` (``veryfast``: 3 B-frames, B-pyramid, like most downloaded H.264), CRF 28, a keyframe every
    ``gop`` frames exactly (``keyint_min = gop``, no scene-cut keyframes)."""
    import av

    rng = np.random.default_rng(0)
    n = int(minutes * 60 * fps)
    # a smooth texture, 2x the frame size, in YUV420 planes directly (no per-frame colour conversion)
    small = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1), dtype=np.uint8)
    y_tex = np.kron(small, np.ones((16, 16), np.uint8))[: 2 * height, : 2 * width]
    y_tex = np.tile(y_tex, (2 if y_tex.shape[0] < 2 * height else 1, 2 if y_tex.shape[1] < 2 * width else 1))
    y_tex = y_tex[: 2 * height, : 2 * width]
    uv = np.full((height // 2, width // 2), 128, np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.codec_context.gop_size = gop
        if codec == "libx264":
            s.codec_context.options = {"preset": preset, "keyint_min": str(gop), "sc_threshold": "0", "crf": "28"}
        elif codec == "libx265":  # the same settings in x265's terms (default B-frames: 4, b-pyramid)
            s.codec_context.options = {"preset": preset, "crf": "28", "x265-params":
                                       f"keyint={gop}:min-keyint={gop}:scenecut=0:log-level=error"}
        for i in range(n):
            dy, dx = (i * 3) % height, (i * 5) % width
            y = np.ascontiguousarray(y_tex[dy : dy + height, dx : dx + width])
            y[:16, : (i * width) // n + 1] = 255  # progress bar: frames differ over the whole clip
            f = av.VideoFrame.from_ndarray(np.concatenate([y, uv.reshape(height // 4, width), uv.reshape(height // 4, width)]),
                                           format="yuv420p")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def repeat_video(src: Path, dst: Path, times: int) -> Path:
    """``src`` played ``times`` times in a row, stream-copied (no re-encoding; packets' timestamps shifted): a long
    file with the same encoding as ``src`` in seconds instead of an hour of x264."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        vin = i.streams.video[0]
        vout = o.add_stream_from_template(vin)
        span = None
        for k in range(times):
            i.seek(0, stream=vin)
            last = None
            for pkt in i.demux(vin):
                if pkt.dts is None:
                    continue  # the demuxer's end-of-stream flush packet
                shift = 0 if k == 0 else k * span
                last = max(last or pkt.pts, pkt.pts + (pkt.duration or 0))
                pkt.pts += shift
                pkt.dts += shift
                pkt.stream = vout
                o.mux(pkt)
            if k == 0:
                span = last - (vin.start_time or 0)
    return dst


# ---- driver -------------------------------------------------------------------------------------------------


def run_worker(method: str, path: Path, num_frames: int, extra_times=()) -> dict:
    env = dict(os.environ)
    src = str(HERE.parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, str(HERE), "--worker", method, str(path), "--num-frames", str(num_frames),
                          "--extra-times", json.dumps(list(extra_times))],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_file(path: Path, num_frames: int, repeat: int) -> list[dict]:
    from xmr.media.video import probe

    long_file = probe(path).duration > 30 * 60  # a full decode of an hour takes minutes: timed once
    rows = {}
    for method in ("baseline", "sample", "snap", "full"):
        extra = rows["snap"]["times"] if method == "full" else ()
        n = 1 if method == "baseline" or (method == "full" and long_file) else repeat
        runs = [run_worker(method, path, num_frames, extra) for _ in range(n)]
        best = min(runs, key=lambda r: r["wall_s"])
        best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        best["all_wall_s"] = [round(r["wall_s"], 3) for r in runs]
        rows[method] = best
    info = probe(path)
    s, n, f = rows["sample"], rows["snap"], rows["full"]
    full_at = {round(t, 4): c for t, c in zip(f["times"], f["checksums"])}  # frame time -> pixels checksum
    full_targets = [round(t, 4) for t in f["targets"]]
    by_target = {t: (ft, c) for t, ft, c in zip(full_targets, f["times"], f["checksums"])}
    tol_frame = 1.0 / info.fps + 1e-3
    exact = [by_target.get(round(t, 4)) for t in s["targets"]]
    s["same_frames"] = {
        "times": all(e is not None and abs(e[0] - t) <= tol_frame for e, t in zip(exact, s["times"])),
        "pixels": all(e is not None and e[1] == c for e, c in zip(exact, s["checksums"])),
    }
    tol = 0.5 * info.duration / num_frames
    n["same_frames"] = {
        "times": all(t - tol - tol_frame <= ft <= t + tol + 1e-6 for t, ft in zip(n["targets"], n["times"])),
        "pixels": all(full_at.get(round(ft, 4)) == c for ft, c in zip(n["times"], n["checksums"])),
        "tolerance_s": tol,
    }
    out = []
    for r in rows.values():
        r["file"] = path.name
        out.append(r)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE.parents[2] / "shared" / "data" / "msrvtt-mini"),
                    help="folder of real clips (*.mp4); missing = skipped")
    ap.add_argument("--long-minutes", type=float, default=10.0, help="length of the encoded 720p file (0 = none)")
    ap.add_argument("--repeat-long", type=int, nargs="*", default=[6],
                    help="also time the encoded file played this many times in a row (stream copy); none = skip")
    ap.add_argument("--num-frames", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3, help="runs per method and file; the best time is reported")
    ap.add_argument("--workdir", default=None, help="where to write the long files (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--json", default=None, help="also write all rows to this JSON file")
    ap.add_argument("--worker", nargs=2, metavar=("METHOD", "FILE"), help=argparse.SUPPRESS)
    ap.add_argument("--extra-times", default="[]", help=argparse.SUPPRESS)
    ap.add_argument("--fps-grid", metavar="FILE", default=None,
                    help="only time the index's 1 fps grid on FILE, with and without non-reference skipping")
    ap.add_argument("--uniform", type=int, default=None, metavar="N",
                    help="with --fps-grid: N exact uniform frames instead of the 1 fps grid")
    ap.add_argument("--codec", default="libx264", choices=("libx264", "libx265"),
                    help="encoder of the generated long file (libx265: HEVC, same GOP and CRF)")
    args = ap.parse_args(argv)
    if args.fps_grid:
        fps_grid_check(args.fps_grid, uniform=args.uniform)
        return 0
    if args.worker:
        print(json.dumps(_worker(args.worker[0], args.worker[1], args.num_frames, json.loads(args.extra_times))))
        return 0

    files = sorted(Path(args.data).glob("*.mp4")) if Path(args.data).is_dir() else []
    if not files:
        print(f"no clips in {args.data}: real-clip rows skipped", file=sys.stderr)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="xmr_video_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    gen_s = None
    try:
        if args.long_minutes > 0:
            tag = "" if args.codec == "libx264" else "_hevc"
            long = work / f"long_{args.long_minutes:g}min_720p25_gop250_veryfast{tag}.mp4"
            if not long.exists():
                t0 = time.perf_counter()
                make_long_video(long, args.long_minutes, codec=args.codec)
                gen_s = time.perf_counter() - t0
            files.append(long)
            for k in args.repeat_long or []:
                rep = work / f"long_{k * args.long_minutes:g}min_720p25_gop250_veryfast{tag}.mp4"
                if not rep.exists():
                    repeat_video(long, rep, k)
                files.append(rep)
        rows = []
        for f in files:
            print(f"timing {f.name} ...", file=sys.stderr, flush=True)
            rows += bench_file(f, args.num_frames, args.repeat)
        infos = {f.name: _describe(f) for f in files}
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    _print_table(rows, infos, gen_s)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def fps_grid_check(path: str, rounds: int = 2, uniform: int | None = None) -> None:
    """``uniform=N``: N exact uniform frames (``FramePlan.uniform(N)``) instead of the index's fps grid."""
    from xmr.media.video import VideoReader
    from xmr.video import FramePlan

    plan = FramePlan.uniform(uniform, size=336) if uniform else FramePlan.fps_grid()
    sums = {}
    for _ in range(rounds):
        for skip in (True, False):
            t0, c0 = time.perf_counter(), _cpu_s()
            with VideoReader(path) as r:
                if not skip:
                    r._nal = None  # decode every picture on the way (the reader before the skipping)
                times, _ = plan.times(r.info.duration)
                got = [int(a.sum(dtype=np.int64)) for _, a in r.frames_at(times, size=336)]
                print(f"skip non-reference={skip}: {len(got)} frames, {r.skipped} packets not decoded, "
                      f"wall {time.perf_counter() - t0:.1f} s, CPU {_cpu_s() - c0:.1f} s", flush=True)
            sums.setdefault(skip, got)
    print(f"same frames (pixel checksums) with and without skipping: {'yes' if sums[True] == sums[False] else 'NO'}")


def _describe(f: Path) -> str:
    from xmr.media.video import probe

    i = probe(f)
    return f"{f.name}: {i.width}x{i.height}, {i.fps:.2f} fps, {i.duration:.1f} s, {f.stat().st_size / 1e6:.1f} MB"


def _print_table(rows: list[dict], infos: dict[str, str], gen_s: float | None) -> None:
    print("| file | method | wall s (best of runs) | CPU s | pictures decoded | peak RSS MB | speed-up (wall) "
          "| speed-up (CPU) |")
    print("|---|---|---|---|---|---|---|---|")
    by_file: dict[str, dict] = {}
    for r in rows:
        by_file.setdefault(r["file"], {})[r["method"]] = r
    for name, m in by_file.items():
        full_t, full_c = m["full"]["wall_s"], m["full"]["cpu_s"]
        for method in ("baseline", "sample", "snap", "full"):
            r = m[method]
            if method == "baseline":
                print(f"| {name} | (import only) | - | - | - | {r['peak_rss_mb']:.0f} | - | - |")
                continue
            sp = f"{full_t / r['wall_s']:.1f}x" if method != "full" else "1.0x"
            spc = f"{full_c / r['cpu_s']:.1f}x" if method != "full" else "1.0x"
            print(f"| {name} | {method} | {r['wall_s']:.3f} ({', '.join(map(str, r['all_wall_s']))}) | "
                  f"{r['cpu_s']:.2f} | {r['decoded']} | {r['peak_rss_mb']:.0f} | {sp} | {spc} |")
        sf, nf = m["sample"]["same_frames"], m["snap"]["same_frames"]
        print(f"|  | sample = full decode: timestamps {'yes' if sf['times'] else 'NO'}, "
              f"pixels {'yes' if sf['pixels'] else 'NO'}; snap within {nf['tolerance_s']:.2f} s: "
              f"{'yes' if nf['times'] else 'NO'}, full-decode pixels {'yes' if nf['pixels'] else 'NO'} | | | | | | |")
    print()
    for line in infos.values():
        print(line)
    if gen_s is not None:
        print(f"(long file encoded in {gen_s:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
