"""Evaluation: ranking metrics with the exact conventions of published codebases, and Winoground scores.

``evaluate_sims(sims, text_to_item, protocol="standard")`` is the entry point; ``list_protocols()`` names the
presets (docs/protocols.md describes each rule). Imports stay light: numpy only; torch tensors are accepted
but torch is never imported here.
"""
from __future__ import annotations

from .protocols import PROTOCOLS as PROTOCOLS
from .protocols import Protocol as Protocol
from .protocols import RankRules as RankRules
from .protocols import evaluate_sims as evaluate_sims
from .protocols import list_protocols as list_protocols
from .ranks import metrics_from_ranks as metrics_from_ranks
from .ranks import ranks_i2t as ranks_i2t
from .ranks import ranks_t2i as ranks_t2i
from .labels import hamming_similarity as hamming_similarity
from .labels import label_map as label_map
from .labels import label_precision_at_k as label_precision_at_k
from .plausible import pmrp as pmrp
from .probabilistic import match_probability as match_probability
from .semantic import asp as asp
from .winoground import winoground_scores as winoground_scores
from .winoground import winoground_scores_from_sims as winoground_scores_from_sims

__all__ = [
    "evaluate_sims",
    "list_protocols",
    "PROTOCOLS",
    "Protocol",
    "RankRules",
    "ranks_t2i",
    "ranks_i2t",
    "metrics_from_ranks",
    "winoground_scores",
    "winoground_scores_from_sims",
    "match_probability",
    "pmrp",
    "label_map",
    "label_precision_at_k",
    "hamming_similarity",
    "asp",
]

# --- model-level evaluation (runner.py, fingerprint.py) is added below this line ---
from .fingerprint import protocol_fingerprint  # noqa: E402
from .runner import evaluate_model, format_table  # noqa: E402

__all__ += ["evaluate_model", "format_table", "protocol_fingerprint"]

from .vcmr import vcmr  # noqa: E402

__all__ += ["vcmr"]

from .composed import compose_queries, composed_metrics, composed_ranks, evaluate_composed  # noqa: E402
from .composed import evaluate_composed_embeddings, recall_at  # noqa: E402

__all__ += ["compose_queries", "composed_metrics", "composed_ranks", "evaluate_composed",
            "evaluate_composed_embeddings", "recall_at"]
