"""Evaluate an encoder on a retrieval dataset: encode, score, rank, fingerprint."""
from __future__ import annotations

import time

import numpy as np

from ..errors import ConfigError, MediaError
from .fingerprint import protocol_fingerprint


def evaluate_model(dataset, encoder, protocol: str = "standard", *, batch_size: int = 32,
                   show_progress: bool | None = None, rescore=None, rescore_params: dict | None = None,
                   bank=None, queries_per_target: int | None = None, fuse: str = "mean-sim",
                   rerank=None, rerank_k: int = 10, rerank_alpha: float = 0.0,
                   rescore_topk: int | None = None) -> dict:
    """Text->item and item->text retrieval of ``encoder`` on ``dataset`` under ``protocol``.

    Returns ``{"t2i": {...}, "i2t": {...}, "rsum": float, "fingerprint": {...}, "timing": {...}}``. A media file
    that cannot be decoded raises :class:`~xmr.errors.MediaError` naming every bad file: dropping gallery items
    would silently change the benchmark.

    Optional stages (docs/rescoring.md), each recorded in the result and in the fingerprint:

    * ``queries_per_target=N``: each query is a group of N captions of one item (:func:`xmr.multiquery.group_captions`),
      fused by ``fuse`` (``mean-sim``, ``mean-emb``, ``max``, ``learned:DIR``) -> ``res["multi_query"]``;
    * ``rescore="qbnorm,dsl"`` (or a :class:`~xmr.rescore.RescorePipeline`) with ``rescore_params`` per method and
      ``bank`` (a querybank source string or a :class:`~xmr.rescore.QueryBank`) -> ``res["rescore"]``; with
      ``rescore_topk=K`` text->item re-scoring sees only each text's top-K candidates, as ``xmr search`` does;
    * ``rerank=SPEC`` (or a :class:`~xmr.rerank.CrossEncoder`): top-``rerank_k`` of each text re-scored by a
      cross-encoder, combined with ``rerank_alpha`` -> ``res["rerank"]`` (t2i only).

    With any stage, ``res["before"]`` holds the plain dual-encoder metrics of the same queries.
    """
    from . import evaluate_sims

    t0 = time.perf_counter()
    img = _encode_gallery(dataset, encoder, batch_size, show_progress)
    t1 = time.perf_counter()
    txt = encoder.encode_text(dataset.texts, show_progress=show_progress)
    t2 = time.perf_counter()
    staged = queries_per_target is not None or rescore is not None or rerank is not None
    if not staged:
        sims = txt @ img.T  # (num_texts, num_items)
        res = evaluate_sims(sims, np.asarray(dataset.text_to_item), protocol=protocol)
        extra = None
    else:
        res, extra = _staged(dataset, encoder, txt, img, protocol, rescore, rescore_params, bank,
                             queries_per_target, fuse, rerank, rerank_k, rerank_alpha, show_progress, rescore_topk)
    t3 = time.perf_counter()
    res["rsum"] = round(sum(res[d][f"R@{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10)), 4)
    res["fingerprint"] = protocol_fingerprint(dataset, protocol, encoder.describe(), extra=extra)
    res["timing"] = {"encode_images_s": round(t1 - t0, 3), "encode_text_s": round(t2 - t1, 3),
                     "metrics_s": round(t3 - t2, 3)}
    return res


def _encode_gallery(dataset, encoder, batch_size: int, show_progress) -> np.ndarray:
    """(num_items, dim) gallery embeddings. Images: the encoder's image tower. Videos: frames sampled uniformly
    (at most 1 fps, at least 12 frames), encoded, mean-pooled (CLIP4Clip meanP). Any undecodable file stops the
    evaluation with the list of bad files."""
    from ..index.walker import media_type_of
    from ..media.image import load_image

    kinds = {media_type_of(p) for p in dataset.media}
    if kinds - {"image", "video"}:
        raise ConfigError(f"{dataset.name}: gallery files must be images or videos (by extension)")
    if len(kinds) > 1:
        raise ConfigError(f"{dataset.name} mixes images and videos; evaluate them as separate datasets")
    bad: list[str] = []
    if kinds == {"image"}:
        # decode once, batch by batch: bad files are collected (and encoding stops) so all of them can be named
        from tqdm.auto import tqdm

        out, media = [], dataset.media
        for s in tqdm(range(0, len(media), batch_size), desc="encode images", unit="batch",
                      disable=show_progress is False):
            batch = []
            for p in media[s : s + batch_size]:
                try:
                    batch.append(load_image(p))
                except MediaError as e:
                    bad.append(f"{e.path}: {e.reason}")
            if not bad:
                out.append(encoder.encode_images(batch, batch_size=batch_size, show_progress=False))
        if not bad:
            return np.concatenate(out) if out else np.zeros((0, encoder.dim), np.float32)
    else:
        if any(it.start is not None or it.end is not None for it in dataset.items):
            raise ConfigError(f"{dataset.name} has moment items (start/end); moment-level evaluation is not "
                              "supported yet: use the whole-video (paragraph) mode of the loader")
        from tqdm.auto import tqdm

        from ..index.video import VideoIndexConfig, embed_video, mean_pool

        cfg = VideoIndexConfig(min_frames=12)
        vecs = []
        for p in tqdm(dataset.media, desc="encode videos", unit="video", disable=show_progress is False):
            try:
                vecs.append(embed_video(p, encoder, cfg, batch_size=batch_size,
                              pool=getattr(encoder, "video_pool", mean_pool)).vector)
            except MediaError as e:
                bad.append(f"{e.path}: {e.reason}")
        if not bad:
            return np.stack(vecs).astype(np.float32)
    raise MediaError(bad[0].split(":")[0], f"{len(bad)} gallery file(s) cannot be decoded; fix or remove them "
                     "from the dataset (dropping them would change the protocol):\n  " + "\n  ".join(bad[:10]))


def _staged(dataset, encoder, txt, img, protocol, rescore, rescore_params, bank, queries_per_target, fuse,
            rerank, rerank_k, rerank_alpha, show_progress, rescore_topk=None) -> tuple[dict, dict]:
    """Multi-query fusion -> re-scoring -> two-stage re-ranking, each recorded (see :func:`evaluate_model`)."""
    from . import evaluate_sims

    extra: dict = {}
    texts = dataset.texts
    t2i = np.asarray(dataset.text_to_item)
    allow_textless = False
    if queries_per_target is not None:
        from ..multiquery import fuse_sims, group_captions

        if rerank is not None:
            raise ConfigError("re-ranking multi-queries is not supported: use --rerank or --queries-per-target")
        groups, t2i = group_captions(dataset.text_offsets, queries_per_target)
        sims = fuse_sims(txt[groups], img, fuse)
        allow_textless = True  # items with fewer than N captions have no multi-query
        extra["multi_query"] = {"queries_per_target": int(queries_per_target), "fuse": str(fuse),
                                "num_queries": int(len(groups)), "captions_used": int(groups.size),
                                "captions_dropped": int(dataset.num_texts - groups.size),
                                "items_without_query": int(len(dataset) - len(np.unique(t2i))),
                                "grouping": "consecutive captions of an item in loader order; remainder dropped"}
    else:
        sims = txt @ img.T
    ev = lambda s: evaluate_sims(s, t2i, protocol=protocol, allow_textless_items=allow_textless)  # noqa: E731
    base = ev(sims)
    res = {"t2i": base["t2i"], "i2t": base["i2t"]}
    t2i_sims, i2t_sims = sims, sims
    if rescore is not None:
        from ..rescore import QueryBank, RescorePipeline, build_pipeline, querybank_from_source

        if isinstance(bank, str):
            bank = querybank_from_source(bank, encoder, img, test_texts=dataset.texts, show_progress=show_progress)
        elif bank is not None and not isinstance(bank, QueryBank):
            raise ConfigError(f"bank must be a source string or a QueryBank, got {type(bank).__name__}")
        pipe = rescore if isinstance(rescore, RescorePipeline) else build_pipeline(rescore, rescore_params, bank)
        t2i_sims = pipe.dense(sims, "t2i") if rescore_topk is None else pipe.dense_via_topk(sims, rescore_topk)
        i2t_sims = pipe.dense(sims, "i2t")
        res = {"t2i": ev(t2i_sims)["t2i"], "i2t": ev(i2t_sims)["i2t"]}
        extra["rescore"] = [{**r, "t2i_candidates": rescore_topk} if rescore_topk else r for r in pipe.records()]
    if rerank is not None:
        from ..rerank import create_reranker, rerank_dense

        ce = create_reranker(rerank) if isinstance(rerank, str) else rerank
        before_t2i = res["t2i"]
        reranked, info = rerank_dense(t2i_sims, texts, dataset.media, ce, k=rerank_k, alpha=rerank_alpha)
        res = {"t2i": ev(reranked)["t2i"], "i2t": res["i2t"]}
        extra["rerank"] = {"cross_encoder": ce.describe(), **info, "directions": ["t2i"],
                           "t2i_gain": {m: round(res["t2i"][m] - before_t2i[m], 4) for m in before_t2i}}
    res["before"] = base
    res.update(extra)
    return res, extra


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
