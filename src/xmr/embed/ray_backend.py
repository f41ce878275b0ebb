"""Ray: connecting, the Ray Data pipeline of ``xmr embed``, and the actor pool ``xmr index --ray`` encodes through.

``address``: None starts a local Ray (``num_cpus`` = workers x CPUs per worker) unless Ray is already running in
this process (tests start one and share it); ``"auto"`` joins the cluster this machine belongs to (``ray start``);
``"ray://HOST:10001"`` connects through Ray Client; ``"HOST:6379"`` joins as a driver. Workers import xmr, so
every node needs the same xmr and model weights installed (or a Ray ``runtime_env``): see docs/scale.md.

``xmr embed`` runs units through Ray Data: ``from_items(units)`` with one block per unit, ``map_batches`` over an
actor pool of :class:`~xmr.embed.worker.ShardEncoder` (the model loads once per actor, ``num_gpus`` per actor when
GPUs are asked for), results streamed back in completion order so the driver records each finished shard at once.
"""
from __future__ import annotations

import contextlib
import json
import logging
from typing import Iterator, Sequence

import numpy as np

from .._deps import require
from ..errors import ConfigError

log = logging.getLogger(__name__)


def _ray():
    return require("ray", "scale", "ray[data]")


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None = None):
    """Ray connected for the block: reuses a Ray already initialised in this process (left running), else
    ``ray.init`` (shut down at the end). Unreachable addresses raise ConfigError."""
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs = dict(include_dashboard=False, configure_logging=False, log_to_driver=False)
    if address and address != "auto":
        probe_address(address)  # ray.init retries an unreachable address for minutes
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConfigError(f"cannot connect to Ray at {address or 'a new local Ray'}: {e}") from None
    _quiet_ray()
    try:
        yield ray
    finally:
        ray.shutdown()


def probe_address(address: str, timeout: float = 5.0) -> None:
    """ConfigError within ``timeout`` seconds when nothing listens at ``address`` (``HOST:PORT`` or
    ``ray://HOST:PORT``)."""
    import socket

    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--ray {address!r}: give HOST:PORT (the head's GCS port, 6379 by default), "
                          f"ray://HOST:10001 (Ray Client), or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ConfigError(f"cannot reach Ray at {address} ({e.strerror or e}); start the head with "
                          f"`ray start --head` or check the address") from None


def _quiet_ray() -> None:
    """Ray's own INFO lines (execution plans, "dataset finished") only with ``xmr -v``: xmr reports progress per
    shard itself. (Errors Ray prints itself, such as a worker's traceback, still show; the run then ends with the
    worker's own one-line error, see :func:`xmr_cause`.)"""
    if not logging.getLogger("xmr").isEnabledFor(logging.DEBUG):
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.WARNING)


def run_units(units: Sequence[dict], *, worker_kwargs: dict, workers: int, cpus_per_worker: float,
              gpus_per_worker: float) -> Iterator[dict]:
    """Results of :class:`ShardEncoder` for every unit (dicts), as the actor pool finishes them. Needs an
    initialised Ray (:func:`ray_session`)."""
    ray = _ray()
    import ray.data  # noqa: F401

    from .worker import ShardEncoder

    _quiet_ray()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver reports progress per shard
    ctx.execution_options.preserve_order = False
    threads = max(1, int(cpus_per_worker))
    ds = ray.data.from_items([{"unit": json.dumps(u)} for u in units], override_num_blocks=len(units))
    ds = ds.map_batches(
        ShardEncoder,
        fn_constructor_kwargs={**worker_kwargs, "threads": threads},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus_per_worker,
        num_gpus=gpus_per_worker or None,
        batch_format="numpy",
    )
    try:
        for row in ds.iter_rows():
            yield json.loads(str(row["result"]))
    except Exception as e:  # noqa: BLE001 - unwrapped below, or re-raised as it is
        cause = xmr_cause(e)
        if cause is None:
            raise
        raise cause.with_traceback(None) from None  # e.g. the model could not be loaded on the workers


def xmr_cause(exc: BaseException) -> BaseException | None:
    """The :class:`~xmr.errors.XmrError` a Ray error wraps (a worker's ModelUnavailableError, MissingExtraError,
    ...: Ray wraps it in RayTaskError / ActorDiedError / Ray Data's own exceptions), or None."""
    from ..errors import XmrError

    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, XmrError) and type(e).__module__.startswith("xmr."):
            return e
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
        for a in getattr(e, "args", ()):
            if isinstance(a, BaseException):
                todo.append(a)
    return None


