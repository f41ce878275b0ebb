"""Speed and memory of xmr's frame sampling vs full decoding, on real clips and on a long generated file.

Two ways to get 12 uniformly spread frames from a video, each run in its own subprocess (clean peak RSS):

* ``sample``: :func:`xmr.media.video.sample_frames` (seek to the keyframe before each target when that skips
  decoding, else decode forward; only the 12 picked frames are converted to RGB);
* ``full``: what CLIP4Clip's extractor does: decode every frame in order and keep the 12 whose index is nearest
  the targets. To be fair to it, only those 12 are converted to RGB and nothing else is kept (loading the whole
  clip into an array, as ``torchvision.io.read_video`` does, would need ``frames * H * W * 3`` bytes: 41 GB for
  10 minutes of 720p at 25 fps).

The parent checks that both return the same frames (same timestamps within one frame), then prints a markdown
table: wall time (best of ``--repeat``), output frames per second, decoded frames per second, peak RSS, and the
speed ratio. A baseline row gives the RSS of a worker that only imports PyAV and numpy.

    python benchmarks/video_decode.py --data ../shared/data/msrvtt-mini           # real clips + 10 min 720p file
    python benchmarks/video_decode.py --data ../shared/data/msrvtt-mini --long-minutes 1   # quicker

The long file is generated once with PyAV into ``--workdir`` (default: a temp dir, deleted afterwards unless
``--keep``): 1280x720, 25 fps, libx264 ``ultrafast``, a keyframe every 250 frames (10 s), moving textured content.
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


def _worker(method: str, path: str, num_frames: int) -> dict:
    import av  # noqa: F401 - imported in every method so the baseline is comparable

    t0 = time.perf_counter()
    decoded = 0
    if method == "baseline":
        frames, times = [], []
    elif method == "sample":  # exactly what sample_frames(path, num_frames) does, keeping the frame times too
        from xmr.media.video import VideoReader, sample_timestamps

        with VideoReader(path) as clip:
            pairs = list(clip.frames_at(sample_timestamps(clip.info.duration, num_frames)))
        times, frames = [t for t, _ in pairs], [a for _, a in pairs]
    elif method == "full":
        frames, times, decoded = _full_decode(path, num_frames)
    else:
        raise SystemExit(f"unknown method {method}")
    wall = time.perf_counter() - t0
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "method": method, "wall_s": wall, "frames": len(frames), "decoded": decoded, "peak_rss_mb": rss_kb / 1024,
        "times": [round(float(t), 4) for t in times],
        "checksums": [int(a.astype(np.int64).sum()) for a in frames],
        "shape": list(frames[0].shape) if frames else None,
    }


def _full_decode(path: str, num_frames: int):
    """Decode every frame; keep the ones shown at the uniform target times (CLIP4Clip-style, best case)."""
    import av

    from xmr.media.video import probe, sample_timestamps

    info = probe(path)
    ts = list(sample_timestamps(info.duration, num_frames))
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
    return frames, times, decoded


# ---- the long test file ----------------------------------------------------------------------------------------


def make_long_video(path: Path, minutes: float, width: int = 1280, height: int = 720, fps: int = 25,
                    gop: int = 250, codec: str = "libx264") -> Path:
    """Moving textured content (a large random texture scrolled diagonally, plus a frame counter bar)."""
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
            s.codec_context.options = {"preset": "ultrafast", "keyint_min": str(gop), "sc_threshold": "0", "crf": "28"}
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


# ---- driver -------------------------------------------------------------------------------------------------


def run_worker(method: str, path: Path, num_frames: int) -> dict:
    env = dict(os.environ)
    src = str(HERE.parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, str(HERE), "--worker", method, str(path), "--num-frames", str(num_frames)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_file(path: Path, num_frames: int, repeat: int) -> list[dict]:
    rows = []
    for method in ("baseline", "sample", "full"):
        runs = [run_worker(method, path, num_frames) for _ in range(repeat if method != "baseline" else 1)]
        best = min(runs, key=lambda r: r["wall_s"])
        best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        best["all_wall_s"] = [round(r["wall_s"], 3) for r in runs]
        rows.append(best)
    s, f = rows[1], rows[2]
    fps = None
    try:
        from xmr.media.video import probe

        fps = probe(path).fps
    except Exception:  # noqa: BLE001
        pass
    tol = 1.0 / fps + 1e-3 if fps else 0.05
    same_times = len(s["times"]) == len(f["times"]) and all(abs(a - b) <= tol for a, b in zip(s["times"], f["times"]))
    same_pixels = s["checksums"] == f["checksums"]
    for r in rows:
        r["file"] = path.name
        r["same_frames"] = {"times": same_times, "pixels": same_pixels}
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE.parents[2] / "shared" / "data" / "msrvtt-mini"),
                    help="folder of real clips (*.mp4); missing = skipped")
    ap.add_argument("--long-minutes", type=float, default=10.0, help="length of the generated 720p file (0 = none)")
    ap.add_argument("--num-frames", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3, help="runs per method and file; the best time is reported")
    ap.add_argument("--workdir", default=None, help="where to write the long file (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated file")
    ap.add_argument("--json", default=None, help="also write all rows to this JSON file")
    ap.add_argument("--worker", nargs=2, metavar=("METHOD", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker[0], args.worker[1], args.num_frames)))
        return 0

    files = sorted(Path(args.data).glob("*.mp4")) if Path(args.data).is_dir() else []
    if not files:
        print(f"no clips in {args.data}: real-clip rows skipped", file=sys.stderr)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="xmr_video_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    gen_s = None
    try:
        if args.long_minutes > 0:
            long = work / f"long_{args.long_minutes:g}min_720p25_gop250.mp4"
            if not long.exists():
                t0 = time.perf_counter()
                make_long_video(long, args.long_minutes)
                gen_s = time.perf_counter() - t0
            files.append(long)
        rows = []
        for f in files:
            rows += bench_file(f, args.num_frames, args.repeat)
        infos = {f.name: _describe(f) for f in files}
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    _print_table(rows, infos, gen_s)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def _describe(f: Path) -> str:
    from xmr.media.video import probe

    i = probe(f)
    return f"{f.name}: {i.width}x{i.height}, {i.fps:.2f} fps, {i.duration:.1f} s, {f.stat().st_size / 1e6:.1f} MB"


def _print_table(rows: list[dict], infos: dict[str, str], gen_s: float | None) -> None:
    print(f"| file | method | wall s (best of runs) | output frames/s | decoded frames/s | peak RSS MB | speed-up |")
    print("|---|---|---|---|---|---|---|")
    by_file: dict[str, dict] = {}
    for r in rows:
        by_file.setdefault(r["file"], {})[r["method"]] = r
    for name, m in by_file.items():
        full_t = m["full"]["wall_s"]
        for method in ("baseline", "sample", "full"):
            r = m[method]
            if method == "baseline":
                print(f"| {name} | (import only) | - | - | - | {r['peak_rss_mb']:.0f} | - |")
                continue
            dec = f"{r['decoded'] / r['wall_s']:.0f}" if r["decoded"] else "-"
            sp = f"{full_t / r['wall_s']:.1f}x" if method == "sample" else "1.0x"
            print(f"| {name} | {method} | {r['wall_s']:.3f} ({', '.join(map(str, r['all_wall_s']))}) | "
                  f"{r['frames'] / r['wall_s']:.1f} | {dec} | {r['peak_rss_mb']:.0f} | {sp} |")
        sf = m["sample"]["same_frames"]
        print(f"|  | same frames as full decode: timestamps {'yes' if sf['times'] else 'NO'}, "
              f"pixels {'yes' if sf['pixels'] else 'no (see docs)'} | | | | | |")
    print()
    for line in infos.values():
        print(line)
    if gen_s is not None:
        print(f"(long file generated in {gen_s:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
