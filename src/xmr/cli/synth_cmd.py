"""``xmr synth videos|images|edits|text-images|moments``: write a synthetic retrieval set. Videos: coloured shapes that
appear, disappear and move (:mod:`xmr.synth.videos`); images: coloured shapes with several true captions each and
optional recorded corruptions for noisy-training claims (:mod:`xmr.synth.images`); text-images: signs with rendered
words in several fonts, sizes and angles, captions naming the words (:mod:`xmr.synth.text_images`, scene-text
retrieval); moments: clip features and queries with a planted retrieval bias (:mod:`xmr.synth.moments`) for ``xmr
train-moments``."""
from __future__ import annotations

from ._common import register_command


def setup(p):
    p.add_argument("kind", choices=["videos", "images", "edits", "text-images", "moments"],
                   help="what to generate (videos: clips + captions.jsonl; images: PNGs + captions.jsonl; edits: "
                        "images + (reference, modification text, target) triplets for composed queries; "
                        "text-images: PNGs of signs with words + captions naming them; moments: clip features + "
                        "queries with a planted retrieval bias, train.npz / test.npz for xmr train-moments)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (videos/ or images/, captions.jsonl)")
    p.add_argument("--n", type=int, default=None, help="number of clips / images (default 120 / 600; edits 800; "
                   "moments: 300 train videos, half as many test)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", type=int, default=None,
                   help="frame / image side in pixels (default 64; text-images 320)")
    p.add_argument("--test-fraction", type=float, default=None,
                   help="share of items in the test split (default 0.3 videos, 0.25 images)")
    v = p.add_argument_group("videos")
    v.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    i = p.add_argument_group("images (corruptions touch the train split only and are recorded per line)")
    i.add_argument("--noise", type=float, default=0.0, metavar="FRACTION",
                   help="share of train images whose captions are another class's image's (noisy correspondence)")
    i.add_argument("--partial", type=float, default=0.0, metavar="FRACTION",
                   help="share of train images with partial / ambiguous captions ('a red shape')")
    i.add_argument("--mislabel", type=float, default=0.0, metavar="FRACTION",
                   help="share of train images given a wrong class label (label noise)")
    i.add_argument("--captions", type=int, default=3, help="true captions per image (1-5, default 3)")
    e = p.add_argument_group("edits (held-out colour-shape pairs appear only as test targets)")
    e.add_argument("--held-out", type=int, default=3, metavar="N", help="colour-shape pairs kept out of train "
                   "(default 3 of 12)")
    e.add_argument("--test-queries", type=int, default=300, help="test triplets (default 300)")
    t = p.add_argument_group("text-images")
    t.add_argument("--words", type=int, default=1, help="words per image (1 or 2, default 1)")
    t.add_argument("--max-angle", type=float, default=15.0, help="text rotation range in degrees (default 15)")


def run(args) -> int:
    if args.kind == "text-images":
        from ..synth.text_images import TextImageConfig, generate_text_images

        cfg = TextImageConfig(n=60 if args.n is None else args.n, seed=args.seed,
                              size=320 if args.size is None else args.size, words_per_image=args.words,
                              max_angle=args.max_angle,
                              test_fraction=1.0 if args.test_fraction is None else args.test_fraction)
        manifest = generate_text_images(args.out, cfg)
        print(f"wrote {cfg.n} text images and {manifest} (use --dataset manifest:{manifest}; index the images "
              f"with xmr index {manifest.parent / 'images'} --experts ocr)")
        return 0
    if args.size is None:
        args.size = 64
    if args.kind == "videos":
        from ..synth.videos import generate_videos

        n = args.n if args.n is not None else 120
        manifest = generate_videos(args.out, n=n, seed=args.seed, frames=args.frames, size=args.size,
                                   test_fraction=0.3 if args.test_fraction is None else args.test_fraction)
        print(f"wrote {n} clips and {manifest} (use --dataset manifest:{manifest})")
        return 0
    import json

    if args.kind == "edits":
        return _edits(args)
    if args.kind == "moments":
        return _moments(args)
    from ..synth.images import SynthImageConfig, generate_images

    cfg = SynthImageConfig(n=600 if args.n is None else args.n, seed=args.seed, size=args.size,
                           captions_per_image=args.captions,
                           test_fraction=0.25 if args.test_fraction is None else args.test_fraction,
                           noise=args.noise, partial=args.partial, mislabel=args.mislabel)
    manifest = generate_images(args.out, cfg)
    s = json.loads((manifest.parent / "synth.json").read_text())
    print(f"wrote {s['images']} images ({s['train']} train, {s['test']} test; {s['corrupted']} with swapped "
          f"captions, {s['partial']} partial, {s['mislabelled']} mislabelled) and {manifest} "
          f"(use --dataset manifest:{manifest})")
    return 0


def _edits(args) -> int:
    import json

    from ..synth.edits import SynthEditsConfig, generate_edits

    cfg = SynthEditsConfig(n=800 if args.n is None else args.n, seed=args.seed, size=args.size,
                           held_out=args.held_out, test_queries=args.test_queries)
    manifest = generate_edits(args.out, cfg)
    s = json.loads((manifest.parent / "synth.json").read_text())
    print(f"wrote {s['images']} images ({s['train_images']} train, {s['test_images']} test), {s['train_triplets']} "
          f"train and {s['test_triplets']} test triplets (held out: {', '.join(s['held_out'])}) and {manifest} "
          f"(use --dataset edits:{manifest.parent})")
    return 0


def _moments(args) -> int:
    """Train split: 4 of 5 events use their object's frequent predicate (the planted bias); test split: half, with
    a frequent-predicate distractor next to every rare one (docs/moments.md)."""
    import json
    from pathlib import Path

    from ..errors import ConfigError
    from ..synth.moments import MomentWorld
    from ..train.moment_data import save_moment_data
    from ..train.moments import MomentData

    n = 300 if args.n is None else args.n
    if n < 2:
        raise ConfigError("--n: moments need at least 2 videos")
    out = Path(args.out)
    world = MomentWorld(world_seed=args.seed)
    train = MomentData.from_split(world.sample(n, frequent_share=0.8, seed=args.seed + 1))
    test = MomentData.from_split(world.sample(max(n // 2, 2), frequent_share=0.5, distractors=True,
                                              seed=args.seed + 2))
    save_moment_data(train, out / "train.npz")
    save_moment_data(test, out / "test.npz")
    (out / "synth.json").write_text(json.dumps({"kind": "moments", "world_seed": args.seed, "train_videos": n,
                                                "test_videos": len(test.frames), "train_queries": len(train.queries),
                                                "test_queries": len(test.queries)}, indent=1) + "\n")
    print(f"wrote {n} train and {len(test.frames)} test videos ({len(train.queries)} / {len(test.queries)} queries) "
          f"to {out} (use --dataset moments:{out})")
    return 0


register_command("synth", "generate synthetic data sets (videos: shapes that appear, disappear and move; images: "
                 "shapes with captions and recorded corruptions; edits: composed-query triplets)", setup, run)
