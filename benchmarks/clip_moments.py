"""What moments cost for a whole-clip video model (``trained:DIR`` of a MILES run) in ``xmr index``.

Each index window is embedded as its own clip of the model's ``clip_frames`` uniform frames
(:func:`xmr.video.clips.embed_clip_video`), so a video costs ``(1 + windows) x clip_frames`` decoded frames (fewer
where times coincide) and ``1 + windows`` clip encodes, against ``clip_frames`` frames and 1 encode before. The
frames of all windows come from one forward pass over the file. Measured per video, on ``xmr synth videos`` clips:

* ``whole``: the whole video's ``clip_frames`` frames read and encoded alone (what the index stored per video
  before windows were embedded);
* ``windows (one pass)``: :func:`embed_clip_video` (whole video + every window, one decode pass);
* ``windows (per window)``: the same vectors, each window read by :func:`read_clip` on its own (a decoder open and
  seek per window), to show what the single pass saves.

Seeds 0, 1, 2 (a new set of clips and a new 1-epoch model per seed): mean +- population std of ms per video.
One torch thread. Usage::

    python benchmarks/clip_moments.py --out /tmp/clip-moments [--n 12 --frames 96 --fps 8]

Results and their reading: docs/video.md, "Whole-clip models".
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

TINY = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "heads": 2, "dim": 32, "context_length": 48}


def _run(seed: int, out: Path, n: int, frames: int, fps: int, size: int, window: float, stride: float) -> dict:
    import torch

    from xmr.encoders import create_encoder
    from xmr.synth.videos import generate_videos
    from xmr.train import TrainConfig, train
    from xmr.video.clips import clip_window_times, embed_clip_video, read_clip
    from xmr.video.embed import VideoIndexConfig

    torch.set_num_threads(1)
    man = generate_videos(out / f"v{seed}", n=n, seed=seed, size=size, frames=frames, fps=fps, captions=1)
    cfg = TrainConfig(dataset=f"manifest:{man}", model="tiny", mode="full", loss="miles", epochs=1, batch_size=4,
                      lr=5e-3, frames=2, tiny=dict(TINY), seed=seed, eval_split="train")
    run = train(cfg, out / f"run{seed}", show_progress=False).out
    enc = create_encoder(f"trained:{run}")
    vcfg = VideoIndexConfig(window=window, stride=stride)
    paths = sorted(str(p) for p in (man.parent / "videos").glob("*.mp4"))
    ms = {"whole": [], "windows (one pass)": [], "windows (per window)": []}
    n_windows, n_frames, max_diff = [], [], 0.0
    for p in paths:
        t0 = time.perf_counter()
        enc.encode_clips([read_clip(p, enc)])
        ms["whole"].append(1e3 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        emb = embed_clip_video(p, enc, vcfg)
        ms["windows (one pass)"].append(1e3 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        _, wins = clip_window_times(emb.duration, enc, vcfg)
        items = [type("W", (), {"media": p, "start": s, "end": e})() for s, e, _ in wins]
        per = enc.encode_clips([read_clip(p, enc)] + [read_clip(it, enc) for it in items])
        ms["windows (per window)"].append(1e3 * (time.perf_counter() - t0))
        max_diff = max(max_diff, float(np.abs(per[1:] - np.stack([v for _, _, v in emb.segments])).max()))
        n_windows.append(len(emb.segments))
        n_frames.append(emb.num_frames)
    return {"ms": {k: float(np.mean(v)) for k, v in ms.items()}, "windows": float(np.mean(n_windows)),
            "frames_decoded": float(np.mean(n_frames)), "clip_frames": int(enc.clip_frames),
            "duration_s": frames / fps, "max_abs_diff_one_pass_vs_per_window": max_diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=12, help="clips per seed")
    ap.add_argument("--frames", type=int, default=96, help="frames per clip")
    ap.add_argument("--fps", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--window", type=float, default=4.0)
    ap.add_argument("--stride", type=float, default=2.0)
    args = ap.parse_args()
    runs = [_run(s, args.out, args.n, args.frames, args.fps, args.size, args.window, args.stride) for s in (0, 1, 2)]
    summary = {"settings": vars(args) | {"out": str(args.out)}, "per_seed": runs}
    for k in runs[0]["ms"]:
        v = np.array([r["ms"][k] for r in runs])
        summary[f"ms_per_video[{k}]"] = f"{v.mean():.1f} +- {v.std():.1f}"
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
