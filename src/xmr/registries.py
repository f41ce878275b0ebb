"""Every component registry of xmr, in one place (timm's ``_registry.py`` habit).

=================  ==========================  ===========================================================
kind (``ALL`` key)  registry                    filled by
=================  ==========================  ===========================================================
``encoder``        :data:`ENCODERS`            ``xmr.encoders.{concept,hf,openclip,tiny,video,trained,hash,av,ts2net}``
``video_head``     :data:`VIDEO_HEADS`         ``xmr.heads.{mean,seqtransf,xpool,ts2net,prototypes,lean,textweighted}``
``rescorer``       :data:`RESCORERS`           ``xmr.rescore`` (``qbnorm``, ``dsl``, ``csls``)
``reranker``       :data:`RERANKERS`           ``xmr.rerank.{hf_itm,xattn,imram,wcgl}``
``fusion``         :data:`FUSIONS`             ``xmr.multiquery.fusion``
``dataset``        :data:`DATASETS`            ``xmr.data`` (one module per scheme)
``protocol``       :data:`PROTOCOLS`           ``xmr.eval.protocols``
``stage``          :data:`STAGES`              ``xmr.retrieval.stages`` (moments, head, rescore, rerank)
``vector_backend`` :data:`VECTOR_BACKENDS`     ``xmr.index.backends.{flat,ann,ivf,binary,milvus}``
``loss``           :data:`LOSSES`              ``xmr.train.losses`` (one module per paper)
``composer``       :data:`COMPOSERS`           ``xmr.compose.{tirg,jvsm}`` (composed image + text queries)
``composed_dataset`` :data:`COMPOSED_DATASETS` ``xmr.data.composed`` (edits, fashion200k, fashioniq)
``moment_model``   :data:`MOMENT_MODELS`       ``xmr.localize.squidnet``
``expert``         :data:`EXPERTS`             ``xmr.experts.{ocr,sidecar,subtitles,audio}``
``multimodal``     :data:`MULTIMODAL_MODELS`   ``xmr.heads.{eao,eclipse}`` (video + audio + text)
``expert_fuser``   :data:`EXPERT_FUSERS`       ``xmr.experts.fusers.{laff,mmt,concat,vtc}``
=================  ==========================  ===========================================================

Other packages add components through entry points (group ``xmr.plugins``, :mod:`xmr.plugins`), loaded by
:func:`load_all` after xmr's own modules.

A component registers itself where it is defined (``@ENCODERS.register("tiny", help=...)``); registering is also
what gets it exercised by ``tests/test_contracts.py``. This module imports no component module (and no torch) when
it is imported, so anyone may import it: :func:`load_all` imports the modules that fill a registry, on demand.
The packages re-export their registry under the old names (``xmr.encoders.ENCODERS`` is :data:`ENCODERS`).
"""
from __future__ import annotations

import importlib

from .errors import ConfigError
from .registry import Registry

#: name -> factory(arg: str | None, device: str | None) -> Encoder
ENCODERS: Registry = Registry("encoder")
#: name -> VideoHead subclass (with a ``Config`` dataclass attribute)
VIDEO_HEADS: Registry = Registry("video head")
#: name -> Rescorer subclass (constructed with the method's keyword parameters)
RESCORERS: Registry = Registry("re-scorer")
#: name -> factory(arg: str, device: str | None) -> CrossEncoder
RERANKERS: Registry = Registry("re-ranker")
#: name -> fuse(q (G, N, d), mask (G, N) bool, gallery (I, d), model) -> (G, I) scores
FUSIONS: Registry = Registry("multi-query fusion")
#: scheme -> Loader(path, split=, caption_policy=, options=) -> RetrievalDataset
DATASETS: Registry = Registry("dataset scheme")
#: name -> Protocol (data: the rank rules of an evaluation protocol)
PROTOCOLS: Registry = Registry("evaluation protocol")
#: name -> retrieval stage (filled by ``xmr.retrieval``)
STAGES: Registry = Registry("retrieval stage")
#: name -> VectorBackend subclass (with a ``Config`` dataclass attribute): where an index's vectors are searched
VECTOR_BACKENDS: Registry = Registry("vector backend")
#: name -> TrainLoss subclass (with a ``Config`` dataclass attribute), used by ``xmr train --loss NAME``
LOSSES: Registry = Registry("training loss")
#: name -> composer class (an nn.Module with a ``Config`` dataclass attribute): image + modification text -> query
COMPOSERS: Registry = Registry("composer")
#: scheme -> loader(root, split, options, seed) -> ComposedDataset (reference image + text -> target queries)
COMPOSED_DATASETS: Registry = Registry("composed dataset scheme")
#: name -> factory(arg: str | None) -> a moment model (start / end / video scores over clip features)
MOMENT_MODELS: Registry = Registry("moment model")
#: name -> Expert subclass (with a ``Config`` dataclass attribute): text / features an item carries besides its
#: visual embedding (scene text, sidecar metadata, subtitles), built by ``xmr index --experts``
EXPERTS: Registry = Registry("expert")
#: name -> nn.Module class (with a ``Config`` dataclass attribute) that embeds any subset of {text, video, audio}
#: token sets into one space (Everything at Once, ECLIPSE)
MULTIMODAL_MODELS: Registry = Registry("multimodal model")
#: name -> fuser class (an nn.Module with a ``Config`` dataclass attribute): trained fusion of an item's visual
#: vector and expert rows, matched to a query (``xmr train-fusion``; ``xmr search --expert-fusion NAME:DIR``)
EXPERT_FUSERS: Registry = Registry("expert fuser")

