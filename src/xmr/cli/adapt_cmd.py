"""``xmr adapt``: adapt a model to a collection (ACP, Adaptive Cross-Modal Prototypes; docs/interactive.md): the
index's items are the unlabelled target domain, a captioned dataset the source; writes ``trained:DIR``."""
from __future__ import annotations

from ._common import add_index_arg, index_path, print_json, register_command

MAX_TARGET = 200_000


def setup(p):
    add_index_arg(p)
    p.add_argument("--source", required=True, metavar="SPEC",
                   help="captioned source data, encoded with the index's model, e.g. coco:DIR or manifest:FILE")
    p.add_argument("--split", default=None, help="split of --source (default: every item)")
    p.add_argument("--out", required=True, metavar="DIR", help="where the adapted model goes (loads as trained:DIR)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--prototypes", type=int, default=16, help="k-means prototypes per feature set (default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print a JSON summary")


def run(args) -> int:
    import os

    import numpy as np

    from ..data import load_dataset
    from ..encoders import create_encoder
    from ..errors import ConfigError
    from ..index.embeddings_io import EXTERNAL_SPEC
    from ..index.snapshot import open_reader
    from ..train.acp import ACPConfig, adapt, save_adapted
    from ..train.features import cached_features

    cfg = ACPConfig(prototypes=args.prototypes, epochs=args.epochs, seed=args.seed)
    if os.path.isdir(args.out) and os.listdir(args.out):
        raise ConfigError(f"--out {args.out} is not empty: give a new folder")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ConfigError(f"--out {args.out} is a file: give a new folder")
    store, reader = open_reader(index_path(args))
    try:
        spec = reader.model_spec
        if spec is None or not reader.count():
            raise ConfigError(f"index {index_path(args)} is empty: index the collection to adapt to first")
        if spec == EXTERNAL_SPEC:
            raise ConfigError("the index holds vectors imported without a model: ACP adapts a model's heads, so "
                              "index the collection with a model (--model SPEC)")
        if reader.count() < cfg.prototypes:
            raise ConfigError(f"the index holds {reader.count()} items, fewer than --prototypes {cfg.prototypes}")
        step = max(1, -(-reader.count() // MAX_TARGET))
        target = np.concatenate([v for _, v in reader.iter_vectors()])[::step]
    finally:
        store.close()
    source = load_dataset(args.source, split=args.split)
    enc = create_encoder(spec)
    img, txt, _ = cached_features(enc, source, show_progress=False)
    heads = adapt(img, txt, source.text_to_item, target, cfg)
    prov = {"index": os.path.abspath(index_path(args)), "target_items": int(len(target)), "source": args.source,
            "source_items": len(source), "source_captions": int(len(txt))}
    save_adapted(args.out, heads, spec, cfg, prov)
    summary = {"model": f"trained:{os.path.abspath(args.out)}", "base": spec, **prov}
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {summary['model']} (ACP on {spec}: {len(target)} target items, {len(source)} source items); "
              f"index the collection with --model {summary['model']} to use it")
    return 0


register_command("adapt", "adapt a model to an indexed collection (ACP: adaptive cross-modal prototypes)", setup, run)
