"""Evaluate an encoder on a retrieval dataset: encode, score (the retrieval pipeline's dense stages,
:mod:`xmr.retrieval.dense`), rank, fingerprint."""
from __future__ import annotations

import time

import numpy as np

from ..errors import ConfigError, MediaError
from ..retrieval.dense import DenseGallery, HeadGallery, run_dense
from .fingerprint import protocol_fingerprint


def evaluate_model(dataset, encoder, protocol: str = "standard", *, batch_size: int = 8,
                   show_progress: bool | None = None, rescore=None, rescore_params: dict | None = None,
                   bank=None, queries_per_target: int | None = None, fuse: str = "mean-sim",
                   rerank=None, rerank_k: int = 10, rerank_alpha: float = 0.0,
                   rescore_topk: int | None = None, num_frames: int | None = None,
                   candidates: int | None = None, frame_snap: float = 0.0,
                   prefetch_workers: int | None = None) -> dict:
    """Text->item and item->text retrieval of ``encoder`` on ``dataset`` under ``protocol``.

    Returns ``{"t2i": {...}, "i2t": {...}, "rsum": float, "fingerprint": {...}, "timing": {...}}``. A media file
    that cannot be decoded raises :class:`~xmr.errors.MediaError` naming every bad file: dropping gallery items
    would silently change the benchmark.

    Optional stages (docs/rescoring.md), each recorded in the result and in the fingerprint:

    * ``queries_per_target=N``: each query is a group of N captions of one item (:func:`xmr.multiquery.group_captions`),
      fused by ``fuse`` (``mean-sim``, ``mean-emb``, ``max``, ``learned:DIR``) -> ``res["multi_query"]``;
    * ``rescore=None`` (default): the re-scoring the model recommends (``Encoder.rescore_default``: ``concept``'s
      QB-Norm with its bundled querybank, text->item only; nothing for other models), recorded with
      ``"origin": "model default"``; ``rescore="none"``: none;
    * ``rescore="qbnorm,dsl"`` (or a :class:`~xmr.rescore.RescorePipeline`) with ``rescore_params`` per method and
      ``bank`` (a querybank source string or a :class:`~xmr.rescore.QueryBank`) -> ``res["rescore"]``; with
      ``rescore_topk=K`` text->item re-scoring sees only each text's top-K candidates, as ``xmr search`` does;
    * ``rerank=SPEC`` (or a :class:`~xmr.rerank.CrossEncoder`): top-``rerank_k`` of each text re-scored by a
      cross-encoder, combined with ``rerank_alpha`` -> ``res["rerank"]`` (t2i only).

    * ``candidates=K``: text->item rankings come from the search pipeline itself, as ``xmr search`` ranks an index
      of this gallery: each text's top-K by the first stage (X-Pool / prototype heads: their candidate vectors, then
      exact head re-scoring: the two-stage trade-off measured), then the re-scorers and the cross-encoder ->
      ``res["search"]``; item->text stays dense.

    With any stage, ``res["before"]`` holds the plain dual-encoder metrics of the same queries (for a video head
    that re-scores: its exhaustive similarities).

    Video datasets (whole videos, or moments: items with ``start``/``end``): ``num_frames`` frames (default: the
    head's ``num_frames``, 12 without a head) are sampled uniformly from each clip or window and pooled by the
    encoder's head (``video:<spec>+<head>[@DIR]``; plain image encoders: meanP). X-Pool and prototype heads are scored
    exhaustively (every text against every video). ``frame_snap`` (grid steps, <= 0.5; default 0 = exact frames)
    lets each frame be any frame shown that close to its target (a nearby keyframe: faster decoding). The settings
    are in ``res["fingerprint"]["video"]`` (``frame_snap`` only when set, so exact runs keep their fingerprint).
    Whole-clip models (``capabilities.clips``: ``trained:DIR`` of a video run) embed each clip or window from their
    own ``clip_frames`` uniform frames (:mod:`xmr.video.clips`; ``num_frames`` other than that, and ``frame_snap``,
    are refused); audio-visual models (``capabilities.sound``) read their own frames and sound.

    Image galleries are decoded by ``prefetch_workers`` threads (default: one per core, at most 4; 0: in turn with
    the model) while the model encodes; the embeddings are the same either way.
    """
    from . import evaluate_sims
    from ..retrieval.dense import resolve_rescore

    rescore, rescore_params, bank, model_default = resolve_rescore(encoder, rescore, rescore_params, bank)
    if rescore_topk is not None and rescore is None:
        raise ConfigError(f"--rescore-topk needs re-scoring, and model {encoder.spec!r} recommends none: name the "
                          "re-scorers (--rescore qbnorm --bank SRC; rescore= in Python)")
    staged = queries_per_target is not None or rescore is not None or rerank is not None or candidates is not None
    is_video = _is_video(dataset)
    if isinstance(frame_snap, bool) or not isinstance(frame_snap, (int, float)) or not 0.0 <= frame_snap <= 0.5:
        raise ConfigError(f"frame_snap must be a number of grid steps in [0, 0.5], got {frame_snap!r}")
    if prefetch_workers is not None and (isinstance(prefetch_workers, bool) or not isinstance(prefetch_workers, int)
                                         or not 0 <= prefetch_workers <= 64):
        raise ConfigError(f"prefetch_workers must be None (one per core) or 0-64 threads, got {prefetch_workers!r}")
    extra = {"video": video_eval_settings(encoder, num_frames, frame_snap)} if is_video else None
    t0 = time.perf_counter()
    gallery = _encode_gallery(dataset, encoder, batch_size, show_progress, num_frames,
                              prefetch_workers=prefetch_workers, frame_snap=frame_snap)
    t1 = time.perf_counter()
    txt = encoder.encode_text(dataset.texts, show_progress=show_progress)
    t2 = time.perf_counter()
    # the retrieval pipeline's stages in dense form: scoring (head or dot product) -> fusion -> rescore -> rerank
    d = run_dense(gallery, txt, dataset.text_to_item, encoder=encoder, texts=dataset.texts, media=dataset.media,
                  text_offsets=dataset.text_offsets, queries_per_target=queries_per_target, fuse=fuse,
                  rescore=rescore, rescore_params=rescore_params, bank=bank, rescore_topk=rescore_topk,
                  rerank=rerank, rerank_k=rerank_k, rerank_alpha=rerank_alpha, candidates=candidates,
                  show_progress=show_progress)

    def ev(s):
        return evaluate_sims(s, d.text_to_item, protocol=protocol, allow_textless_items=d.allow_textless)

    if not staged:
        res = evaluate_sims(d.base, np.asarray(dataset.text_to_item), protocol=protocol)
    else:
        base = ev(d.base)
        res = {"t2i": ev(d.t2i)["t2i"] if d.t2i is not d.base else base["t2i"],
               "i2t": ev(d.i2t)["i2t"] if d.i2t is not d.base else base["i2t"]}
        if "rerank" in d.records:
            before = ev(d.t2i_before_rerank)["t2i"] if d.t2i_before_rerank is not d.base else base["t2i"]
            d.records["rerank"]["t2i_gain"] = {m: round(res["t2i"][m] - before[m], 4) for m in before}
        res["before"] = base
        if model_default is not None and "rescore" in d.records:  # the model's own: said in the result
            d.records["rescore"] = [{**r, "origin": "model default", "summary": model_default.label()}
                                    for r in d.records["rescore"]]
        res.update(d.records)
        extra = {**(extra or {}), **d.records}
    if getattr(encoder, "probabilistic", False) and not is_video and queries_per_target is None:  # PCME
        from .uncertainty import model_uncertainty

        res["uncertainty"] = model_uncertainty(dataset, encoder, d.base, batch_size=batch_size)
    t3 = time.perf_counter()
    res["rsum"] = round(sum(res[d_][f"R@{k}"] for d_ in ("t2i", "i2t") for k in (1, 5, 10)), 4)
    res["fingerprint"] = protocol_fingerprint(dataset, protocol, encoder.describe(), extra=extra)
    res["timing"] = {"encode_images_s": round(t1 - t0, 3), "encode_text_s": round(t2 - t1, 3),
                     "metrics_s": round(t3 - t2, 3)}
    return res