class _EncoderActor:
    """A Ray actor holding one encoder (``xmr index --ray``)."""

    def __init__(self, spec: str, device: str | None, threads: int):
        import torch

        torch.set_num_threads(threads)
        from ..encoders import create_encoder

        self.enc = create_encoder(spec, device=device)

    def info(self) -> dict:
        return {"spec": self.enc.spec, "dim": self.enc.dim, "describe": self.enc.describe(),
                "capabilities": self.enc.capabilities.to_dict()}

    def encode_images(self, images, batch_size: int, normalize: bool) -> np.ndarray:
        return self.enc.encode_images(images, batch_size=batch_size, show_progress=False, normalize=normalize)

    def encode_text(self, texts, batch_size: int, normalize: bool) -> np.ndarray:
        return self.enc.encode_text(texts, batch_size=batch_size, show_progress=False, normalize=normalize)


class RayEncoderPool:
    """An encoder whose ``encode_images`` / ``encode_text`` run on ``workers`` Ray actors: each call's inputs are
    cut into one contiguous chunk per actor and the outputs put back in input order. It has what the indexer asks
    of an encoder (``spec``, ``dim``, ``describe()``, ``capabilities``, ``encode_images``); images are decoded by
    the caller and shipped to the actors. Video encoders (``video:...``) are refused: their heads run locally.
    Call :meth:`close` (or use it as a context manager) to release the actors."""

    def __init__(self, spec: str, *, workers: int = 2, device: str | None = None, cpus_per_worker: float = 1,
                 gpus_per_worker: float = 0):
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        ray = _ray()
        from ..encoders.base import Capabilities

        cls = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker or 0)(_EncoderActor)
        self._ray = ray
        self.actors = [cls.remote(spec, device, max(1, int(cpus_per_worker))) for _ in range(workers)]
        try:
            info = ray.get(self.actors[0].info.remote())
        except Exception as e:  # noqa: BLE001 - the actor could not build the model: its XmrError, unwrapped
            self.close()
            cause = xmr_cause(e)
            if cause is None:
                raise
            raise cause.with_traceback(None) from None
        caps = Capabilities(**{k: tuple(v) if isinstance(v, list) else v for k, v in info["capabilities"].items()})
        if caps.video or caps.video_rescoring:
            self.close()
            raise ConfigError(f"--ray encodes with image encoders; {spec!r} is a video encoder with a temporal head "
                              f"(index it without --ray)")
        self.spec, self.dim, self._describe = info["spec"], info["dim"], info["describe"]
        # what the pool forwards: images and texts (token outputs stay with local encoders)
        self.capabilities = Capabilities(text=caps.text, images=caps.images, languages=caps.languages)

    def describe(self) -> dict:
        return self._describe

    def _split(self, method: str, inputs: list, batch_size: int, normalize: bool) -> np.ndarray:
        if not inputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        k = min(len(self.actors), len(inputs))
        bounds = np.linspace(0, len(inputs), k + 1).astype(int)
        refs = [getattr(a, method).remote(inputs[s:e], batch_size, normalize)
                for a, s, e in zip(self.actors, bounds[:-1], bounds[1:])]
        return np.concatenate(self._ray.get(refs)).astype(np.float32, copy=False)

    def encode_images(self, images, batch_size: int = 32, show_progress: bool | None = None,
                      normalize: bool = True) -> np.ndarray:
        from ..media.image import load_image

        return self._split("encode_images", [load_image(x) for x in images], batch_size, normalize)

    def encode_text(self, texts, batch_size: int = 64, show_progress: bool | None = None,
                    normalize: bool = True) -> np.ndarray:
        return self._split("encode_text", [texts] if isinstance(texts, str) else list(texts), batch_size, normalize)

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        self.actors = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def ray_encoder_factory(spec: str, *, address: str | None, workers: int = 2, device: str | None = None,
                        cpus_per_worker: float = 1, gpus_per_worker: float = 0):
    """A zero-argument factory of a :class:`RayEncoderPool` (what ``index_folder`` takes), valid inside the block:
    Ray starts (or is joined) only when the factory is called, so a re-index with nothing new never starts it;
    actors and a Ray this block started end with it."""
    with contextlib.ExitStack() as stack:
        def make() -> RayEncoderPool:
            stack.enter_context(ray_session(address, num_cpus=int(max(1, workers * cpus_per_worker))))
            return stack.enter_context(RayEncoderPool(spec, workers=workers, device=device,
                                                      cpus_per_worker=cpus_per_worker,
                                                      gpus_per_worker=gpus_per_worker))

        yield make


__all__ = ["ray_session", "run_units", "RayEncoderPool", "ray_encoder_factory"]