#: kind -> registry
ALL: dict[str, Registry] = {
    "encoder": ENCODERS,
    "video_head": VIDEO_HEADS,
    "rescorer": RESCORERS,
    "reranker": RERANKERS,
    "fusion": FUSIONS,
    "dataset": DATASETS,
    "protocol": PROTOCOLS,
    "stage": STAGES,
    "vector_backend": VECTOR_BACKENDS,
    "loss": LOSSES,
    "composer": COMPOSERS,
    "composed_dataset": COMPOSED_DATASETS,
    "moment_model": MOMENT_MODELS,
    "expert": EXPERTS,
    "multimodal": MULTIMODAL_MODELS,
    "expert_fuser": EXPERT_FUSERS,
}

#: kind -> modules whose import registers that kind's components. The only list of them: the packages'
#: ``_load_all()`` helpers call :func:`load_all` with their kind.
MODULES: dict[str, tuple[str, ...]] = {
    "encoder": tuple(f"xmr.encoders.{m}" for m in ("concept", "hf", "openclip", "tiny", "video", "trained", "hash",
                                                   "av", "ts2net")),
    "video_head": tuple(f"xmr.heads.{m}" for m in ("mean", "seqtransf", "xpool", "ts2net", "prototypes", "lean",
                                                   "textweighted")),
    "rescorer": ("xmr.rescore",),
    "reranker": ("xmr.rerank.hf_itm", "xmr.rerank.xattn", "xmr.rerank.imram", "xmr.rerank.wcgl"),
    "fusion": ("xmr.multiquery.fusion",),
    "dataset": ("xmr.data",),
    "protocol": ("xmr.eval.protocols",),
    "stage": ("xmr.retrieval.stages",),
    "vector_backend": tuple(f"xmr.index.backends.{m}" for m in ("flat", "ann", "ivf", "binary", "milvus")),
    "loss": ("xmr.train.losses",),
    "composer": ("xmr.compose.tirg", "xmr.compose.jvsm"),
    "composed_dataset": ("xmr.data.composed",),
    "moment_model": ("xmr.localize.squidnet",),
    "expert": tuple(f"xmr.experts.{m}" for m in ("ocr", "sidecar", "subtitles", "audio")),
    "multimodal": ("xmr.heads.eao", "xmr.heads.eclipse"),
    "expert_fuser": tuple(f"xmr.experts.fusers.{m}" for m in ("laff", "mmt", "concat", "vtc")),
}


def load_all(kind: str | None = None) -> dict[str, Registry]:
    """Import the modules that fill the registry of ``kind`` (every kind when None) and return ``{kind:
    registry}`` for the kinds loaded. Importing is idempotent and cheap after the first time; heavy optional
    libraries (transformers, open_clip) are still imported only when a component is built."""
    kinds = list(ALL) if kind is None else [kind]
    for k in kinds:
        if k not in ALL:
            raise ConfigError(f"unknown component kind {k!r}. Available: {', '.join(ALL)}")
        for m in MODULES[k]:
            importlib.import_module(m)
    from .plugins import load_plugins  # other packages' components (entry points "xmr.plugins"), once per process

    load_plugins()
    return {k: ALL[k] for k in kinds}


def load_for(kind: str, name: str) -> Registry:
    """Make ``name`` of ``kind`` available importing as little as possible: the module named after it if the kind
    has one (``xmr.encoders.concept`` for encoder ``concept``), every module of the kind otherwise or if that module
    did not register it. A text search of the default model thus never imports the torch-based encoders."""
    if kind not in ALL:
        raise ConfigError(f"unknown component kind {kind!r}. Available: {', '.join(ALL)}")
    for m in MODULES[kind]:
        if m.rsplit(".", 1)[-1] in (name, name.split("+", 1)[0]):  # concept+lang: xmr.encoders.concept
            importlib.import_module(m)
    if name not in ALL[kind]:
        load_all(kind)
    return ALL[kind]


__all__ = ["ALL", "COMPOSED_DATASETS", "COMPOSERS", "DATASETS", "ENCODERS", "EXPERT_FUSERS", "EXPERTS", "FUSIONS",
           "LOSSES", "MODULES", "MULTIMODAL_MODELS", "MOMENT_MODELS", "PROTOCOLS", "RERANKERS", "RESCORERS", "STAGES",
           "VECTOR_BACKENDS", "VIDEO_HEADS",
           "load_all", "load_for"]