def _encode_gallery(dataset, encoder, batch_size: int, show_progress, num_frames: int | None = None,
                    prefetch_workers: int | None = None, frame_snap: float = 0.0):
    """A :class:`~xmr.retrieval.dense.DenseGallery` of item embeddings, or a
    :class:`~xmr.retrieval.dense.HeadGallery` for video heads that score per query.

    Images: the encoder's image tower, decoding overlapped with inference (``prefetch_workers`` threads; 0: the
    sequential reference path; same embeddings either way). Videos (and moments: items with ``start``/``end``): see :func:`_encode_videos`.
    Any undecodable file stops the evaluation with the list of bad files."""
    from ..media import media_type_of

    kinds = {media_type_of(p) for p in dataset.media}
    if kinds - {"image", "video"}:
        raise ConfigError(f"{dataset.name}: gallery files must be images or videos (by extension)")
    if len(kinds) > 1:
        raise ConfigError(f"{dataset.name} mixes images and videos; evaluate them as separate datasets")
    bad: list[str] = []
    if kinds == {"image"}:
        # worker threads decode (and preprocess) the next batches while the model encodes this one; bad files are
        # collected (and encoding stops) so all of them can be named
        from .._progress import progress
        from ._images import encode_images_prefetched

        bar = progress(len(dataset.media), "encode images", "image", enabled=show_progress)  # plain lines without a TTY
        emb = encode_images_prefetched(list(dataset.media), encoder, batch_size, bad, bar=bar,
                                       workers=prefetch_workers)
        bar.close()
        if not bad:
            return DenseGallery(emb)
    else:
        gallery = _encode_videos(dataset, encoder, num_frames, bad, show_progress, frame_snap)
        if not bad:
            return gallery
    raise MediaError(bad[0].split(":")[0], f"{len(bad)} gallery file(s) cannot be decoded; fix or remove them "
                     "from the dataset (dropping them would change the protocol):\n  " + "\n  ".join(bad[:10]))


