"""``xmr index DIR``: add a folder's images and videos to an index (incremental, resumable);
``xmr index --from-embeddings DIR``: build one from vectors made elsewhere; ``--backend NAME``: how its vectors are
searched (:mod:`xmr.index.backends`)."""
from __future__ import annotations

import os
import sys

from ..paths import display_path
from ._common import (add_device_arg, add_index_arg, add_model_arg, index_path, positive_int, print_json,
                      progress_flag, register_command)


def setup(p):
    p.add_argument("folder", metavar="DIR", nargs="?", default=None, help="folder to index (recursively)")
    p.add_argument("--from-embeddings", metavar="EMB_DIR", default=None,
                   help="import vectors made elsewhere instead of encoding a folder: clip-retrieval's layout "
                        "(img_emb/img_emb_<n>.npy + metadata/metadata_<n>.parquet with image_path) or .parquet files "
                        "with a vector column; --model names the model they came from (default: vector queries only)")
    p.add_argument("--backend", default=None, metavar="NAME",
                   help="vector backend, recorded in the index: flat (exact, default), hnsw, ivf (IVF-Flat: the fast "
                        "choice at a million vectors), ivfpq (compressed; all three tuned for a target "
                        "recall on held-out vectors), binary (Hamming on sign codes; the default for --model "
                        "hash:DIR), milvus (milvus-lite file in the index) or milvus://HOST:PORT; options as "
                        "NAME:key=value,... (e.g. hnsw:target_recall=0.98)")
    p.add_argument("--experts", default=None, metavar="NAMES",
                   help="also index what experts read, comma-separated: ocr (scene text, needs xmr[ocr]), sidecar "
                        "(photo.txt / photo.json, EXIF / XMP / IPTC captions and keywords), subtitles (.srt / .vtt "
                        "next to videos); recorded in the index, later runs keep them (docs/experts.md)")
    p.add_argument("--manifest", action="append", default=None, metavar="FILE",
                   help="side text for the sidecar expert (implies it): JSON lines with 'media' (or 'file_name') "
                        "and text fields (title, comments, entities, asr, ...); repeatable; recorded in the index "
                        "(xmr side-text SPEC --out FILE writes one from a dataset)")
    add_index_arg(p)
    add_model_arg(p, default=None)
    add_device_arg(p)
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per encoder batch and per commit (default 8: peak memory about 1.6 GB with the default model, 3.9 GB at 32, no faster)")
    p.add_argument("--include-hidden", action="store_true", help="also index files and folders whose name starts with '.'")
    p.add_argument("--json", action="store_true", help="print the run report as JSON")
    from .embed_cmd import add_ray_args

    add_ray_args(p, what="the encoder runs on --workers actors; images are decoded here and shipped to them")
    v = p.add_argument_group("videos (one vector per video + one per time segment; needs xmr[video])")
    v.add_argument("--video-fps", type=float, default=1.0, metavar="F",
                   help="frames sampled per second of video (default 1.0)")
    v.add_argument("--video-max-frames", type=int, default=1800, metavar="N",
                   help="frames per video at most; longer videos are sampled sparser, with longer segments (default 1800)")
    v.add_argument("--frame-snap", type=float, default=0.0, metavar="F",
                   help="let each sampled frame be any frame shown within F grid steps of its target (0 = the exact "
                        "frame, default; at most 0.5): the decoder may take a nearby keyframe instead of decoding up "
                        "to the instant, much faster on long videos; recorded in the index")
    v.add_argument("--segment", type=float, default=4.0, metavar="SECONDS", help="segment length (default 4)")
    v.add_argument("--segment-stride", type=float, default=2.0, metavar="SECONDS", help="segment hop (default 2)")


