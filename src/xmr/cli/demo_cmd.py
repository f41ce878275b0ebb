"""``xmr demo``: the quickstart's main job on the bundled sample images, offline."""
from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

from ._common import add_device_arg, progress_flag, register_command

DEMO_QUERIES = ("a cat", "a cup of coffee", "a rocket on a launchpad", "a motorbike", "an astronaut")


def samples_dir() -> Path:
    return Path(str(resources.files("xmr") / "assets" / "samples"))


def setup(p):
    p.add_argument("--index", default=None, metavar="PATH", help="where to build the demo index (default $XMR_HOME/demo-index)")
    p.add_argument("--model", default="concept", metavar="SPEC", help="encoder spec (default: concept, offline)")
    p.add_argument("--fresh", action="store_true", help="delete the demo index first")
    add_device_arg(p)


def run(args) -> int:
    from ..encoders import create_encoder
    from ..index import IndexStore, index_folder
    from ..retrieval import search_index
    from ..paths import xmr_home

    folder = samples_dir()
    path = Path(args.index) if args.index else xmr_home() / "demo-index"
    if args.fresh and path.exists():
        shutil.rmtree(path)
    print(f"xmr demo: indexing the {sum(1 for _ in folder.glob('*.*')) - 2} bundled sample images in {folder}")
    enc = create_encoder(args.model, device=args.device)
    rep = index_folder(folder, path, enc, show_progress=progress_flag(args))
    print(f"  index {path}: {rep.total} items ({rep.added} new, {len(rep.skipped)} skipped)\n")
    with IndexStore(path) as store:
        for q in DEMO_QUERIES:
            res = search_index(store, enc, text=q, k=3)
            print(f'search "{q}":')
            for r in res:
                print(f"  {r.rank}. {r.score:.3f}  {Path(r.path).name}")
        captions = json.loads((folder / "captions.json").read_text("utf-8"))
        hits = 0
        for fname, cap in captions.items():
            top = search_index(store, enc, text=cap, k=1)
            hits += bool(top) and Path(top[0].path).name == fname
        print(f"\neach sample's own caption finds its image first for {hits} of {len(captions)} captions")
    print('next: xmr index ~/Pictures && xmr search "a dog on the beach"   (xmr --help for more)')
    return 0


register_command("demo", "index the bundled sample images and run a few searches (offline quickstart)", setup, run)
