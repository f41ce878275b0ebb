"""``xmr synth videos``: write a synthetic video retrieval set (coloured shapes; captions about transient content,
temporal order and motion direction). See :mod:`xmr.synth.videos`."""
from __future__ import annotations

from ._common import register_command


def setup(p):
    p.add_argument("kind", choices=["videos"], help="what to generate (videos: clips + captions.jsonl)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (videos/ and captions.jsonl)")
    p.add_argument("--n", type=int, default=120, help="number of clips (default 120)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    p.add_argument("--size", type=int, default=64, help="frame side in pixels (default 64)")
    p.add_argument("--test-fraction", type=float, default=0.3, help="share of clips in the test split (default 0.3)")


def run(args) -> int:
    from ..synth.videos import generate_videos

    manifest = generate_videos(args.out, n=args.n, seed=args.seed, frames=args.frames, size=args.size,
                               test_fraction=args.test_fraction)
    print(f"wrote {args.n} clips and {manifest} (use --dataset manifest:{manifest})")
    return 0


register_command("synth", "generate synthetic data sets (videos: shapes that appear, disappear and move)", setup, run)