#: frames per video when the encoder has no head of its own (CLIP4Clip's 12 uniformly sampled frames)
DEFAULT_EVAL_FRAMES = 12


def video_eval_settings(encoder, num_frames: int | None, frame_snap: float = 0.0) -> dict:
    """How video items are turned into frames for evaluation (recorded in the fingerprint; ``frame_snap`` only when
    set)."""
    if getattr(encoder.capabilities, "sound", False):  # eao / eclipse read frames and sound themselves
        from ..video.av import av_settings

        if num_frames or frame_snap:
            raise ConfigError(f"{encoder.spec} reads its own {encoder.config.frames} frames and sound per clip (set "
                              "when trained: xmr train-av --frames): drop --frames / --frame-snap")
        return {"av": av_settings(encoder), "sampling": "the whole clip or the item's start/end window",
                "scoring": "dot product of video embeddings"}
    if getattr(encoder.capabilities, "clips", False):  # a whole-clip model: its own frame count, one vector per clip
        from ..video.clips import clip_settings

        if (num_frames and num_frames != encoder.clip_frames) or frame_snap:
            raise ConfigError(f"{encoder.spec} embeds whole clips of {encoder.clip_frames} frames (set when trained: "
                              "xmr train --frames): drop --frames / --frame-snap")
        return {"clips": clip_settings(encoder), "scoring": "dot product of video embeddings"}
    head = encoder.head if encoder.capabilities.video else None
    n = num_frames or (head.config.num_frames if head is not None else DEFAULT_EVAL_FRAMES)
    return {"frames": int(n), "sampling": "uniform over the clip or the item's start/end window",
            "frame_size": FRAME_SIZE, "head": head.name if head is not None else "mean (meanP)",
            "scoring": ("exhaustive head similarity" if encoder.capabilities.video_rescoring
                        else "dot product of video embeddings"),
            **({"frame_snap": float(frame_snap)} if frame_snap else {})}


FRAME_SIZE = 224  # decoded frames are downscaled to this shorter side (as for train-head's features)


def _encode_videos(dataset, encoder, num_frames: int | None, bad: list[str], show_progress, frame_snap: float = 0.0):
    """Each video (or moment window) -> ``FramePlan.uniform(frames, 224, snap=frame_snap)`` -> frame features (the one frames ->
    features path, :mod:`xmr.video`) -> the encoder's pooling (:func:`xmr.video.pool_frames`: its head, or meanP);
    heads that score (query, frames) themselves keep the features in a :class:`~xmr.retrieval.dense.HeadGallery`.
    Bad files and empty windows are added to ``bad``."""
    from .._progress import progress
    from ..video import FramePlan, decode_frames, encode_frames, pool_frames

    if getattr(encoder.capabilities, "sound", False):  # eao:DIR / eclipse:DIR: frames and sound, as the index reads
        return _encode_av_videos(dataset, encoder, bad)
    if getattr(encoder.capabilities, "clips", False):  # trained:DIR of a video run: whole clips, as it was trained
        return _encode_clip_videos(dataset, encoder, bad, show_progress)
    plan = FramePlan.uniform(video_eval_settings(encoder, num_frames)["frames"], FRAME_SIZE, snap=frame_snap)
    keep = encoder.capabilities.video_rescoring
    out, cand, grid = [], [], []
    bar = progress(len(dataset.items), "encode videos", "video", enabled=show_progress)  # plain lines without a TTY
    for it in dataset.items:
        bar.update(1)
        try:
            times, frames = decode_frames(it, plan)
        except (MediaError, ValueError) as e:
            bad.append(_bad_item(it, e))
            continue
        if bad:
            continue  # keep decoding to name every bad file, but stop encoding
        f = encode_frames(encoder, frames)  # (T, D) or (T, 1 + P, W)
        out.append(f if keep else pool_frames(encoder, f, times))
        if keep:  # what an index stores for a first stage: the candidate vector and the frames' times
            cand.append(pool_frames(encoder, f, times))
            grid.append(times)
    bar.close()
    if bad:
        return None
    if keep:
        return HeadGallery(encoder.head, np.stack(out), np.stack(cand), np.stack(grid))
    return DenseGallery(np.stack(out).astype(np.float32) if out else np.zeros((0, encoder.dim), np.float32))


