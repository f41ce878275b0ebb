"""Issue 17, third round: more out of the same caption-image pairs (``concept_quality.py ablation3``).

Round 2's default recipe (``concept_rounds.py``) is two ridge maps on frozen Lite0 logits and MiniLM caption
embeddings. The learning curve says data is the bottleneck, so this round changes only *how* the same pairs are used
and measures every variant with round 2's three protocols (``concept_rounds.protocols``: halves, folds, cross; 3
seeds built in). A variant is a dict of the options below on top of the default recipe
(``features="logits", a=0.3, b=0.3, ridge=1, caption_ridge=10``):

* ``aug`` (view augmentation), ``aug_maps`` ("both" | "V"): each image contributes, besides its view-mean features
  (what the encoder computes at test time), extra training rows: ``"views"`` the standardised logits of each of
  its 7 cached views (centre crop + the 6 multi-crop views); ``"subsets"`` the standardised mean logits of
  ``n_sub`` random subsets of 2-5 of the 6 multi-crop views. All rows are centred with the view-mean ``mu`` and
  weighted equally. For the text->image map ``W`` (input: the caption) the extra rows are the same input with other
  targets, which is exactly a ridge fit to the mean of the rows' unit targets (computed that way); for the
  image->caption map ``V`` they are real extra inputs, fitted with rows (image, view) weighted by the image's caption
  count and the mean caption embedding as target (exactly the per-caption least squares).
* ``ridge`` / ``caption_ridge``: the two maps' penalties; ``cap_target="mean"``: V's target is the image's
  *normalised* mean caption embedding; ``class_z``: the centred image features are also divided by each class's
  standard deviation over the training images before normalising.
* ``whiten`` (text-only data): MiniLM embeddings ``q`` are replaced, in both learned terms, by
  ``normalize(P (q - m))`` with ``m`` the mean and ``P = E diag(lambda + eps)^(-alpha/2) E^T`` the partial whitening
  of the 28,128 Multi30K English training captions (no photos): ``alpha = 0`` only centres. Ridge on whitened
  inputs is ridge with the penalty shaped by the caption manifold's principal axes (less shrinkage along the
  directions captions vary in).
* ``kernel_V`` / ``kernel_W`` (kernel ridge regression, Saunders et al. 1998, in closed form, no random features:
  at 657 images / 3,285 captions the exact solve is cheap): a Gaussian kernel ``exp(-gamma |x - y|^2)`` on the unit
  inputs, ``gamma = 1 / median`` squared distance times the given factor; targets centred (the bias is the target
  mean, not penalised). ``kernel_V`` stores the 657 training image vectors (index-time cost: 657 dot products of
  1,000-d per image); ``kernel_W`` stores the training captions (query-time only).
* ``cca``: regularised CCA (Hotelling 1936; the regularised form of Vinod 1976) between caption embeddings and their
  images' centred unit features: ``A = Cqq^-1/2 U_k``, ``B = Cvv^-1/2 V_k`` from the SVD of
  ``Cqq^-1/2 Cqv Cvv^-1/2``, covariances with ``reg * mean eigenvalue`` added to the diagonal, and the joint space
  scaled by the canonical correlations to the power ``p`` before the cosine: the similarity of Gong, Ke, Isard,
  Lazebnik (IJCV 2014), who use p = 4 (deviations: two views, not their three; linear features, not their
  approximate kernel maps).
  The CCA cosine takes the weight ``cca`` (from the learned maps' ``a`` and ``b`` if these are set to 0).
  ``cca_reg=None``: PLS instead (Wegelin 2000, "PLS-SVD": the SVD of the cross-covariance, no whitening).
* ``nce``: the learned part ``a cos(t, v) + b cos(q, u)`` of the score fine-tuned from the ridge solution with the
  symmetric InfoNCE loss of CLIP / LiT (Radford et al. 2021 eq. in fig. 3; Zhai et al. 2022), full batch (every
  training caption against every training image; an image's i2t loss averages over its captions), fixed
  temperature ``tau`` (CLIP learns it), Adam, ``nce`` steps, and an L2 pull towards the ridge initialisation
  (``wd``; L2-SP, Li et al. ICML 2018) instead of weight decay to zero, since the ridge is the prior;
  ``nce_t2i_only``: the caption -> image half of the loss only.

Test features are always the view-mean ones, as the encoder computes them; nothing here changes index-time work
except ``kernel_V`` (noted in the table's cost column).
"""
from __future__ import annotations

