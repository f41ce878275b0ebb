"""``xmr side-text SPEC --out FILE``: write a dataset's side text (recipe fields, product entities, live comments,
ASR captions, sound labels) as the JSON-lines manifest ``xmr index --manifest FILE`` feeds to the sidecar expert."""
from __future__ import annotations

from ._common import register_command


def setup(p):
    p.add_argument("spec", help="dataset spec of a loader with side text: recipe1m:DIR, product1m:DIR, "
                                "amazon:meta_X.jsonl, livebot:DIR, howto100m:caption.json, vggsound:vggsound.csv")
    p.add_argument("--out", required=True, metavar="FILE", help="manifest to write (JSON lines, media paths absolute)")


def run(args) -> int:
    from ..data.side_text import write_side_manifest
    from ..paths import display_path

    n = write_side_manifest(args.spec, args.out)
    print(f"wrote side text of {n} media files to {display_path(args.out)}; index it with "
          f"xmr index FOLDER --manifest {display_path(args.out)}")
    return 0


register_command("side-text", "write a dataset's side text as a manifest for xmr index --manifest", setup, run)