def run(args) -> int:
    import os
    from pathlib import Path

    from ..errors import ConfigError, XmrIndexError

    # every argument is checked before the model loads (seconds), the cheap ones before the heavy imports too
    if (args.folder is None) == (args.from_embeddings is None):
        raise ConfigError("give a folder to index (xmr index DIR) or --from-embeddings EMB_DIR, not both or neither")
    backend = None
    if args.backend is not None:
        from ..index.backends import parse_backend

        backend = parse_backend(args.backend)
    if args.from_embeddings is not None:
        if args.ray is not None:
            raise ConfigError("--ray encodes a folder; --from-embeddings imports vectors that are already made")
        return _import(args, backend)
    if not os.path.exists(args.folder):
        raise ConfigError(f"{args.folder} is not a folder (no such path)")
    if not os.path.isdir(args.folder):
        raise ConfigError(f"{args.folder} is not a folder (give the folder that holds the images and videos)")
    if args.video_max_frames < 1:
        raise ConfigError(f"--video-max-frames must be at least 1, got {args.video_max_frames}")
    experts = None
    if args.experts is not None:
        from ..experts import parse_experts

        experts = parse_experts(args.experts)
    manifests = None
    if args.manifest:
        manifests = [check_manifest(m) for m in args.manifest]
    if args.ray is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    from ..encoders import DEFAULT_ENCODER, absolute_spec
    from ..index import IndexStore, VideoIndexConfig, index_folder

    video = VideoIndexConfig(fps=args.video_fps, max_frames=args.video_max_frames, window=args.segment,
                             stride=args.segment_stride, min_frames=min(8, max(1, args.video_max_frames)),
                             snap=args.frame_snap)
    path = index_path(args)
    try:
        with IndexStore(path) as st:
            bound = st.model_spec
    except XmrIndexError:
        bound = None
    if backend is None and bound is None and (args.model or "").strip().startswith("hash:"):
        from ..index.backends import parse_backend  # hash codes: a new index stores bits, searched by Hamming

        backend = parse_backend("binary")
    if backend is not None:  # recorded first; the run's last step builds (or keeps) it
        from ..index.indexer import index_lock

        with index_lock(Path(path).absolute()), IndexStore(path, create=True) as st:
            st.set_vector_backend(backend)
    spec = args.model
    if spec is None:  # an existing index keeps its model; a new one gets the default
        spec = bound or DEFAULT_ENCODER
    elif bound is not None and absolute_spec(bound) == absolute_spec(spec):
        spec = bound  # the same model, written another way (e.g. a relative path from the index's first run)
    else:
        spec = absolute_spec(spec)  # stored in the index: local paths absolute, so search works from anywhere
    made: list = []
    with _encoder_factory(args, spec) as factory:
        def remembered():  # the run's local encoder, kept for the querybank warm-up below
            enc = factory()
            made.append(enc)
            return enc

        rep = index_folder(args.folder, path, remembered if args.ray is None else factory, spec=spec,
                           batch_size=args.batch_size, show_progress=progress_flag(args),
                           include_hidden=args.include_hidden, video=video, experts=experts,
                           manifests=manifests)
    changed = rep.added or rep.updated or rep.removed  # an unchanged index keeps the statistics of its generation
    warm = warm_querybank(path, spec, made[0] if made else None, args.device) if changed or made else None
    if args.json:
        print_json({"index": path, "model": spec, **rep.to_dict(), "querybank": warm})
        return 0
    print(f"indexed {display_path(rep.root)} into {display_path(path)} with model {spec!r}")
    _print_backend(path)
    print(f"  {rep.seen} media files: {rep.added} added, {rep.updated} updated, {rep.unchanged} unchanged, "
          f"{rep.removed} removed, {len(rep.skipped)} skipped; index holds {rep.total} items")
    if warm is not None:
        print(f"  text searches re-scored by {warm['label']}: bank statistics over {warm['items']} items "
              + (f"computed ({warm['seconds']:.1f} s)" if warm["computed"] else "already cached"))
    if rep.experts is not None:
        ex = rep.experts
        for name in ex["ran"]:
            print(f"  expert {name}: ran on {ex['ran'][name]} items ({ex['rows'][name]} texts, "
                  f"{ex['seconds'][name]:.1f} s), {ex['unchanged'][name]} unchanged")
        for s in ex["skipped"]:
            print(f"  expert {s['expert']} skipped {display_path(s['path'])}: {s['reason']}", file=sys.stderr)
    if rep.skipped:
        print(f"skipped {len(rep.skipped)}:", file=sys.stderr)
        for p_, why in rep.skipped:
            print(f"  {display_path(p_)}: {why}", file=sys.stderr)
    return 0


