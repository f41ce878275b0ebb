"""``xmr export``: an index's item vectors -> embedding shards in clip-retrieval's layout (:mod:`.shards`).

Rows are the index's items in id order, ``shard_size`` per shard; metadata columns: ``image_path`` (the file's
absolute path), ``media_type``, ``width``, ``height``, ``sha256``, ``key`` (the item id). Video segment vectors are
not exported (the layout has one vector per file). The vectors are the index's L2-normalised float32 ones, written
as ``dtype``. ``embed_info.json`` names the index's model, so ``xmr index --from-embeddings`` can check it.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from ..errors import ConfigError, XmrIndexError
from .shards import DTYPES, INFO_FILE, EmbedInfo, ShardRecord, write_info, write_shard


def export_index(index: str, out: str, *, shard_size: int = 100_000, dtype: str = "float32") -> EmbedInfo:
    """Write every item vector of the index at ``index`` into ``out``; returns the written ``embed_info``.
    ``out`` must not hold shards already (ConfigError): an export is written whole, not merged."""
    from ..index import IndexStore

    if dtype not in DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if shard_size < 1:
        raise ConfigError(f"--shard-size must be at least 1, got {shard_size}")
    index = os.path.abspath(os.path.expanduser(index))
    out = os.path.abspath(os.path.expanduser(out))
    if os.path.exists(os.path.join(out, INFO_FILE)) or os.path.isdir(os.path.join(out, "img_emb")):
        raise ConfigError(f"{out} already holds embedding shards; export into a new folder")
    if not os.path.exists(os.path.join(index, "meta.sqlite")):
        raise XmrIndexError(f"no index at {index} (no meta.sqlite); build one with xmr index")
    with IndexStore(index, readonly=True) as st, st.read_transaction():  # one consistent generation
        if st.model_spec is None or not st.count():
            raise XmrIndexError(f"index {index} is empty: nothing to export")
        os.makedirs(out, exist_ok=True)
        h = hashlib.sha256(f"{index}\0{st.generation}".encode()).hexdigest()
        info = EmbedInfo(model=st.model_spec, dtype=dtype, source=index, source_kind="index", plan_digest=h,
                         dim=st.dim, shard_size=shard_size)
        n = 0
        for ids, vecs in st.iter_vectors(chunk=shard_size):
            recs = st.get_items([int(i) for i in ids])
            rows = [{"image_path": recs[int(i)].path, "media_type": recs[int(i)].media_type,
                     "width": recs[int(i)].width, "height": recs[int(i)].height, "sha256": recs[int(i)].sha256,
                     "key": str(int(i))} for i in ids]
            write_shard(out, n, np.asarray(vecs), rows, dtype)
            info.shards.append(ShardRecord(n, f"index items {int(ids[0])}-{int(ids[-1])}", len(rows), [], True))
            n += 1
        write_info(out, info)
    return info


__all__ = ["export_index"]
