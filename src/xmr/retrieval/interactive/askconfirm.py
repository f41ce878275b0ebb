"""Ask&Confirm (Cai et al., ICCV 2021, "Ask&Confirm: Active Detail Enriching for Cross-Modal Retrieval with Partial
Query"): for a partial query the system proposes details the query left out, the user confirms or rejects them,
and the answers refine the query.

What the paper does, and what this module does:

* **Details** -- the paper proposes *objects* (COCO categories found in the top-K candidate images by a detector).
  Here a detail is a phrase of a vocabulary (:mod:`.vocab`: the ``concept`` model's 1000 ImageNet concepts, the 80
  COCO categories, or a file), and whether a candidate image ``c`` shows detail ``d`` is read off the shared space
  instead of a detector: ``pi_cd = sigmoid((cos(v_c, e_d) - t_d) / (w * s_d))`` where ``e_d`` is the detail's text
  embedding, ``t_d`` the ``presence_quantile`` (0.9) quantile of ``cos(v, e_d)`` over the collection (a detail
  "is present" in an item that is among the items most like it) and ``s_d`` that similarity's standard deviation
  over the collection.
* **Policy** -- the paper learns which object to ask about with a reinforcement-learned policy (weakly supervised
  on a caption dataset; reward: the target's rank improvement). No RL is trained here: the policy is the greedy
  information-gain rule the learned policy approximates -- ask about the detail whose answer splits the current
  candidates best. With the posterior over the top ``candidates`` results ``p_c = softmax(z_c / T)`` (``z``: the
  candidates' scores standardised over the candidates, ``T`` = ``temperature``), the probability that the user
  answers "yes" is ``a_d = sum_c p_c pi_cd`` and the expected information of the (deterministic) answer is its
  binary entropy ``H(a_d)``; the ``proposals`` details of largest ``H(a_d)`` are proposed, best first. Details the
  query already names and details already answered are not proposed again.
* **Fusion** -- the paper appends each confirmed object to the query text and re-encodes it (``fuse="append"``:
  ``"a dog" + frisbee -> "a dog, frisbee"``). ``fuse="terms"`` adds each confirmed detail as a separate positive
  term of weight ``confirm_weight`` instead (:class:`~xmr.retrieval.Query`'s ``mean-sim`` fusion). The paper's user
  only confirms; a *rejected* detail is used here as a negative term of weight ``-reject_weight`` (0: rejected
  details are only never proposed again) -- an addition, measured separately in ``benchmarks/ask_confirm.py``.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

import numpy as np

from ...errors import ConfigError
from ..query import Query, Term

FUSES = ("append", "terms")
MAX_ANSWERS = 16


@dataclass(frozen=True)
class AskConfirmConfig:
    candidates: int = 50  # top results the proposals must split
    proposals: int = 5  # details proposed per round
    temperature: float = 0.5  # posterior over candidates: softmax of standardised scores / temperature
    presence_quantile: float = 0.9  # a detail is "present" above this quantile of its similarity over the collection
    presence_width: float = 0.25  # sigmoid width, in standard deviations of that similarity
    fuse: str = "append"  # how confirmed details enter the query: "append" (the paper) | "terms"
    confirm_weight: float = 1.0  # fuse="terms": weight of each confirmed detail
    reject_weight: float = 0.5  # weight of each rejected detail as a negative term (0: not used in the query)
    sample: int = 20000  # collection items read to set the presence thresholds (evenly spaced when more)

    def __post_init__(self):
        if self.candidates < 2 or self.proposals < 1:
            raise ConfigError("Ask&Confirm needs candidates >= 2 and proposals >= 1")
        if not self.temperature > 0 or not self.presence_width > 0:
            raise ConfigError("Ask&Confirm temperature and presence_width must be > 0")
        if not 0 < self.presence_quantile < 1:
            raise ConfigError("Ask&Confirm presence_quantile must be in (0, 1)")
        if self.fuse not in FUSES:
            raise ConfigError(f"Ask&Confirm fuse must be one of {FUSES}, got {self.fuse!r}")
        if not self.confirm_weight > 0 or self.reject_weight < 0:
            raise ConfigError("Ask&Confirm confirm_weight must be > 0 and reject_weight >= 0")
        if self.sample < 10:
            raise ConfigError("Ask&Confirm sample must be >= 10")


@dataclass(frozen=True)
class Proposal:
    detail: str
    gain: float  # expected information of the answer, bits (binary entropy of p_yes)
    p_yes: float  # the model's probability that the target shows the detail

    def to_dict(self) -> dict:
        return {"detail": self.detail, "gain": round(self.gain, 4), "p_yes": round(self.p_yes, 4)}


@dataclass
class DetailBank:
    """Details with their text embeddings and presence thresholds over one collection."""

    texts: tuple[str, ...]
    vectors: np.ndarray  # (m, d) L2-normalised text embeddings
    threshold: np.ndarray  # (m,) t_d
    scale: np.ndarray  # (m,) w * s_d
    _lookup: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._lookup = {t.lower(): i for i, t in enumerate(self.texts)}

    @classmethod
    def build(cls, texts, vectors: np.ndarray, gallery: np.ndarray, config: AskConfirmConfig) -> "DetailBank":
        """Thresholds from ``gallery`` (n, d) item vectors (a sample of the collection)."""
        vectors = np.asarray(vectors, np.float32)
        gallery = np.asarray(gallery, np.float32)
        if len(gallery) < 2:
            raise ConfigError("Ask&Confirm needs a collection of at least 2 items to tell details apart")
        if vectors.shape[1] != gallery.shape[1]:
            raise ConfigError(f"details are {vectors.shape[1]}-d but the items are {gallery.shape[1]}-d")
        sims = gallery @ vectors.T  # (n, m)
        thr = np.quantile(sims, config.presence_quantile, axis=0)
        sd = sims.std(axis=0)
        scale = config.presence_width * np.maximum(sd, 1e-6)
        return cls(tuple(texts), vectors, thr.astype(np.float32), scale.astype(np.float32))

    def index(self, detail: str) -> int:
        i = self._lookup.get(str(detail).strip().lower())
        if i is None:
            raise ConfigError(f"unknown detail {detail!r}: confirm or reject one of the proposed details (a phrase "
                              f"of the detail vocabulary, {len(self.texts)} details)")
        return i

    def presence(self, items: np.ndarray) -> np.ndarray:
        """(n, m) probability that each item shows each detail."""
        z = (np.asarray(items, np.float32) @ self.vectors.T - self.threshold) / self.scale
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def mentioned(detail: str, texts) -> bool:
    """True when every word of ``detail`` already occurs in one of ``texts`` (the query names it)."""
    w = _words(detail)
    return bool(w) and any(w <= _words(t) for t in texts)


def binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def posterior(scores: np.ndarray, temperature: float) -> np.ndarray:
    """softmax of the candidates' standardised scores / temperature."""
    s = np.asarray(scores, np.float64)
    z = (s - s.mean()) / (s.std() + 1e-12)
    z = z / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def propose(bank: DetailBank, cand_vectors: np.ndarray, cand_scores: np.ndarray, config: AskConfirmConfig,
            exclude=(), query_texts=()) -> list[Proposal]:
    """The ``config.proposals`` details whose answer splits the candidates best (see the module docstring)."""
    if len(cand_vectors) < 2:
        return []
    p = posterior(cand_scores, config.temperature)
    a = p @ bank.presence(cand_vectors)  # (m,)
    gain = binary_entropy(a)
    skip = {str(e).strip().lower() for e in exclude}
    out = []
    for i in np.argsort(-gain, kind="stable"):
        t = bank.texts[i]
        if t.lower() in skip or mentioned(t, query_texts):
            continue
        out.append(Proposal(t, float(gain[i]), float(a[i])))
        if len(out) == config.proposals:
            break
    return out


