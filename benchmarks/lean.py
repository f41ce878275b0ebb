"""LEAN / LINAS on the synthetic video set: text->video R@1 against frames decoded per video, student vs teacher.

Claim checked (LINAS, ECCV 2022, as xmr uses it): a student that looks at few frames and reads one caption,
distilled from a teacher that looks at many frames and reads the video's associated captions, gets close to the
many-frame model's quality at a fraction of the frames — and the distillation is what gets it there (a few-frame
model trained alone is the control).

Setup (what is frozen / trained):
  * data: ``xmr synth videos`` clips (``--n`` 600, seed 0; 16 frames of 64x64 at 8 fps) with 4 captions per clip
    (``captions=4``: the usual caption plus three that each describe another part of the clip);
  * frozen: the ``tiny`` image tower at its random initialisation (``TinyConfig()``, seed 0); 16 frames per clip
    (``FramePlan.uniform(16)``, i.e. every frame) encoded once -> (N, 16, 64). A model that "decodes F frames"
    is given the F uniform centres among them, which are exactly the frames ``FramePlan.uniform(F)`` decodes
    (checked at start-up on a few clips);
  * trained from scratch per seed (head + a word-level GRU text tower, as ``benchmarks/video_heads.py``):
      - ``many-frame``: ``seqtransf`` on 16 frames, InfoNCE (the model the student should approach);
      - ``few-frame``: ``seqtransf`` on F frames, InfoNCE (the control: no teacher);
      - ``teacher``: ``seqtransf`` on 16 frames + linguistic association over the clip's 4 captions
        (:func:`xmr.heads.lean.train_teacher`); evaluated with the test clip's own captions as its support set —
        privileged information no search has, shown as the teacher's ceiling;
      - ``LEAN``: the ``lean`` student on F frames, one caption, distilled from that teacher
        (:func:`xmr.heads.lean.distill_student`, alpha = beta = video_alpha = 1);
      - ``LEAN w/o association`` (F = 2): the same distillation from the ``many-frame`` model (no captions read):
        what the linguistic association adds;
      - with ``--adapt``: ``LEAN adaptive distillation`` (F = 2): ``similarity="adapt"`` (the paper's Adaptive
        Distillation over the whole similarity matrix) instead of the positive pairs only.
  * queries: every test clip's first caption (the same queries as ``benchmarks/video_heads.py``); gallery: all test
    clips. R@1 with pessimistic ties. Mean ± std over ``--seeds``.

    python benchmarks/lean.py [--n 600] [--epochs 40] [--seeds 0 1 2] [--frames 1 2 4] [--out /tmp/xmr_lean_bench]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))  # the shared helpers of benchmarks/video_heads.py

from video_heads import WordGRU, caption_type, tokenize  # noqa: E402

from xmr.data import load_dataset  # noqa: E402
from xmr.encoders.tiny import TinyConfig, TinyDualEncoder, TinyEncoder  # noqa: E402
from xmr.heads.lean import (LeanTrainConfig, Teacher, distill_student,  # noqa: E402
                            train_teacher, uniform_indices)
from xmr.heads.train import train_head  # noqa: E402
from xmr.synth.videos import generate_videos  # noqa: E402
from xmr.video import frame_features  # noqa: E402

ALL_FRAMES = 16


def r1(sims: np.ndarray) -> np.ndarray:
    """(Q, Q) sims with the positive on the diagonal -> (Q,) bool hit at rank 1 (a tie counts as a miss)."""
    pos = np.diag(sims)
    return (sims >= pos[:, None]).sum(1) - 1 < 1


class _NoAssociation(torch.nn.Module):
    """A teacher text side that reads the caption only (the ablation's teacher is the many-frame model)."""

    def forward(self, caption, support, mask):
        return caption


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--frames", type=int, nargs="+", default=[1, 2, 4], help="student / control frame counts")
    ap.add_argument("--adapt", action="store_true", help="also train the Adaptive Distillation student (F = 2)")
    ap.add_argument("--skip-baselines", action="store_true",
                    help="only the teacher and the LEAN students (no many-frame / few-frame / w/o association rows)")
    ap.add_argument("--out", default="/tmp/xmr_lean_bench")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()

    manifest = Path(args.out) / "captions.jsonl"
    if not manifest.is_file():
        generate_videos(args.out, n=args.n, seed=0, frames=ALL_FRAMES, captions=4)
    ds = load_dataset(f"manifest:{manifest}")
    items = list(ds.items)
    enc = TinyEncoder(TinyDualEncoder(TinyConfig()))
    feats = frame_features(enc, items, ALL_FRAMES, size=None)  # (N, 16, 64)
    for f in sorted(set(args.frames)):  # "F frames decoded" really is the F-frame subset of the 16
        direct = frame_features(enc, items[:3], f, size=None)
        assert torch.allclose(direct, feats[:3, uniform_indices(ALL_FRAMES, f)], atol=1e-5), f
    t_feat = time.perf_counter() - t0

    split = np.array([it.split for it in items])
    tr, te = np.where(split == "train")[0], np.where(split == "test")[0]
    vocab: dict[str, int] = {}
    caps = [list(it.captions) for it in items]
    all_caps = [c for cs in caps for c in cs]
    ids = tokenize(all_caps, vocab)
    offsets = np.cumsum([0] + [len(cs) for cs in caps])
    pairs_tr = [(int(j), k) for k, v in enumerate(tr) for j in range(offsets[v], offsets[v + 1])]
    q_idx = np.array([offsets[v] for v in te])  # first caption of each test clip
    types = np.array([caption_type(caps[v][0]) for v in te])
    f_tr, f_te = feats[tr], feats[te]
    print(f"{len(tr)} train / {len(te)} test clips, {len(all_caps)} captions; features in {t_feat:.1f} s",
          flush=True)

    def sims_of(head, tower, frames_te):
        with torch.no_grad():
            return head.similarity(tower(ids[torch.as_tensor(q_idx)]), frames_te).numpy()

    rows: dict[str, list[np.ndarray]] = {}

    def record(name, hits, seed, secs):
        rows.setdefault(name, []).append(hits)
        print(f"  {name:28s} seed {seed}: R@1 {100 * hits.mean():5.1f} ({secs:.0f} s)", flush=True)

    for seed in args.seeds:
        cfg = LeanTrainConfig(teacher_frames=ALL_FRAMES, epochs=args.epochs, lr=args.lr, seed=seed)
        common = {"epochs": args.epochs, "lr": args.lr, "seed": seed, "batch_size": 32}
        if not args.skip_baselines:
            s = time.perf_counter()
            tower = WordGRU(len(vocab) + 1, 64, seed)
            many = train_head(f_tr, ids, pairs_tr, "seqtransf",
                              {"dim": 64, "max_frames": ALL_FRAMES, "num_frames": ALL_FRAMES, "heads": 4},
                              text_tower=tower, **common)
            record(f"many-frame ({ALL_FRAMES})", r1(sims_of(many, tower, f_te)), seed, time.perf_counter() - s)
            many_teacher = Teacher(many, tower, _NoAssociation(), ALL_FRAMES)

        s = time.perf_counter()
        teacher = train_teacher(f_tr, ids, pairs_tr, WordGRU(len(vocab) + 1, 64, seed), cfg)
        with torch.no_grad():  # privileged: each query's support set is its test clip's captions
            sup = np.array([np.arange(offsets[v], offsets[v + 1]) for v in te])
            t_txt = torch.nn.functional.normalize(teacher.text(ids, q_idx, sup, np.ones(sup.shape, bool)), dim=-1)
            hits = r1((t_txt @ teacher.video(f_te).T).numpy())
        record(f"teacher ({ALL_FRAMES}, privileged captions)", hits, seed, time.perf_counter() - s)

        for f in args.frames:
            idx = uniform_indices(ALL_FRAMES, f)
            if not args.skip_baselines:
                s = time.perf_counter()
                tower_f = WordGRU(len(vocab) + 1, 64, seed)
                few = train_head(f_tr[:, idx], ids, pairs_tr, "seqtransf",
                                 {"dim": 64, "max_frames": f, "num_frames": f, "heads": 4}, text_tower=tower_f,
                                 **common)
                record(f"few-frame ({f})", r1(sims_of(few, tower_f, f_te[:, idx])), seed, time.perf_counter() - s)

            s = time.perf_counter()
            tower_s = WordGRU(len(vocab) + 1, 64, seed)
            student = distill_student(f_tr, ids, pairs_tr, teacher, tower_s, LeanTrainConfig(
                teacher_frames=ALL_FRAMES, student_frames=f, epochs=args.epochs, lr=args.lr, seed=seed))
            record(f"LEAN ({f})", r1(sims_of(student, tower_s, f_te[:, idx])), seed, time.perf_counter() - s)

            if f == 2 and args.adapt:
                s = time.perf_counter()
                tower_d = WordGRU(len(vocab) + 1, 64, seed)
                ad = distill_student(f_tr, ids, pairs_tr, teacher, tower_d, LeanTrainConfig(
                    teacher_frames=ALL_FRAMES, student_frames=f, epochs=args.epochs, lr=args.lr, seed=seed,
                    similarity="adapt"))
                record(f"LEAN adaptive distillation ({f})", r1(sims_of(ad, tower_d, f_te[:, idx])), seed,
                       time.perf_counter() - s)

            if f == 2 and not args.skip_baselines:
                s = time.perf_counter()
                tower_a = WordGRU(len(vocab) + 1, 64, seed)
                abl = distill_student(f_tr, ids, pairs_tr, many_teacher, tower_a, LeanTrainConfig(
                    teacher_frames=ALL_FRAMES, student_frames=f, epochs=args.epochs, lr=args.lr, seed=seed))
                record(f"LEAN w/o association ({f})", r1(sims_of(abl, tower_a, f_te[:, idx])), seed,
                       time.perf_counter() - s)

    print(f"\ntext->video R@1 (%) on {len(te)} test clips (queries: first captions; a: {int((types == 'a').sum())}, "
          f"b: {int((types == 'b').sum())}, c: {int((types == 'c').sum())}), {len(args.seeds)} seeds, mean ± std, "
          f"{args.epochs} epochs; total {time.perf_counter() - t0:.0f} s\n")
    print("| model | frames decoded per video | all | transient (a) | order (b) | motion (c) |")
    print("|---|---|---|---|---|---|")
    for name, runs in rows.items():
        frames = name.split("(")[-1].split(",")[0].rstrip(")")
        cells = []
        for mask in (np.ones(len(te), bool), types == "a", types == "b", types == "c"):
            vals = [100 * h[mask].mean() for h in runs]
            cells.append(f"{np.mean(vals):.1f} ± {np.std(vals):.1f}")
        print(f"| {name.split(' (')[0]}{' (privileged captions)' if 'privileged' in name else ''} | {frames} | "
              + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({k: [h.tolist() for h in v] for k, v in rows.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