def _import(args, backend) -> int:
    from ..encoders import absolute_spec
    from ..index.embeddings_io import import_embeddings

    spec = absolute_spec(args.model) if args.model else None
    say = (lambda m: print(m, file=sys.stderr)) if progress_flag(args) is not False else None
    rep = import_embeddings(args.from_embeddings, index_path(args), spec=spec, backend=backend, progress=say)
    warm = warm_querybank(index_path(args), rep["model"], None, args.device) if rep["rows"] else None
    if args.json:
        print_json({**rep, "querybank": warm})
        return 0
    print(f"imported {rep['rows']} vectors from {rep['shards']} shard(s) of {rep['from']} into {rep['index']} "
          f"(model {rep['model']!r}); index holds {rep['items']} items")
    if warm is not None:
        print(f"  text searches re-scored by {warm['label']}: bank statistics over {warm['items']} items "
              f"computed ({warm['seconds']:.1f} s)")
    if rep["normalised"]:
        print(f"  {rep['normalised']} vectors were not unit length and were L2-normalised")
    _print_backend(index_path(args))
    return 0


def _print_backend(path: str) -> None:
    from ..index import IndexStore

    with IndexStore(path, readonly=True) as st:
        line = backend_line(st.backend_state("items"), st.vector_backend_record())
    print(f"  vectors: {line}")


def backend_line(state: dict | None, record: dict) -> str:
    """``hnsw (efSearch=64, re-rank x1; recall@10 0.971 on 1000 held-out vectors)`` for ``xmr index`` / ``xmr info``."""
    b = (state or {}).get("backend") or {"name": record["name"], "config": record.get("config", {}), "tuned": {}}
    name = b["name"] + (f" {b['config']}" if b.get("config") else "")
    t = b.get("tuned") or {}
    if b["name"] == "flat":
        return "flat (exact)"
    keys = [k for k in ("efSearch", "nprobe") if k in t]
    parts = [f"{k}={t[k]}" for k in keys] + ([f"re-rank x{t['rerank_factor']}"] if "rerank_factor" in t else [])
    rec = next((k for k in t if k.startswith("recall@")), None)
    tail = ""
    if rec and t[rec] is not None:
        tail = f"; {rec} {t[rec]} on {t.get('heldout_queries')} held-out vectors" + ("" if t.get("met_target") else
                                                                                " (below the target recall)")
    inner = ", ".join(parts) + tail
    return f"{name} ({inner})" if inner else f"{name} (candidates re-ranked exactly)"


def warm_querybank(path: str, spec: str, encoder, device) -> dict | None:
    """The model's own re-scoring (``concept``: QB-Norm with its bundled bank) needs per-item bank statistics of
    this index generation: computed here, at the end of the run, so the first text search loads them
    (:func:`xmr.retrieval.querybank.warm_model_querybank`; cached in $XMR_CACHE/querybank). None for a model that
    recommends no re-scoring."""
    from ..encoders import create_encoder
    from ..index.snapshot import open_reader
    from ..retrieval.querybank import warm_model_querybank

    if encoder is None:  # nothing was encoded in this run (or --ray): built here if its model may re-score
        from ..encoders import may_recommend_rescore

        if not may_recommend_rescore(spec):
            return None
        encoder = create_encoder(spec, device=device)
    if getattr(encoder, "rescore_default", None) is None:
        return None
    store, reader = open_reader(path)
    try:
        return warm_model_querybank(reader, encoder)
    finally:
        store.close()


def _encoder_factory(args, spec: str):
    """The model factory ``index_folder`` calls: a local encoder, or with ``--ray`` a pool of Ray actors."""
    import contextlib

    if args.ray is None:
        from ..encoders import create_encoder

        return contextlib.nullcontext(lambda: create_encoder(spec, device=args.device))
    from ..embed.ray_backend import ray_encoder_factory

    return ray_encoder_factory(spec, address=args.ray or None, workers=args.workers, device=args.device,
                               cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker)


register_command("index", "index a folder of images and videos (re-runs add new/changed files and drop deleted ones)",
                 setup, run)


def check_manifest(path: str) -> str:
    """An existing, readable side-text manifest, made absolute (it is recorded in the index)."""
    from ..errors import ConfigError

    p = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(p):
        raise ConfigError(f"--manifest {path}: no such file (give a JSON-lines file with one object per media file: "
                          f'{{"media": "photo.jpg", "title": ..., "comments": [...]}})')
    try:
        with open(p, "rb") as fh:
            fh.read(1)
    except OSError as e:
        raise ConfigError(f"--manifest {path}: cannot be read ({e.strerror or e})") from None
    return p
