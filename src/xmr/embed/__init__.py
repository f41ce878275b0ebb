"""Scale-out encoding: embedding shards in clip-retrieval's layout, made on Ray Data or in one process.

- :mod:`.shards`   the layout (``img_emb/img_emb_<n>.npy``, ``metadata/metadata_<n>.parquet``, ``embed_info.json``)
- :mod:`.sources`  what ``xmr embed`` reads (folder, manifest, webdataset / parquet shards), cut into units
- :mod:`.worker`   one unit -> one shard (the Ray actor's work, and the plain loop's)
- :mod:`.ray_backend`  Ray sessions, the Ray Data pipeline, the actor pool ``xmr index --ray`` encodes through
- :mod:`.run`      ``embed_source``: plan, resume, run, record
- :mod:`.export`   ``export_index``: an index's vectors -> the same layout

Sits after ``data`` and ``index`` in the flow (it reads datasets and indexes) and before ``cli``.
"""
from .export import export_index
from .run import EmbedReport, embed_source
from .shards import EmbedInfo, ShardRecord, iter_shards, read_info, write_shard

__all__ = ["EmbedInfo", "EmbedReport", "ShardRecord", "embed_source", "export_index", "iter_shards", "read_info",
           "write_shard"]