import numpy as np

from concept_rounds import _apply, _nz, _ridge, _softmax


def _wridge(X, Y, w, lam):
    """Weighted ridge, bias not penalised: ``argmin sum_r w_r |[x_r, 1] W - y_r|^2 + lam |W_-bias|^2``."""
    X1 = np.hstack([X, np.ones((len(X), 1))])
    Xw = X1 * w[:, None]
    A = X1.T @ Xw + lam * np.eye(X1.shape[1])
    A[-1, -1] -= lam
    return np.linalg.solve(A, Xw.T @ Y)


def _std_logits(z):
    z = np.asarray(z, np.float64)
    z = z - z.mean(-1, keepdims=True)
    return z / (z.std(-1, keepdims=True) * np.sqrt(z.shape[-1]))


def aug_rows(S, r: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    """Extra feature rows (before centring) and the image of each: see ``aug`` in the module docstring."""
    L = S.logits  # (N, 7, C): centre crop, then the 6 multi-crop views
    if r["aug"] == "views":
        return _std_logits(L).reshape(-1, L.shape[-1]), np.repeat(np.arange(len(L)), L.shape[1])
    if r["aug"] == "subsets":
        rows, idx = [], []
        for i in range(len(L)):
            for _ in range(r.get("n_sub", 8)):
                k = rng.integers(2, 6)
                rows.append(L[i, 1 + rng.choice(6, size=k, replace=False)].mean(0))
                idx.append(i)
        return _std_logits(np.stack(rows)), np.asarray(idx)
    raise ValueError(f"unknown aug {r['aug']!r}")


def whitening(bank_q: np.ndarray, alpha: float, eps: float = 1e-3):
    """(m, P): Multi30K caption mean and partial whitening ``E diag(lam + eps * mean lam)^(-alpha/2) E^T``."""
    m = bank_q.mean(0)
    lam, E = np.linalg.eigh(np.cov((bank_q - m).T))
    lam = np.maximum(lam, 0) + eps * lam.mean()
    return m, (E * lam ** (-alpha / 2)) @ E.T


class KernelRidge:
    """Gaussian-kernel ridge from unit inputs to targets; bias = the (weighted) target mean."""

    def __init__(self, X, Y, lam, gamma_scale=1.0, w=None):
        self.X = X
        w = np.ones(len(X)) if w is None else w
        self.m = (w[:, None] * Y).sum(0) / w.sum()
        d2 = self._d2(X, X)
        self.gamma = gamma_scale / np.median(d2[np.triu_indices(len(X), 1)])
        K = np.exp(-self.gamma * d2)
        # weighted kernel ridge: (diag(w) K + lam I) alpha = diag(w) (Y - m)
        self.alpha = np.linalg.solve(w[:, None] * K + lam * np.eye(len(X)), w[:, None] * (Y - self.m))

    @staticmethod
    def _d2(A, B):
        return np.maximum((A * A).sum(1)[:, None] + (B * B).sum(1)[None] - 2 * A @ B.T, 0)

    def __call__(self, X):
        return np.exp(-self.gamma * self._d2(X, self.X)) @ self.alpha + self.m


def cca_fit(Q, V, k, reg, p):
    """Regularised CCA: (mq, A, mv, B) with the joint space scaled by the canonical correlations ** p;
    ``reg=None``: PLS (SVD of the cross-covariance itself, no whitening), scaled by its singular values ** p."""
    mq, mv = Q.mean(0), V.mean(0)
    Qc, Vc = Q - mq, V - mv
    n = len(Q)

    def inv_sqrt(C):
        if reg is None:
            return np.eye(len(C))
        lam, E = np.linalg.eigh(C)
        lam = np.maximum(lam, 0) + reg * lam.mean()
        return (E * lam ** -0.5) @ E.T

    Wq, Wv = inv_sqrt(Qc.T @ Qc / n), inv_sqrt(Vc.T @ Vc / n)
    U, s, Vt = np.linalg.svd(Wq @ (Qc.T @ Vc / n) @ Wv, full_matrices=False)
    scale = (s[:k] / s[0]) ** p
    return mq, Wq @ U[:, :k] * scale, mv, Wv @ Vt[:k].T * scale


class Recipe3:
    """A fitted round-3 recipe (module docstring); ``sims(S)`` scores S's captions against S's images."""

    def __init__(self, r: dict, train: list, class_emb: np.ndarray, bank_q: np.ndarray | None = None):
        self.r, self.ce = r, class_emb
        Fs = [_std_logits(S.zm) for S in train]
        F = np.concatenate(Fs)
        self.mu = F.mean(0)
        self.sd = None
        if r.get("class_z"):
            self.sd = np.maximum((F - self.mu).std(0), 1e-6)
        off = np.cumsum([0] + [len(f) for f in Fs])
        t2i = np.concatenate([S.t2i + o for S, o in zip(train, off)])
        q_raw = np.concatenate([S.q for S in train]).astype(np.float64)
        self.wh = None
        if r.get("whiten") is not None:
            self.wh = whitening(bank_q, r["whiten"])
        q = self._text(q_raw)
        Vimg = self._img(F)  # (G, C) unit view-mean features
        G = len(F)
        ncap = np.bincount(t2i, minlength=G).astype(np.float64)
        qsum = np.zeros((G, q.shape[1]))
        np.add.at(qsum, t2i, q)
        qbar = qsum / ncap[:, None]
        if r.get("cap_target") == "mean":
            qbar = _nz(qbar)
        # rows for the maps: the view-mean row of every image, plus augmented rows
        Xv, img = Vimg, np.arange(G)
        if r.get("aug"):
            rng = np.random.default_rng(1234)
            extra, eimg = zip(*[aug_rows(S, r, rng) for S in train])
            eimg = np.concatenate([e + o for e, o in zip(eimg, off)])
            Xv, img = np.vstack([Vimg, self._img(np.concatenate(extra))]), np.concatenate([img, eimg])
        rows_per = np.bincount(img, minlength=G).astype(np.float64)
        a, b = r.get("a", 0.3), r.get("b", 0.3)
        # text -> image map: the per-caption target is the mean of its image's unit rows (exact, see docstring)
        aug_W = r.get("aug") and r.get("aug_maps", "both") == "both"
        if aug_W:
            tsum = np.zeros_like(Vimg)
            np.add.at(tsum, img, Xv)
            target_img = tsum / rows_per[:, None]
        else:
            target_img = Vimg
        self.Wt = self.kW = None
        if a:
            qw = self._wfeat(q, q_raw)
            if r.get("kernel_W"):
                self.kW = KernelRidge(qw, target_img[t2i], r.get("ridge", 1.0), r["kernel_W"])
            else:
                self.Wt = _ridge(qw, target_img[t2i], r.get("ridge", 1.0))
        self.Wi = self.kV = None
        if b:
            Xr, ir = (Xv, img) if r.get("aug") else (Vimg, np.arange(G))
            w = ncap[ir] / np.bincount(ir, minlength=G)[ir]
            if r.get("kernel_V"):
                self.kV = KernelRidge(Xr, qbar[ir], r.get("caption_ridge", 10.0), r["kernel_V"], w=w)
            else:
                self.Wi = _wridge(Xr, qbar[ir], w, r.get("caption_ridge", 10.0))
        self.cca = None
        if r.get("cca"):
            self.cca = cca_fit(q, Vimg[t2i], r.get("cca_k", 128), r.get("cca_reg", 0.1), r.get("cca_p", 4))
        if r.get("nce"):
            self._nce(q, Vimg, t2i, q_raw)

    # ---- feature maps ------------------------------------------------------------------------------------------
    def _text(self, q):
        if self.wh is None:
            return q
        m, P = self.wh
        return _nz((q - m) @ P)

    def _img(self, F):
        X = F - self.mu
        return _nz(X if self.sd is None else X / self.sd)

    def _wfeat(self, q, q_raw):
        """The text map's input: ``q`` (transformed), with ``text_zs``: and the zero-shot ``sqrt(w)`` (weighted)."""
        if not self.r.get("text_zs"):
            return q
        return np.hstack([q, self.r["text_zs"] * np.sqrt(_softmax(q_raw @ self.ce.T, 0.05))])

    def _t(self, q, q_raw):
        q = self._wfeat(q, q_raw)
        return _nz(self.kW(q) if self.kW is not None else _apply(self.Wt, q))

    def _u(self, v):
        return _nz(self.kV(v) if self.kV is not None else _apply(self.Wi, v))

    def learned(self, q_raw, v):
        """The learned part of the score (without the zero-shot term), for captions ``q_raw`` and images ``v``."""
        a, b, c = self.r.get("a", 0.3), self.r.get("b", 0.3), self.r.get("cca", 0.0)
        q = self._text(q_raw)
        s = np.zeros((len(q), len(v)))
        if a:
            s += a * self._t(q, q_raw) @ v.T
        if b:
            s += b * q @ self._u(v).T
        if c:
            mq, A, mv, B = self.cca
            s += c * _nz((q - mq) @ A) @ _nz((v - mv) @ B).T
        return s

    def sims(self, S, q=None) -> np.ndarray:
        q = S.q if q is None else q
        a, b, c = self.r.get("a", 0.3), self.r.get("b", 0.3), self.r.get("cca", 0.0)
        v = self._img(_std_logits(S.zm))
        s = (1 - a - b - c) * (np.sqrt(_softmax(q @ self.ce.T, 0.05)) @ np.sqrt(S.pm).T)
        return s + self.learned(np.asarray(q, np.float64), v)

    # ---- InfoNCE fine-tuning -----------------------------------------------------------------------------------
    def _nce(self, q, Vimg, t2i, q_raw):
        import torch

        torch.set_num_threads(1)
        r = self.r
        a, b = r.get("a", 0.3), r.get("b", 0.3)
        tau, wd, lr = r.get("tau", 0.05), r.get("wd", 1.0), r.get("lr", 1e-3)
        f32 = dict(dtype=torch.float32)  # float32 arithmetic (the ridge start is float64): twice as fast on CPU
        Q = torch.tensor(q, **f32)
        Q1 = torch.cat([Q, torch.ones(len(Q), 1, **f32)], 1)
        Vt = torch.tensor(Vimg, **f32)
        V1 = torch.cat([Vt, torch.ones(len(Vt), 1, **f32)], 1)
        W0, U0 = torch.tensor(self.Wt, **f32), torch.tensor(self.Wi, **f32)
        W, U = W0.clone().requires_grad_(True), U0.clone().requires_grad_(True)
        tgt = torch.tensor(t2i)
        onehot = torch.zeros(len(Vt), len(Q), dtype=Q.dtype)
        onehot[tgt, torch.arange(len(Q))] = 1.0
        onehot /= onehot.sum(1, keepdim=True)
        opt = torch.optim.Adam([W, U], lr=lr)
        nrm = torch.nn.functional.normalize
        for _ in range(int(r["nce"])):
            opt.zero_grad()
            s = a * nrm(Q1 @ W, dim=1) @ Vt.T + b * Q @ nrm(V1 @ U, dim=1).T
            logit = s / tau
            loss_t = torch.nn.functional.cross_entropy(logit, tgt)
            loss_i = -(onehot * torch.log_softmax(logit.T, 1)).sum(1).mean()
            reg = wd * (((W - W0) ** 2).sum() + ((U - U0) ** 2).sum())
            loss = loss_t if r.get("nce_t2i_only") else 0.5 * (loss_t + loss_i)
            (loss + reg).backward()
            opt.step()
        self.Wt, self.Wi = W.detach().double().numpy(), U.detach().double().numpy()


def protocols3(r: dict, F, C, class_emb, metrics, bank_q=None, seeds=3) -> dict:
    """``concept_rounds.protocols`` with a round-3 recipe (same splits, seeds and metrics)."""
    import concept_rounds as cr

    def recipe(rr, train, ce):
        return Recipe3(rr, train, ce, bank_q)

    return cr.protocols(r, F, C, class_emb, metrics, seeds=seeds, recipe=recipe)


def paired(res: dict, ref: dict) -> str:
    """Paired differences to the reference on the same splits: halves t2i R@1, halves i2t R@1 (mean +- std over the
    6 runs), folds t2i R@1 (over the 3 fold assignments)."""
    def d(proto, key):
        v = np.array([x[key]["R@1"] - y[key]["R@1"] for x, y in zip(res[proto], ref[proto])])
        return f"{v.mean():+.1f} ± {v.std():.1f}"

    return f"{d('halves', 't2i')} / {d('halves', 'i2t')} / {d('folds', 't2i')}"


def head() -> str:
    """Round 2's table header with the paired-difference column before the cost."""
    import concept_rounds as cr

    top, rule = cr.HEAD.split("\n")
    top = top.replace("| cost |", "| paired Δ vs round 2: halves t2i / i2t, folds t2i R@1 | cost |")
    return top + "\n" + rule[: -len("---|")] + "---:|---|"


DEFAULT = dict(a=0.3, b=0.3, ridge=1.0, caption_ridge=10.0)

#: (label, options on top of DEFAULT, index-time cost note)
ROWS3 = [
    ("round-2 default (reference)", {}, "-"),
    ("ridge W 0.3", dict(ridge=0.3), "none"),
    ("ridge W 3", dict(ridge=3.0), "none"),
    ("caption-map ridge 3", dict(caption_ridge=3.0), "none"),
    ("V target = normalised mean caption", dict(cap_target="mean"), "none"),
    ("per-class standardised image features", dict(class_z=True), "none"),
    ("view augmentation: 7 single views, both maps", dict(aug="views"), "none"),
    ("view augmentation: 7 single views, V only", dict(aug="views", aug_maps="V"), "none"),
    ("view augmentation: 8 random 2-5-view means, both maps", dict(aug="subsets", n_sub=8), "none"),
    ("view augmentation: 8 random 2-5-view means, V only", dict(aug="subsets", n_sub=8, aug_maps="V"), "none"),
    ("text: Multi30K centring (alpha 0)", dict(whiten=0.0), "none"),
    ("text: Multi30K partial whitening (alpha 0.5)", dict(whiten=0.5), "none"),
    ("kernel ridge V (RBF)", dict(kernel_V=1.0, caption_ridge=1.0), "657 x 1000 products/image"),
    ("kernel ridge W (RBF)", dict(kernel_W=1.0, ridge=1.0), "none (query side)"),
    ("CCA joint space instead of both maps (k 128, p 4)", dict(a=0.0, b=0.0, cca=0.6), "none"),
    ("PLS joint space instead of both maps (k 128, p 1)", dict(a=0.0, b=0.0, cca=0.6, cca_reg=None, cca_p=1),
     "none"),
    ("default + CCA term 0.2 (a = b = 0.2)", dict(a=0.2, b=0.2, cca=0.2), "+128-d vectors"),
    ("kernel ridge V, gamma x 2", dict(kernel_V=2.0, caption_ridge=1.0), "657 x 1000 products/image"),
    ("kernel ridge V, lambda 0.3", dict(kernel_V=1.0, caption_ridge=0.3), "657 x 1000 products/image"),
    ("kernel ridge V, gamma x 2, lambda 0.3", dict(kernel_V=2.0, caption_ridge=0.3), "657 x 1000 products/image"),
    ("kernel ridge V, gamma x 4", dict(kernel_V=4.0, caption_ridge=1.0), "657 x 1000 products/image"),
    ("kernel ridge V, gamma x 4, lambda 0.3", dict(kernel_V=4.0, caption_ridge=0.3), "657 x 1000 products/image"),
    ("text map input + zero-shot sqrt(w) (weight 1)", dict(text_zs=1.0), "none"),
    ("kernel ridge V + Multi30K centring", dict(kernel_V=1.0, caption_ridge=1.0, whiten=0.0), "657 x 1000 products/image"),
    ("kernel ridge V + Multi30K centring + ridge W 0.3", dict(kernel_V=1.0, caption_ridge=1.0, whiten=0.0, ridge=0.3),
     "657 x 1000 products/image"),
    ("kernel ridge V (lambda 0.3) + Multi30K centring + ridge W 0.3",
     dict(kernel_V=1.0, caption_ridge=0.3, whiten=0.0, ridge=0.3), "657 x 1000 products/image"),
    ("kernel ridge V (gamma x 2, lambda 0.3) + Multi30K centring + ridge W 0.3",
     dict(kernel_V=2.0, caption_ridge=0.3, whiten=0.0, ridge=0.3), "657 x 1000 products/image"),
    ("kernel ridge V (lambda 0.3), b = 0.4", dict(kernel_V=1.0, caption_ridge=0.3, b=0.4), "657 x 1000 products/image"),
    ("InfoNCE fine-tune of both maps from the ridge (100 steps)", dict(nce=100), "none"),
    ("InfoNCE fine-tune of both maps from the ridge (200 steps, L2-SP 0.1)", dict(nce=200, wd=0.1), "none"),
    ("InfoNCE fine-tune, caption -> image loss only (200 steps, L2-SP 0.1)", dict(nce=200, wd=0.1, nce_t2i_only=True),
     "none"),
]
