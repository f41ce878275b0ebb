"""``xmr index DIR``: add a folder's images and videos to an index (incremental, resumable)."""
from __future__ import annotations

import sys

from ..paths import display_path
from ._common import (add_device_arg, add_index_arg, add_model_arg, index_path, positive_int, print_json,
                      progress_flag, register_command)


def setup(p):
    p.add_argument("folder", metavar="DIR", help="folder to index (recursively)")
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
    v.add_argument("--segment", type=float, default=4.0, metavar="SECONDS", help="segment length (default 4)")
    v.add_argument("--segment-stride", type=float, default=2.0, metavar="SECONDS", help="segment hop (default 2)")


def run(args) -> int:
    import os

    from ..errors import ConfigError, XmrIndexError

    # every argument is checked before the model loads (seconds), the cheap ones before the heavy imports too
    if not os.path.exists(args.folder):
        raise ConfigError(f"{args.folder} is not a folder (no such path)")
    if not os.path.isdir(args.folder):
        raise ConfigError(f"{args.folder} is not a folder (give the folder that holds the images and videos)")
    if args.video_max_frames < 1:
        raise ConfigError(f"--video-max-frames must be at least 1, got {args.video_max_frames}")
    if args.ray is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    from ..encoders import DEFAULT_ENCODER, absolute_spec
    from ..index import IndexStore, VideoIndexConfig, index_folder

    video = VideoIndexConfig(fps=args.video_fps, max_frames=args.video_max_frames, window=args.segment,
                             stride=args.segment_stride, min_frames=min(8, max(1, args.video_max_frames)))
    path = index_path(args)
    try:
        with IndexStore(path) as st:
            bound = st.model_spec
    except XmrIndexError:
        bound = None
    spec = args.model
    if spec is None:  # an existing index keeps its model; a new one gets the default
        spec = bound or DEFAULT_ENCODER
    elif bound is not None and absolute_spec(bound) == absolute_spec(spec):
        spec = bound  # the same model, written another way (e.g. a relative path from the index's first run)
    else:
        spec = absolute_spec(spec)  # stored in the index: local paths absolute, so search works from anywhere
    with _encoder_factory(args, spec) as factory:
        rep = index_folder(args.folder, path, factory, spec=spec,
                           batch_size=args.batch_size, show_progress=progress_flag(args),
                           include_hidden=args.include_hidden, video=video)
    if args.json:
        print_json({"index": path, "model": spec, **rep.to_dict()})
        return 0
    print(f"indexed {display_path(rep.root)} into {display_path(path)} with model {spec!r}")
    print(f"  {rep.seen} media files: {rep.added} added, {rep.updated} updated, {rep.unchanged} unchanged, "
          f"{rep.removed} removed, {len(rep.skipped)} skipped; index holds {rep.total} items")
    if rep.skipped:
        print(f"skipped {len(rep.skipped)}:", file=sys.stderr)
        for p_, why in rep.skipped:
            print(f"  {display_path(p_)}: {why}", file=sys.stderr)
    return 0


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
