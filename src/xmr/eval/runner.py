"""Evaluate an encoder on a retrieval dataset: encode, score, rank, fingerprint."""
from __future__ import annotations

import time

import numpy as np

from ..errors import MediaError
from .fingerprint import protocol_fingerprint


def evaluate_model(dataset, encoder, protocol: str = "standard", *, batch_size: int = 32,
                   show_progress: bool | None = None) -> dict:
    """Text->item and item->text retrieval of ``encoder`` on ``dataset`` under ``protocol``.

    Returns ``{"t2i": {...}, "i2t": {...}, "rsum": float, "fingerprint": {...}, "timing": {...}}``. A media file
    that cannot be decoded raises :class:`~xmr.errors.MediaError` naming every bad file: dropping gallery items
    would silently change the benchmark.
    """
    from . import evaluate_sims
    from ..media.image import load_image

    t0 = time.perf_counter()
    bad = []
    for p in dataset.media:
        try:
            load_image(p)
        except MediaError as e:
            bad.append(f"{e.path}: {e.reason}")
    if bad:
        raise MediaError(bad[0].split(":")[0], f"{len(bad)} gallery file(s) cannot be decoded; fix or remove them "
                         "from the dataset (dropping them would change the protocol):\n  " + "\n  ".join(bad[:10]))
    img = encoder.encode_images(dataset.media, batch_size=batch_size, show_progress=show_progress)
    t1 = time.perf_counter()
    txt = encoder.encode_text(dataset.texts, show_progress=show_progress)
    t2 = time.perf_counter()
    sims = txt @ img.T  # (num_texts, num_items)
    res = evaluate_sims(sims, np.asarray(dataset.text_to_item), protocol=protocol)
    t3 = time.perf_counter()
    res["rsum"] = round(sum(res[d][f"R@{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10)), 4)
    res["fingerprint"] = protocol_fingerprint(dataset, protocol, encoder.describe())
    res["timing"] = {"encode_images_s": round(t1 - t0, 3), "encode_text_s": round(t2 - t1, 3),
                     "metrics_s": round(t3 - t2, 3)}
    return res


def format_table(res: dict) -> str:
    """A readable two-row table of the metrics."""
    keys = [k for k in ("R@1", "R@5", "R@10", "R@50", "MdR", "MnR") if k in res["t2i"]]
    lines = [f"{'':6s}" + "".join(f"{k:>9s}" for k in keys)]
    for d, label in (("t2i", "t2i"), ("i2t", "i2t")):
        lines.append(f"{label:6s}" + "".join(f"{res[d][k]:9.2f}" for k in keys))
    fp = res["fingerprint"]
    lines.append(f"rsum {res['rsum']:.2f}   protocol {fp['protocol']}   fingerprint {fp['id']}   "
                 f"{fp['num_queries_t2i']} texts x {fp['num_gallery_items']} items")
    return "\n".join(lines)