def _bad_item(it, e: BaseException) -> str:
    """``path [start-end s]: reason`` of a video (or moment window) that could not be read."""
    where = f" [{it.start}-{it.end} s]" if it.start is not None or it.end is not None else ""
    return f"{getattr(e, 'path', it.media)}{where}: {getattr(e, 'reason', e)}"


def _encode_av_videos(dataset, encoder, bad: list[str]):
    """Each video (or moment window) through an audio-visual model (:mod:`xmr.video.av`: its frame and audio tokens
    of the span, the same as ``xmr index`` and ``xmr train-av`` read); bad files are added to ``bad``."""
    from ..video.av import encode_spans, read_spans

    toks = []
    for it in dataset.items:
        def span(duration, s=it.start, e=it.end):
            return [(float(s or 0.0), float(duration if e is None else min(e, duration)))]

        try:
            toks.append(read_spans(it.media, encoder.config, None if it.start is None and it.end is None
                                   else span)[2][0])
        except (MediaError, ValueError) as e:
            bad.append(_bad_item(it, e))
    if bad:
        return None
    return DenseGallery(encode_spans(encoder, toks) if toks else np.zeros((0, encoder.dim), np.float32))


def _encode_clip_videos(dataset, encoder, bad: list[str], show_progress):
    """Each video (or moment window) through a whole-clip model (:mod:`xmr.video.clips`: ``clip_frames`` uniform
    frames of the span, preprocessed as in training, one vector); bad files and empty windows are added to ``bad``."""
    from .._progress import progress
    from ..video.clips import read_clip

    clips, out = [], []  # decoded frames of at most CLIP_BATCH clips are held at a time
    bar = progress(len(dataset.items), "encode videos", "video", enabled=show_progress)
    for it in dataset.items:
        bar.update(1)
        try:
            frames = read_clip(it, encoder)
        except (MediaError, ValueError) as e:
            bad.append(_bad_item(it, e))
            continue
        if bad:
            continue  # keep decoding to name every bad file, but stop encoding
        clips.append(frames)
        if len(clips) == CLIP_BATCH:
            out.append(encoder.encode_clips(clips))
            clips = []
    bar.close()
    if bad:
        return None
    if clips:
        out.append(encoder.encode_clips(clips))
    return DenseGallery(np.concatenate(out).astype(np.float32) if out else np.zeros((0, encoder.dim), np.float32))


CLIP_BATCH = 16  # clips per forward pass of a whole-clip model in xmr eval


def _is_video(dataset) -> bool:
    from ..media import media_type_of

    return bool(dataset.media) and media_type_of(dataset.media[0]) == "video"


def format_table(res: dict) -> str:
    """A readable two-row table of the metrics."""
    keys = [k for k in ("R@1", "R@5", "R@10", "R@50", "MdR", "MnR") if k in res["t2i"]]
    lines = [f"{'':6s}" + "".join(f"{k:>9s}" for k in keys)]
    for d, label in (("t2i", "t2i"), ("i2t", "i2t")):
        lines.append(f"{label:6s}" + "".join(f"{res[d][k]:9.2f}" for k in keys))
    fp = res["fingerprint"]
    lines.append(f"rsum {res['rsum']:.2f}   protocol {fp['protocol']}   fingerprint {fp['id']}   "
                 f"{fp['num_queries_t2i']} texts x {fp['num_gallery_items']} items")
    for d in ("t2i", "i2t") if "uncertainty" in res else ():
        u = res["uncertainty"][d]
        bins = ", ".join(f"{b['R@1']:.1f}" for b in u["bins"])
        lines.append(f"uncertainty {d}: mean log sigma {u['log_sigma']['mean']:.3f} (std {u['log_sigma']['std']:.3f}); "
                     f"R@1 by uncertainty bin, low -> high: {bins}; Spearman(sigma, rank) {u['spearman_rank']}")
    return "\n".join(lines)