def check_answers(confirmed, rejected, bank: DetailBank | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Clean the answers: non-empty strings, no detail both confirmed and rejected, at most MAX_ANSWERS, and (with
    a ``bank``) every detail known to it (spelled as the bank spells it)."""
    conf = tuple(str(c).strip() for c in confirmed or ())
    rej = tuple(str(r).strip() for r in rejected or ())
    if any(not c for c in conf + rej):
        raise ConfigError("empty detail: confirm or reject a detail by its text")
    if len(conf) + len(rej) > MAX_ANSWERS:
        raise ConfigError(f"at most {MAX_ANSWERS} confirmed and rejected details together")
    both = {c.lower() for c in conf} & {r.lower() for r in rej}
    if both:
        raise ConfigError(f"detail {sorted(both)[0]!r} is both confirmed and rejected")
    if bank is not None:
        conf = tuple(bank.texts[bank.index(c)] for c in conf)
        rej = tuple(bank.texts[bank.index(r)] for r in rej)
    return conf, rej


def refine_query(query: Query, confirmed=(), rejected=(), config: AskConfirmConfig | None = None) -> Query:
    """``query`` with the answers fused in (see the module docstring: ``append`` / ``terms``; rejected details as
    negative terms when ``reject_weight`` > 0). The query itself is not changed."""
    cfg = config or AskConfirmConfig()
    confirmed, rejected = check_answers(confirmed, rejected)
    if not confirmed and not rejected:
        return query
    terms = list(query.terms)
    if confirmed:
        if cfg.fuse == "append":
            pos = [i for i, t in enumerate(terms) if t.kind == "text" and t.weight > 0]
            if len(pos) != 1:
                raise ConfigError("Ask&Confirm's 'append' fusion needs a query with exactly one positive text (the "
                                  "partial query); use fuse='terms' for other queries")
            t = terms[pos[0]]
            terms[pos[0]] = Term("text", ", ".join([t.value.strip(), *confirmed]), t.weight)
        else:
            terms += [Term("text", c, cfg.confirm_weight) for c in confirmed]
    if cfg.reject_weight > 0:
        terms += [Term("text", r, -cfg.reject_weight) for r in rejected]
    return Query(tuple(terms), query.fuse)


def query_texts(query: Query) -> list[str]:
    return [t.value for t in query.terms if t.kind == "text"]


class AskConfirm:
    """Ask&Confirm over an index: the detail bank of one encoder and vocabulary, its thresholds per index
    generation, and :meth:`ask` (search the refined query, propose the next details)."""

    def __init__(self, encoder, vocabulary: str | None = None, config: AskConfirmConfig | None = None):
        from .vocab import default_vocabulary, load_vocabulary

        self.encoder = encoder
        self.config = config or AskConfirmConfig()
        self.vocabulary = vocabulary or default_vocabulary(encoder.spec)
        self.texts = load_vocabulary(self.vocabulary)
        self._vectors = None
        self._banks: dict = {}
        self._lock = threading.Lock()

    def bank(self, reader) -> DetailBank:
        """The bank for ``reader``'s collection (thresholds cached per index path and generation)."""
        key = (str(getattr(reader, "path", "")), reader.generation)
        with self._lock:
            if key not in self._banks:
                if self._vectors is None:
                    self.encoder.require("text", "Ask&Confirm's details")
                    self._vectors = np.asarray(self.encoder.encode_text(list(self.texts), show_progress=False),
                                               np.float32)
                self._banks = {key: DetailBank.build(self.texts, self._vectors, _sample(reader, self.config.sample),
                                                     self.config)}
            return self._banks[key]

    def ask(self, pipeline, reader, query: Query, k: int = 10, media_type: str | None = None, confirmed=(),
            rejected=()):
        """(search outcome of the refined query cut to ``k``, proposals for the next round). Raises ConfigError for
        an unknown detail or a query the fusion cannot refine, before anything is searched."""
        bank = self.bank(reader)
        confirmed, rejected = check_answers(confirmed, rejected, bank)
        refined = refine_query(query, confirmed, rejected, self.config)
        out = pipeline.search(reader, refined, max(k, self.config.candidates), media_type)
        ids = [r.id for r in out.results]
        props = propose(bank, reader.item_vectors(ids), np.array([r.score for r in out.results]), self.config,
                        exclude=(*confirmed, *rejected), query_texts=query_texts(query))
        out.results = out.results[:k]
        return out, props


def _sample(reader, n: int) -> np.ndarray:
    """Up to ``n`` item vectors of ``reader`` (evenly spaced over the ids when there are more)."""
    total = reader.count()
    if total < 2:
        raise ConfigError("Ask&Confirm needs an index of at least 2 items")
    step = max(1, -(-total // n))
    parts = [v[::step] for _, v in reader.iter_vectors()] if step > 1 else [v for _, v in reader.iter_vectors()]
    return np.concatenate(parts)[:n]


__all__ = ["AskConfirm", "AskConfirmConfig", "DetailBank", "Proposal", "propose", "refine_query", "check_answers",
           "posterior", "binary_entropy", "mentioned"]
