"""``xmr embed``: a source (folder, manifest, webdataset / parquet shards) -> embedding shards, resumable shard by
shard, on Ray Data or in this process.

The driver plans the units (:mod:`.sources`), reads ``OUT/embed_info.json`` to find the shards already done, runs the
others through :class:`~xmr.embed.worker.ShardEncoder` (an actor pool with ``ray``, a plain loop without) and
records each finished shard in ``embed_info.json`` as it arrives. A shard recorded done is never recomputed; a killed
run resumes with the first unfinished one. ``OUT`` holding another model's, dtype's or source's shards is refused.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from .._lock import exclusive_lock
from .._progress import progress
from ..errors import ConfigError
from .shards import DTYPES, EmbedInfo, ShardRecord, read_info, shard_files_exist, write_info
from .sources import plan_digest, plan_units

log = logging.getLogger(__name__)


@dataclass
class EmbedReport:
    """What one ``xmr embed`` run did."""

    out: str
    model: str
    kind: str
    shards: int = 0  # planned output shards
    resumed: int = 0  # shards already done before this run
    encoded: int = 0  # vectors written by this run
    total: int = 0  # vectors in OUT after the run
    skipped: list[dict] = field(default_factory=list)  # inputs left out (this run and earlier), with reasons
    failed: list[dict] = field(default_factory=list)  # input shards that could not be read: {"input", "error"}
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def embed_source(source: str, out: str, model: str, *, kind: str | None = None, shard_size: int = 10_000,
                 dtype: str = "float16", batch_size: int = 8, device: str | None = None, ray: bool = False,
                 address: str | None = None, workers: int = 2, cpus_per_worker: float = 1, gpus_per_worker: float = 0,
                 show_progress: bool | None = None) -> EmbedReport:
    """Embed ``source`` with ``model`` into ``out`` (clip-retrieval layout, see :mod:`.shards`).

    ``ray``: run on Ray Data (``address`` as in :func:`~xmr.embed.ray_backend.ray_session`, ``workers`` actors with
    ``cpus_per_worker`` / ``gpus_per_worker`` each); else encode in this process."""
    import time

    from ..encoders import ENCODERS, _load_all, absolute_spec
    from ..spec import parse_spec

    t0 = time.monotonic()
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    _load_all()
    ENCODERS.get(parse_spec(model, "encoder").name)  # an unknown model fails here, before any worker starts
    model = absolute_spec(model)
    source = os.path.abspath(os.path.expanduser(source))
    kind, units = plan_units(source, kind, shard_size)
    digest = plan_digest(kind, units)
    out = os.path.abspath(os.path.expanduser(out))
    os.makedirs(out, exist_ok=True)
    with _out_lock(out):
        return _embed(source, out, model, kind, units, digest, dtype=dtype, shard_size=shard_size, t0=t0,
                      worker_kwargs=dict(model=model, out=out, dtype=dtype, batch_size=batch_size, device=device),
                      run_kwargs=dict(ray=ray, address=address, workers=workers, cpus_per_worker=cpus_per_worker,
                                      gpus_per_worker=gpus_per_worker),
                      show_progress=show_progress)


def _out_lock(out: str):
    """Exclusive lock on OUT: two runs writing the same shards fail fast instead of interleaving."""
    fh = open(os.path.join(out, ".lock"), "w")
    return exclusive_lock(fh, lambda: ConfigError(f"another xmr embed is writing {out}; wait for it to finish"))


def _embed(source, out, model, kind, units, digest, *, dtype, shard_size, t0, worker_kwargs, run_kwargs,
           show_progress) -> EmbedReport:
    import time

    info = read_info(out)
    if info is None:
        info = EmbedInfo(model=model, dtype=dtype, source=source, source_kind=kind, plan_digest=digest,
                         shard_size=None if kind in ("wds", "parquet") else shard_size,
                         shards=[ShardRecord(u.n, u.label) for u in units])
    else:
        _check_resumable(info, out, model=model, dtype=dtype, source=source, digest=digest)
    by_n = {s.n: s for s in info.shards}
    todo = [u for u in units if not (by_n[u.n].done and (by_n[u.n].count == 0 or shard_files_exist(out, u.n)))]
    rep = EmbedReport(out=out, model=model, kind=kind, shards=len(units), resumed=len(units) - len(todo))
    write_info(out, info)
    if todo:
        log.info("embedding %d of %d shards of %s with %s%s", len(todo), len(units), source, model,
                 f" on Ray ({run_kwargs['workers']} workers)" if run_kwargs["ray"] else "")
    bar = progress(len(todo), "embedding", "shard", enabled=show_progress) if todo else None
    try:
        for res in _results(todo, worker_kwargs, **run_kwargs):
            s = by_n[res["n"]]
            if res.get("error"):
                rep.failed.append({"input": s.input, "error": res["error"]})
                log.warning("shard %d (%s) not embedded: %s", s.n, s.input, res["error"])
            else:
                s.count, s.skipped, s.done = res["count"], res["skipped"], True
                rep.encoded += s.count
                if info.dim is None:
                    info.dim = res["dim"]
                elif info.dim != res["dim"]:
                    raise ConfigError(f"{out}: shard {s.n} has width {res['dim']}, the others {info.dim}")
                write_info(out, info)  # this shard is now recorded done
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    rep.total, rep.skipped = info.count, info.skipped
    rep.seconds = time.monotonic() - t0
    return rep


def _check_resumable(info: EmbedInfo, out: str, *, model: str, dtype: str, source: str, digest: str) -> None:
    for what, have, want in (("model", info.model, model), ("dtype", info.dtype, dtype),
                             ("source", info.source, source)):
        if have != want:
            raise ConfigError(f"{out} holds embeddings with {what} {have!r}, not {want!r}: give another --out "
                              f"(or the same {what} to resume)")
    if info.plan_digest != digest:
        raise ConfigError(f"{source} changed since {out} was started (other files or shards now): its shards would "
                          f"not line up; give a new --out")


def _results(units, worker_kwargs: dict, *, ray: bool, address, workers, cpus_per_worker, gpus_per_worker):
    if not units:
        return
    if not ray:
        from .worker import ShardEncoder

        enc = ShardEncoder(**worker_kwargs)
        for u in units:
            yield enc.encode_unit(u)
        return
    from .ray_backend import ray_session, run_units

    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    with ray_session(address, num_cpus=int(max(1, workers * cpus_per_worker))):
        yield from run_units([u.to_dict() for u in units], worker_kwargs=worker_kwargs, workers=workers,
                             cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker)


__all__ = ["EmbedReport", "embed_source"]
