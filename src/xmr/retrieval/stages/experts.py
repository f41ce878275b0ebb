"""Experts: score the query against every expert's text rows (scene text, side text, subtitles) and fuse the
scores with the visual one; optionally keep only items whose expert text holds an exact phrase.

For a query embedding ``q`` and an item with visual vector ``v`` (cosine ``s_v = q.v``), each expert ``e`` of the
item contributes its best-matching row ``t_e`` (``s_e = q.t_e``, the row's text embedded with the same model's text
tower when indexed). Fusion rules (``fusion``; ``weights`` ``a_e``, default 1 each):

* ``vista`` (default): cosine to the aggregated embedding ``f = v + sum_e a_e t_e``::

      score = (s_v + sum_e a_e s_e) / ||v + sum_e a_e t_e||

  -- the embedding-level reading of ViSTA (Cheng et al., CVPR 2022, "ViSTA: Vision and Scene Text Aggregation for
  Cross-Modal Retrieval"): one embedding per image that aggregates its visual and scene-text features, which
  degrades to the visual embedding alone when the image has no text. Deviation: ViSTA learns the aggregation (a
  fusion token exchanged between a visual and a scene-text transformer, trained with a fusion-to-text
  contrastive loss); here the aggregation is a fixed weighted sum of the frozen model's unit vectors, computed
  exactly at query time from the stored vectors, no training. Items without expert rows keep ``s_v``. For a
  video, ``s_v`` is the moments stage's score (the best of the whole video and its windows) while ``v`` in the norm
  is the whole-video vector: exact when the whole video scores best, an approximation when a window does.
* ``max``: ``max(s_v, max_e a_e s_e)``;
* ``sum``: ``s_v + sum_e a_e s_e`` (an expert the item lacks adds 0).
* ``laff:DIR`` / ``mmt:DIR``: a trained fuser (:mod:`xmr.experts.fusers`, ``xmr train-fusion``) scores every
  candidate from its visual vector and the first ``max_rows`` rows of each expert it was trained with (index
  order, the same tokens it was trained on); ``match`` is the source with the largest share of the score (LAFF:
  attention weight, MMT: query-predicted expert weight times the expert's similarity); each result also records
  ``weights``, the fuser's weight per source it has (LAFF: attention; MMT: query-predicted weights; none for
  ``concat``). ``weights`` (fixed per-expert weights) do not apply.

Candidates: the first stage's pool plus the ``pool`` items with the best expert score (exact numpy scan of every
expert row; an item whose text matches is found even if its visual score is far down). This stage therefore adds
candidates (the one stage that does), and with ``phrase`` it also drops them: only items with an expert row whose
text contains ``phrase`` as whole words (Unicode case-folded) are kept.

Each result records ``experts``: ``{name: {"score", "text", "field", "start", "end"}}`` (the best row; with
``phrase`` the phrase-matching row) and ``match``: the source with the largest contribution (``visual`` or an
expert name); when it is a timed row (a subtitle cue, an OCR'd frame) the result's ``start``/``end`` are that row's.
"""
from __future__ import annotations

import re

import numpy as np

from ...errors import ConfigError
from ...experts.fusers import VISUAL, check_compatible, fuse_numpy, load_fuser, pack_items, parse_fusion
from ..result import SearchResult
from .base import Stage, StageContext

FUSIONS = ("vista", "max", "sum")


def phrase_pattern(phrase: str) -> re.Pattern:
    """Whole-word, case-folded, whitespace-tolerant match of ``phrase``."""
    words = phrase.casefold().split()
    if not words:
        raise ConfigError("--phrase needs at least one word")
    return re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)")


