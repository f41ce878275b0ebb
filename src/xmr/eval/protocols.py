"""Named evaluation protocols: the exact rank conventions of the codebases whose numbers get compared.

Each protocol is data (a frozen :class:`Protocol` of :class:`RankRules`) in the ``PROTOCOLS`` registry;
``docs/protocols.md`` explains every rule and which published code it reproduces.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .. import registries
from ..registry import Registry
from ._counting import i2t_counts, t2i_counts
from ._inputs import as_scores, as_text_to_item, check_chunk_size, check_no_nan
from .ranks import DEFAULT_KS, I2T_MODES, MEDIAN_RULES, TIE_RULES, check_rule, metrics_from_counts


@dataclass(frozen=True)
class RankRules:
    """How one retrieval direction turns match positions into metrics."""

    ties: str = "pessimistic"  # tie rule, one of ranks.TIE_RULES
    median: str = "numpy"  # MdR rule: "numpy" | "lower" (torch.median) | "floor" (VSE++)
    r1_exact_zero: bool = False  # R@1 counts rank == 0 only (CE; matters for averaged ranks like 0.5)

    def __post_init__(self):
        check_rule(self.ties, TIE_RULES, "tie rule")
        check_rule(self.median, MEDIAN_RULES, "median rule")


@dataclass(frozen=True)
class Protocol:
    """A complete evaluation convention for text->item (t2i) and item->text (i2t) retrieval."""

    name: str
    t2i: RankRules  # text -> item rules
    i2t: RankRules  # item -> text rules
    i2t_mode: str = "best_text"  # "best_text": rank among all texts; "group_max": rank among items
    t2i_multi: RankRules | None = None  # replaces t2i when some item has several texts (CLIP4Clip)
    reference: str = ""  # the code it reproduces

    def __post_init__(self):
        check_rule(self.i2t_mode, I2T_MODES, "item->text mode")
        if self.i2t_mode == "best_text" and self.i2t.ties == "expand":
            raise ConfigError(f"protocol {self.name!r}: tie rule 'expand' needs i2t_mode='group_max'")

    def t2i_rules(self, several_texts_per_item: bool) -> RankRules:
        return self.t2i_multi if (several_texts_per_item and self.t2i_multi is not None) else self.t2i


#: protocol name -> Protocol
PROTOCOLS: Registry[Protocol] = registries.PROTOCOLS  # defined in xmr.registries with every other registry


def _register(protocol: Protocol, help: str) -> None:
    PROTOCOLS.add(protocol.name, protocol, help=help)


_PESSIMISTIC = RankRules()

_register(
    Protocol("standard", t2i=_PESSIMISTIC, i2t=_PESSIMISTIC, reference="xmr"),
    help="xmr default: ties count against the query; i2t = best text among all texts; numpy median",
)
_register(
    Protocol(
        "clip4clip",
        t2i=RankRules(ties="expand"),
        t2i_multi=RankRules(ties="pessimistic", median="lower"),
        i2t=RankRules(ties="expand"),
        i2t_mode="group_max",
        reference="ArrowLuo/CLIP4Clip metrics.py (also TS2-Net)",
    ),
    help="CLIP4Clip / TS2-Net: one rank per tied position; torch.median for multi-text t2i; group-max i2t",
)
_register(
    Protocol("xpool", t2i=_PESSIMISTIC, i2t=_PESSIMISTIC, i2t_mode="group_max",
             reference="layer6ai-labs/xpool modules/metrics.py"),
    help="X-Pool: group-max i2t, numpy median",
)
_register(
    Protocol(
        "ce",
        t2i=RankRules(ties="average", r1_exact_zero=True),
        i2t=RankRules(ties="average", r1_exact_zero=True),
        reference="albanie/collaborative-experts model/metric.py (used by QB-Norm)",
    ),
    help="collaborative-experts: tied positions averaged, R@1 needs rank exactly 0, i2t = best text",
)
_register(
    Protocol("vse", t2i=RankRules(median="floor"), i2t=RankRules(median="floor"),
             reference="fartashf/vsepp evaluation.py (PCME, NCR follow it)"),
    help="VSE++ / PCME / NCR: i2t = best text among all texts, MdR = floor(median) + 1",
)
_register(
    Protocol("clip_benchmark", t2i=_PESSIMISTIC, i2t=_PESSIMISTIC,
             reference="LAION-AI/CLIP_benchmark metrics/zeroshot_retrieval.py"),
    help="LAION CLIP_benchmark: R@K = share of queries with any match in the top K (in percent here)",
)


def list_protocols() -> list[str]:
    """Names of the registered evaluation protocols."""
    return PROTOCOLS.names()


def get_protocol(protocol: str | Protocol) -> Protocol:
    if isinstance(protocol, Protocol):
        return protocol
    if not isinstance(protocol, str):
        raise ConfigError(f"protocol must be a name or a Protocol, got {type(protocol).__name__}")
    return PROTOCOLS.get(protocol)


def evaluate_sims(
    sims,
    text_to_item,
    protocol: str | Protocol = "standard",
    *,
    chunk_size: int | None = None,
    allow_textless_items: bool = False,
) -> dict[str, dict[str, float]]:
    """Retrieval metrics for a (num_texts, num_items) similarity matrix under a named protocol.

    ``text_to_item[t]`` is the column of text t's item. Returns ``{"t2i": m, "i2t": m}`` where ``m`` has
    ``"R@1", "R@5", "R@10", "R@50"`` (percent), ``"MdR"`` and ``"MnR"`` (1-based), all Python floats.
    ``protocol`` is one of :func:`list_protocols` (see docs/protocols.md) or a :class:`Protocol`.

    Scores are compared ``chunk_size`` rows at a time (default: about 4M scores per block), never sorted, so
    a COCO-5k matrix (25,000 x 5,000) needs ~20 MB beyond the input. ``sims`` is never modified. An item with
    no text cannot be an item->text query: ConfigError, unless ``allow_textless_items=True`` leaves it out of
    i2t (it stays a text->item candidate).
    """
    proto = get_protocol(protocol)
    scores = as_scores(sims)
    t2i = as_text_to_item(text_to_item, *scores.shape)
    chunk_size = check_chunk_size(chunk_size)
    check_no_nan(scores, chunk_size)

    several = bool(np.bincount(t2i, minlength=scores.shape[1]).max() > 1)
    rules = proto.t2i_rules(several)
    t2i_metrics = metrics_from_counts(
        t2i_counts(scores, t2i, chunk_size), rules.ties, DEFAULT_KS, rules.median,
        r1_exact_zero=rules.r1_exact_zero,
    )
    rules = proto.i2t
    i2t_metrics = metrics_from_counts(
        i2t_counts(scores, t2i, proto.i2t_mode, chunk_size, allow_textless_items), rules.ties, DEFAULT_KS,
        rules.median, r1_exact_zero=rules.r1_exact_zero,
    )
    return {"t2i": t2i_metrics, "i2t": i2t_metrics}
