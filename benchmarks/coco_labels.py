"""Label-based metrics on real data: PCME's PMRP / PM-R@1 and label mAP@K (image -> image, COCO instance
categories shared) next to R@K, on coco-mini (small: 79 val2017 images with captions, 395 captions - say so when
quoting). The instance labels come from ``annotations/instances_<split>.json`` (:mod:`xmr.data.labels`).

    python benchmarks/coco_labels.py --data ../shared/data/coco-mini --split val2017 --models concept
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco-mini"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--split", default="val2017")
    ap.add_argument("--models", nargs="+", default=["concept"])
    ap.add_argument("--k", type=int, default=20)
    args = ap.parse_args()

    from xmr import create_encoder, load_dataset
    from xmr.data.labels import read_coco_instances
    from xmr.eval import evaluate_sims, label_map, pmrp

    ds = load_dataset(f"coco:{args.data}:{args.split}")
    inst = read_coco_instances(os.path.join(args.data, "annotations", f"instances_{args.split}.json"),
                               image_root=os.path.join(args.data, args.split))
    row = {m: i for i, m in enumerate(inst.media)}
    labels = inst.labels[[row[it.media] for it in ds.items]]
    for spec in args.models:
        enc = create_encoder(spec)
        t0 = time.perf_counter()
        img = enc.encode_images([it.media for it in ds.items])
        txt = enc.encode_text(list(ds.texts))
        secs = time.perf_counter() - t0
        sims = txt @ img.T
        r = evaluate_sims(sims, ds.text_to_item)
        pm = pmrp(sims, ds.text_to_item, labels)
        labelled = labels.any(1)
        i2i = img[labelled] @ img[labelled].T
        np.fill_diagonal(i2i, -np.inf)  # the query itself is not a result
        out = {"model": spec, "items": len(ds.items), "texts": len(ds.texts),
               "t2i_R@1": r["t2i"]["R@1"], "i2t_R@1": r["i2t"]["R@1"], "t2i_PMRP": pm["t2i"]["PMRP"],
               "i2t_PMRP": pm["i2t"]["PMRP"], "t2i_PM-R@1": pm["t2i"]["PM-R@1"], "i2t_PM-R@1": pm["i2t"]["PM-R@1"],
               f"i2i_label_mAP@{args.k}": label_map(i2i, labels[labelled], labels[labelled], args.k),
               "excluded_items": pm["excluded_items"], "encode_s": secs}
        print(json.dumps(out))


if __name__ == "__main__":
    main()
