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
                   rescore_topk: int | None = None, num_frames: int | None = None) -> dict:
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

    Video datasets (whole videos, or moments: items with ``start``/``end``): ``num_frames`` frames (default: the
    head's ``num_frames``, 12 without a head) are sampled uniformly from each clip or window and pooled by the
    encoder's head (``video:<spec>+<head>[@DIR]``; plain image encoders: meanP). X-Pool and prototype heads are scored
    exhaustively (every text against every video). The settings are in ``res["fingerprint"]["video"]``.
    """
    from . import evaluate_sims

    staged = queries_per_target is not None or rescore is not None or rerank is not None
    head = getattr(encoder, "head", None)
    is_video = _is_video(dataset)
    if staged and is_video and head is not None and head.needs_rescoring:
        raise ConfigError(f"the {head.name!r} head scores each (text, video) pair itself; multi-query, "
                          "re-scoring and re-ranking need one vector per video and cannot be combined with it yet")
    extra = {"video": video_eval_settings(encoder, num_frames)} if is_video else None
    t0 = time.perf_counter()
    img = _encode_gallery(dataset, encoder, batch_size, show_progress, num_frames)
    t1 = time.perf_counter()
    txt = encoder.encode_text(dataset.texts, show_progress=show_progress)
    t2 = time.perf_counter()
    if not staged:
        sims = img.sims(txt) if isinstance(img, HeadGallery) else txt @ img.T  # (num_texts, num_items)
        res = evaluate_sims(sims, np.asarray(dataset.text_to_item), protocol=protocol)
    else:
        res, staged_extra = _staged(dataset, encoder, txt, img, protocol, rescore, rescore_params, bank,
                                    queries_per_target, fuse, rerank, rerank_k, rerank_alpha, show_progress,
                                    rescore_topk)
        extra = {**(extra or {}), **staged_extra}
    t3 = time.perf_counter()
    res["rsum"] = round(sum(res[d][f"R@{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10)), 4)
    res["fingerprint"] = protocol_fingerprint(dataset, protocol, encoder.describe(), extra=extra)
    res["timing"] = {"encode_images_s": round(t1 - t0, 3), "encode_text_s": round(t2 - t1, 3),
                     "metrics_s": round(t3 - t2, 3)}
    return res


def _encode_gallery(dataset, encoder, batch_size: int, show_progress, num_frames: int | None = None):
    """Gallery embeddings (num_items, dim), or a :class:`HeadGallery` for video heads that score per query.

    Images: the encoder's image tower. Videos (and moments: items with ``start``/``end``): see :func:`_encode_videos`.
    Any undecodable file stops the evaluation with the list of bad files."""
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
        gallery = _encode_videos(dataset, encoder, num_frames, bad, show_progress)
        if not bad:
            return gallery
    raise MediaError(bad[0].split(":")[0], f"{len(bad)} gallery file(s) cannot be decoded; fix or remove them "
                     "from the dataset (dropping them would change the protocol):\n  " + "\n  ".join(bad[:10]))


#: frames per video when the encoder has no head of its own (CLIP4Clip's 12 uniformly sampled frames)
DEFAULT_EVAL_FRAMES = 12


def video_eval_settings(encoder, num_frames: int | None) -> dict:
    """How video items are turned into frames for evaluation (recorded in the fingerprint)."""
    head = getattr(encoder, "head", None)
    n = num_frames or (head.config.num_frames if head is not None else DEFAULT_EVAL_FRAMES)
    return {"frames": int(n), "sampling": "uniform over the clip or the item's start/end window",
            "frame_size": FRAME_SIZE, "head": head.name if head is not None else "mean (meanP)",
            "scoring": ("exhaustive head similarity" if head is not None and head.needs_rescoring
                        else "dot product of video embeddings")}


FRAME_SIZE = 224  # decoded frames are downscaled to this shorter side (as for train-head's features)


class HeadGallery:
    """Frame features (N_v, T, D) of a video gallery scored by a head that cannot give one vector per video (X-Pool,
    prototypes): :meth:`sims` is the exhaustive (N_t, N_v) matrix, in text x video chunks (bounded memory)."""

    def __init__(self, head, feats: np.ndarray):
        self.head, self.feats = head, feats

    def __len__(self) -> int:
        return len(self.feats)

    def sims(self, txt: np.ndarray, text_chunk: int = 256, video_chunk: int = 256) -> np.ndarray:
        import torch

        head = self.head
        dev = head.logit_scale.device
        out = np.zeros((len(txt), len(self.feats)), np.float32)
        with torch.no_grad():
            for v0 in range(0, len(self.feats), video_chunk):
                f = torch.from_numpy(np.ascontiguousarray(self.feats[v0: v0 + video_chunk])).to(dev)
                for t0 in range(0, len(txt), text_chunk):
                    t = torch.from_numpy(np.ascontiguousarray(txt[t0: t0 + text_chunk])).to(dev)
                    out[t0: t0 + len(t), v0: v0 + len(f)] = head.similarity(t, f).cpu().numpy()
        return out


def _encode_videos(dataset, encoder, num_frames: int | None, bad: list[str], show_progress):
    """Each video (or moment window) -> ``frames`` uniformly sampled frames -> the image tower (or patch tokens for
    TS2-Net) -> the encoder's head (plain image encoders: meanP). Bad files and empty windows are added to ``bad``."""
    import torch
    from tqdm.auto import tqdm

    from ..heads.features import item_frames
    from ..index.video import mean_pool

    head = getattr(encoder, "head", None)
    n = video_eval_settings(encoder, num_frames)["frames"]
    keep = head is not None and head.needs_rescoring
    encode = getattr(encoder, "encode_frames", None) or (
        lambda ims: encoder.encode_images(ims, show_progress=False))
    out = []
    for it in tqdm(dataset.items, desc="encode videos", unit="video", disable=show_progress is False):
        try:
            frames = item_frames(it, n, FRAME_SIZE)
        except (MediaError, ValueError) as e:
            where = f" [{it.start}-{it.end} s]" if it.start is not None or it.end is not None else ""
            bad.append(f"{getattr(e, 'path', it.media)}{where}: {getattr(e, 'reason', e)}")
            continue
        if bad:
            continue  # keep decoding to name every bad file, but stop encoding
        f = np.asarray(encode(frames), dtype=np.float32)  # (T, D) or (T, 1 + P, W)
        if keep:
            out.append(f)
        elif head is None:
            out.append(mean_pool(f, None))
        else:
            with torch.no_grad():
                v = head.embed_video(torch.from_numpy(f)[None].to(head.logit_scale.device))[0].cpu().numpy()
            out.append(v / max(float(np.linalg.norm(v)), 1e-12))
    if bad:
        return None
    if keep:
        return HeadGallery(head, np.stack(out))
    return np.stack(out).astype(np.float32) if out else np.zeros((0, encoder.dim), np.float32)


def _is_video(dataset) -> bool:
    from ..index.walker import media_type_of

    return bool(dataset.media) and media_type_of(dataset.media[0]) == "video"


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