class ExpertStage(Stage):
    name = "experts"
    changes_scores = True

    def __init__(self, experts: tuple[str, ...] | None = None, fusion: str = "vista", weights: dict | None = None,
                 phrase: str | None = None, pool: int = 100, fuser=None):
        name, fuser_dir = parse_fusion(fusion)
        self.fuser = None
        if fuser_dir is not None:  # a trained fuser: laff:DIR, mmt:DIR (``fuser``: that folder, already loaded)
            self.fuser = fuser if fuser is not None else load_fuser(fuser_dir)
            if self.fuser.name != name:
                raise ConfigError(f"--expert-fusion {fusion}: {fuser_dir} holds a {self.fuser.name!r} fuser, not "
                                  f"{name!r}; use {self.fuser.name}:{fuser_dir}")
            if weights:
                raise ConfigError("--expert-weight applies to the fixed rules (vista, max, sum), not to a trained "
                                  "fuser, whose weights are learned")
        elif fusion not in FUSIONS:
            raise ConfigError(f"expert fusion must be one of {', '.join(FUSIONS)} or a trained fuser laff:DIR / "
                              f"mmt:DIR (xmr train-fusion), got {fusion!r}")
        weights = dict(weights or {})
        for k, w in weights.items():
            if not isinstance(w, (int, float)) or not np.isfinite(w) or w < 0:
                raise ConfigError(f"expert weight for {k!r} must be a finite number >= 0, got {w!r}")
        self.experts = tuple(experts) if experts else None  # None: every expert the index carries
        self.fusion, self.weights, self.pool = fusion, weights, int(pool)
        self.phrase = phrase.strip() if phrase else None
        self._pattern = phrase_pattern(self.phrase) if self.phrase else None

    def params(self) -> dict:
        d = {"experts": list(self.experts) if self.experts else "all in the index", "fusion": self.fusion,
             "weights": self.weights or ("learned" if self.fuser is not None else "1 each"), "pool": self.pool}
        if self.phrase:
            d["phrase"] = self.phrase
        return d

    def check_index(self, reader, encoder, media_type: str | None) -> None:
        carried = [n.partition(":")[0] for n in reader.expert_names()]  # "audio:DIR" carries "audio"
        if self.experts:
            missing = [e for e in self.experts if e not in carried]
            if missing:
                raise ConfigError(f"index {reader.path} carries no {', '.join(missing)} expert (it carries: "
                                  f"{', '.join(carried) or 'none'}); add it with xmr index DIR --experts "
                                  f"{','.join(missing)}")
        elif self.phrase and not carried:
            raise ConfigError(f"--phrase searches experts' text, and index {reader.path} carries none: build it "
                              f"with xmr index DIR --experts ocr,sidecar,subtitles")
        if self.fuser is not None:
            check_compatible(self.fuser, reader.dim, getattr(encoder, "spec", None) or reader.model_spec, carried)
        unknown = [k for k in self.weights if k not in carried]
        if unknown:
            raise ConfigError(f"expert weights name {', '.join(unknown)}, which index {reader.path} does not carry")

    def _weight(self, name: str) -> float:
        return float(self.weights.get(name, 1.0))

    def run(self, ctx: StageContext, cands: list[SearchResult]) -> list[SearchResult]:
        reader = ctx.reader
        row_ids, row_items, row_experts, vecs = reader.expert_matrix()
        names = sorted(set(row_experts))
        code = np.array([names.index(e) for e in row_experts], np.int64) if row_experts else np.zeros(0, np.int64)
        keep = np.array([self.experts is None or e in self.experts for e in row_experts], bool)
        if self._pattern is not None:
            hits = [r for r in reader.phrase_rows(self.phrase, self.experts)
                    if self._pattern.search(r.text.casefold())]
            allowed = {r.item_id for r in hits}
            keep &= np.isin(row_items, list(allowed))
            first = ~np.isin(row_ids, [r.id for r in hits])  # phrase rows sort first within their (item, expert)
        else:
            allowed, first = None, np.zeros(len(row_ids), bool)
        row_ids, row_items, code, vecs, first = row_ids[keep], row_items[keep], code[keep], vecs[keep], first[keep]
        scores = ctx.emb.score(vecs) if len(row_ids) else np.zeros(0)
        # best row per (item, expert) group, vectorised: sort by group, then phrase rows first, then score
        group = row_items * max(1, len(names)) + code
        order = np.lexsort((-scores, first, group))
        heads = order[np.r_[True, group[order][1:] != group[order][:-1]]] if len(order) else order
        by_id = {r.id: r for r in cands}
        if allowed is not None:
            by_id = {i: r for i, r in by_id.items() if i in allowed}
            extra = [i for i in allowed if i not in by_id]
        else:  # the pool items with the best expert score, found even when their visual score is far down
            top = heads[np.argsort(-scores[heads], kind="stable")]
            seen: list[int] = []
            for j in top:
                i = int(row_items[j])
                if i not in seen:
                    seen.append(i)
                    if len(seen) >= self.pool:
                        break
            extra = [i for i in seen if i not in by_id]
        by_id.update(self._new_results(ctx, extra))
        best: dict[int, dict[str, int]] = {}
        for j in heads:
            i = int(row_items[j])
            if i in by_id:
                best.setdefault(i, {})[names[int(code[j])]] = int(j)
        if self.fuser is not None:
            return self._learned(ctx, by_id, best, row_ids, row_items, code, names, vecs, scores)
        texts = reader.expert_rows([int(row_ids[j]) for b in best.values() for j in b.values()])
        visual = dict(zip(best, reader.item_vectors(list(best)))) if best and self.fusion == "vista" else {}
        for item_id, rows in best.items():
            self._fuse(by_id[item_id], rows, row_ids, scores, vecs, texts, visual.get(item_id))
        return list(by_id.values())

    def _learned(self, ctx, by_id, best, row_ids, row_items, code, names, vecs, scores) -> list[SearchResult]:
        """Every candidate scored by the trained fuser from its visual vector and first rows per expert."""
        ids = list(by_id)
        experts = list(self.fuser.config.experts)
        max_rows = self.fuser.config.max_rows
        wanted = {i: k for k, i in enumerate(ids)}
        picked: dict[int, dict[str, list[int]]] = {}
        for j in np.argsort(row_ids, kind="stable"):  # index order (the order the fuser was trained on)
            i, e = int(row_items[j]), names[int(code[j])]
            if i in wanted and e in experts:
                lst = picked.setdefault(i, {}).setdefault(e, [])
                if len(lst) < max_rows:
                    lst.append(int(j))
        shown = [j for b in best.values() for j in b.values()]
        used = {int(row_ids[j]) for d in picked.values() for lst in d.values() for j in lst}
        texts = ctx.reader.expert_rows(sorted({int(row_ids[j]) for j in shown} | used))

        def start(j):
            t = texts.get(int(row_ids[j]))
            return None if t is None else t.start

        rows = [{e: [(vecs[j], start(j)) for j in l] for e, l in picked.get(i, {}).items()} for i in ids]
        tokens = pack_items(ctx.reader.item_vectors(ids), rows, experts, max_rows) if ids else None
        if tokens is None:
            return []
        s, c, w = fuse_numpy(self.fuser, ctx.emb.probes, tokens)
        best_probe = s.argmax(0)
        sources = (VISUAL, *experts)
        has = np.zeros((len(ids), len(sources)), bool)  # the sources each item has (its weights are over these)
        has[:, 0] = True
        for k, i in enumerate(ids):
            for e in picked.get(i, {}):
                has[k, 1 + experts.index(e)] = True
        for k, i in enumerate(ids):
            r = by_id[i]
            r.score = float(s[best_probe[k], k])
            share = np.where(has[k], c[best_probe[k], k], -np.inf)  # a source the item lacks never "matches"
            r.match = sources[int(share.argmax())]
            if w is not None:
                r.weights = {n: round(float(w[best_probe[k], k, j]), 4) for j, n in enumerate(sources) if has[k, j]}
            r.experts = {}
            for n, j in best.get(i, {}).items():
                t = texts.get(int(row_ids[j]))
                if t is not None:
                    r.experts[n] = {"score": round(float(scores[j]), 6), "text": t.text, "field": t.field}
                    if t.start is not None:
                        r.experts[n].update(start=t.start, end=t.end)
            m = r.experts.get(r.match)
            if m is not None and m.get("start") is not None and r.media_type == "video":
                r.start, r.end = m["start"], m["end"]
        return list(by_id.values())

    def _new_results(self, ctx: StageContext, ids: list[int]) -> dict[int, SearchResult]:
        """Items found by their experts' text only: their exact visual (item-level) score, the type filter kept."""
        recs = ctx.reader.get_items(ids)
        ids = [i for i in ids if i in recs and (ctx.media_type is None or recs[i].media_type == ctx.media_type)]
        if not ids:
            return {}
        s = ctx.emb.score(ctx.reader.item_vectors(ids))
        return {i: SearchResult(0, i, recs[i].path, float(v), recs[i].media_type, recs[i].root)
                for i, v in zip(ids, s)}

    def _fuse(self, r: SearchResult, rows: dict[str, int], row_ids, scores, vecs, texts, v) -> None:
        s_v = float(r.score)
        names = list(rows)
        a = np.array([self._weight(n) for n in names], np.float64)
        s_e = np.array([scores[rows[n]] for n in names], np.float64)
        if self.fusion == "vista":
            f = np.asarray(v, np.float64) + (a[:, None] * vecs[[rows[n] for n in names]].astype(np.float64)).sum(0)
            norm = float(np.linalg.norm(f))
            r.score = (s_v + float(a @ s_e)) / norm if norm > 0 else s_v
        elif self.fusion == "max":
            r.score = max(s_v, float((a * s_e).max()))
        else:
            r.score = s_v + float(a @ s_e)
        contrib = {"visual": s_v, **{n: float(w * s) for n, w, s in zip(names, a, s_e)}}
        r.match = max(contrib, key=lambda k: contrib[k])
        r.experts = {}
        for n in names:
            t = texts.get(int(row_ids[rows[n]]))
            if t is None:
                continue
            r.experts[n] = {"score": round(float(scores[rows[n]]), 6), "text": t.text, "field": t.field}
            if t.start is not None:
                r.experts[n].update(start=t.start, end=t.end)
            if self._pattern is not None:
                r.experts[n]["phrase"] = bool(self._pattern.search(t.text.casefold()))
        if self._pattern is not None:  # the phrase hit is what matched
            hit = next((n for n in names if r.experts.get(n, {}).get("phrase")), None)
            r.match = hit or r.match
        m = r.experts.get(r.match)
        if m is not None and m.get("start") is not None and r.media_type == "video":
            r.start, r.end = m["start"], m["end"]
