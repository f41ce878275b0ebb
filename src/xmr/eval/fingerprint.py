"""Protocol fingerprints: everything that must match for two retrieval numbers to be comparable."""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import platform

_PACKAGES = ("xmr", "torch", "transformers", "sentence-transformers", "numpy", "faiss-cpu", "pillow")


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def package_versions() -> dict[str, str | None]:
    out = {}
    for p in _PACKAGES:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    out["python"] = platform.python_version()
    return out


def protocol_fingerprint(dataset, protocol: str, model: dict, extra: dict | None = None) -> dict:
    """A JSON-able record of the evaluation set-up, with a short ``id`` hashing the parts that define the protocol
    (data files, counts, caption policy, preset) so two results with the same ``id`` used the same benchmark."""
    import os

    # keyed by file name, not absolute path: two clones of one benchmark must get the same id
    files = {os.path.basename(p): file_sha256(p) for p in dataset.source_files}
    scheme = dataset.spec.split(":", 1)[0]
    options = dataset.spec.split("?", 1)[1] if "?" in dataset.spec else ""
    core = {
        "dataset": {"scheme": scheme, "options": options},
        "dataset_files": files,
        "num_queries_t2i": dataset.num_texts,
        "num_gallery_items": len(dataset),
        "caption_policy": dataset.caption_policy,
        "protocol": protocol,
    }
    mq = (extra or {}).get("multi_query")
    if mq:  # N captions fused into one query is a different query set, hence a different benchmark
        core["multi_query"] = {k: mq[k] for k in ("queries_per_target", "num_queries", "grouping")}
    fid = hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:12]
    return {"id": fid, **core, "dataset_spec": dataset.spec, "model": model, "packages": package_versions(), **(extra or {})}
