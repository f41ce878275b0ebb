"""ACP: Adaptive Cross-Modal Prototypes (Liu, Chen & Albanie, CVPR 2021, "Adaptive Cross-Modal Prototypes for
Cross-Domain Visual-Language Retrieval"): adapt a model's projection heads to an unlabelled *target* collection
(images without captions) using a captioned *source* dataset.

The paper's two ideas, as implemented here on frozen features (the heads are :class:`~xmr.encoders.trained.AdapterPair`,
so the result loads as ``trained:DIR``):

1. **Prototypes of the pretrained uni-modal features**, which the learned cross-modal embeddings must keep. The
   frozen image features of each domain and the frozen source caption features are clustered (spherical k-means,
   ``prototypes`` clusters each): ``C_src``, ``C_tgt`` (images), ``C_txt`` (captions). A feature ``x`` gets the soft
   assignment ``q(x) = softmax(cos(x, C) / tau)``. Learnable prototype heads ``P_src``, ``P_tgt``, ``P_txt`` in the
   shared space predict them from the embeddings: ``p(z) = softmax(cos(z, P) / tau)``.

   * uni-modal: ``CE(q_src(x_s), p_src(f_v(x_s))) + CE(q_tgt(x_t), p_tgt(f_v(x_t))) + CE(q_txt(t_s), p_txt(f_t(t_s)))``
   * cross-modal (the prototypes made cross-modal): a caption's embedding predicts the prototype assignment of its
     image and an image's embedding that of its caption:
     ``CE(q_src(x_s), p_src(f_t(t_s))) + CE(q_txt(t_s), p_txt(f_v(x_s)))``.
2. **Mutual information between the domains' cross-modal representations**, maximised so that what the domains
   share is kept: the target images' embeddings are assigned to the cross-modal (caption) prototypes ``P_txt``, and
   ``I = H(mean_t p_txt(f_v(x_t))) - mean_t H(p_txt(f_v(x_t)))`` (the information-maximisation form of the mutual
   information between a target image and its prototype) is maximised.

Plus the source retrieval loss: symmetric InfoNCE on the source pairs (``temperature``). Total:
``L = L_nce + w_uni L_uni + w_cross L_cross - w_mi I``.

Deviations, stated: the paper trains the full model (video/image experts, its own architectures) and estimates the
cross-domain mutual information with its own estimator; this module trains projection heads on frozen features and
uses the information-maximisation estimator above, which we could not check against the paper's equations (only its
abstract was available here). k-means runs once before training (the paper's clustering is also on the pretrained
features).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..encoders.trained import AdapterConfig, AdapterPair, save_trained
from ..errors import ConfigError


@dataclass(frozen=True)
class ACPConfig:
    prototypes: int = 16  # clusters per feature set (source images, target images, source captions)
    tau: float = 0.5  # temperature of the prototype assignments (targets and predictions)
    temperature: float = 0.05  # InfoNCE temperature on the source pairs
    w_uni: float = 1.0  # uni-modal prototype preservation
    w_cross: float = 1.0  # cross-modal prototypes
    w_mi: float = 0.1  # target mutual information (maximised)
    dim: int = 0  # output width of the heads (0: the image features' width)
    hidden: int = 256  # head bottleneck
    residual: bool = True  # residual heads (start from the frozen model; needs equal image / text widths)
    epochs: int = 30
    warmup: int = 0  # first epochs on the source pairs alone (InfoNCE) before the ACP terms join
    batch_size: int = 256
    lr: float = 1e-3
    kmeans_iters: int = 30
    seed: int = 0

    def __post_init__(self):
        if self.warmup < 0 or self.warmup >= self.epochs:
            raise ConfigError("ACP warmup must be >= 0 and < epochs")
        if self.prototypes < 2 or self.epochs < 1 or self.batch_size < 2 or self.hidden < 1 or self.kmeans_iters < 1:
            raise ConfigError("ACP needs prototypes >= 2, epochs >= 1, batch_size >= 2, hidden >= 1")
        if not (self.tau > 0 and self.temperature > 0 and self.lr > 0):
            raise ConfigError("ACP tau, temperature and lr must be > 0")
        if min(self.w_uni, self.w_cross, self.w_mi) < 0:
            raise ConfigError("ACP loss weights must be >= 0")


def spherical_kmeans(x: np.ndarray, k: int, iters: int = 30, seed: int = 0) -> np.ndarray:
    """(k, d) unit centroids of the unit rows of ``x`` (k-means++ seeding on cosine distance, Lloyd steps)."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if n < k:
        raise ConfigError(f"ACP: {n} features cannot make {k} prototypes; use --prototypes <= {n}")
    rng = np.random.default_rng(seed)
    c = [x[rng.integers(n)]]
    for _ in range(k - 1):
        d = np.clip(1 - np.max(x @ np.array(c).T, axis=1), 0, None)
        p = d / d.sum() if d.sum() > 0 else np.full(n, 1 / n)
        c.append(x[rng.choice(n, p=p)])
    c = np.array(c)
    for _ in range(iters):
        a = np.argmax(x @ c.T, axis=1)
        for j in range(k):
            m = x[a == j]
            if len(m):
                c[j] = m.sum(0)
        c /= np.linalg.norm(c, axis=1, keepdims=True).clip(1e-12)
    return c.astype(np.float32)


class ACPModel(nn.Module):
    """The heads (:class:`AdapterPair`) plus the learnable prototype heads used only in training."""

    def __init__(self, img_dim: int, txt_dim: int, config: ACPConfig):
        super().__init__()
        c = config
        out = c.dim or img_dim
        res = c.residual and img_dim == txt_dim == out
        self.heads = AdapterPair(AdapterConfig(img_dim, 0 if res else out, c.hidden, res, c.seed),
                                 AdapterConfig(txt_dim, 0 if res else out, c.hidden, res, c.seed + 1))
        g = torch.Generator().manual_seed(c.seed + 2)
        self.p_src = nn.Parameter(F.normalize(torch.randn(c.prototypes, out, generator=g), dim=-1))
        self.p_tgt = nn.Parameter(F.normalize(torch.randn(c.prototypes, out, generator=g), dim=-1))
        self.p_txt = nn.Parameter(F.normalize(torch.randn(c.prototypes, out, generator=g), dim=-1))


def _assign(x: torch.Tensor, protos: torch.Tensor, tau: float) -> torch.Tensor:
    return F.softmax(F.normalize(x, dim=-1) @ F.normalize(protos, dim=-1).T / tau, dim=-1)


def _ce(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    return -(target * torch.log(pred.clamp_min(1e-8))).sum(-1).mean()


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-8))).sum(-1)


def acp_losses(model: ACPModel, xs, ts, xt, cs, ct, ctxt, config: ACPConfig) -> dict:
    """The loss terms of one batch (see the module docstring); ``cs``/``ct``/``ctxt`` the k-means prototypes."""
    c = config
    zs, zts = model.heads(xs, ts)
    zt = model.heads.encode_image(xt)
    logits = zs @ zts.T / c.temperature
    y = torch.arange(len(zs))
    nce = 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))
    q_s, q_t, q_txt = _assign(xs, cs, c.tau), _assign(xt, ct, c.tau), _assign(ts, ctxt, c.tau)
    uni = _ce(q_s, _assign(zs, model.p_src, c.tau)) + _ce(q_t, _assign(zt, model.p_tgt, c.tau)) \
        + _ce(q_txt, _assign(zts, model.p_txt, c.tau))
    cross = _ce(q_s, _assign(zts, model.p_src, c.tau)) + _ce(q_txt, _assign(zs, model.p_txt, c.tau))
    p = _assign(zt, model.p_txt, c.tau)
    mi = _entropy(p.mean(0)) - _entropy(p).mean()
    total = nce + c.w_uni * uni + c.w_cross * cross - c.w_mi * mi
    return {"total": total, "nce": nce, "uni": uni, "cross": cross, "mi": mi}


def adapt(src_images: np.ndarray, src_texts: np.ndarray, text_to_image: np.ndarray, tgt_images: np.ndarray,
          config: ACPConfig | None = None, source_only: bool = False, log=None) -> AdapterPair:
    """Train the heads. ``src_images`` (N, D_img) and ``src_texts`` (T, D_txt) frozen L2-normalised features with
    ``text_to_image`` (T,) pairing them; ``tgt_images`` (M, D_img) the unlabelled target collection's features.
    ``source_only``: the baseline (InfoNCE on the source pairs alone, same schedule). Deterministic for a seed."""
    c = config or ACPConfig()
    si, st, ti = (np.asarray(a, np.float32) for a in (src_images, src_texts, tgt_images))
    t2i = np.asarray(text_to_image, np.int64)
    if len(st) != len(t2i) or len(si) < 2 or len(ti) < 2 or (len(t2i) and (t2i.min() < 0 or t2i.max() >= len(si))):
        raise ConfigError("ACP needs >= 2 source images, >= 2 target images and one source image per caption")
    if si.shape[1] != ti.shape[1]:
        raise ConfigError(f"source images are {si.shape[1]}-d but the target collection's are {ti.shape[1]}-d: "
                          f"both must come from the same frozen model")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(c.seed)
        model = ACPModel(si.shape[1], st.shape[1], c)
        cs = torch.from_numpy(spherical_kmeans(si, c.prototypes, c.kmeans_iters, c.seed))
        ct = torch.from_numpy(spherical_kmeans(ti, c.prototypes, c.kmeans_iters, c.seed + 1))
        ctxt = torch.from_numpy(spherical_kmeans(st, c.prototypes, c.kmeans_iters, c.seed + 2))
        opt = torch.optim.Adam(model.parameters(), lr=c.lr)
        rng = np.random.default_rng(c.seed)
        SI, ST, TI = torch.from_numpy(si), torch.from_numpy(st), torch.from_numpy(ti)
        model.train()
        for epoch in range(c.epochs):
            order = rng.permutation(len(st))
            for b in range(0, len(order), c.batch_size):
                idx = order[b : b + c.batch_size]
                if len(idx) < 2:
                    continue
                xs, ts = SI[t2i[idx]], ST[idx]
                xt = TI[rng.integers(0, len(ti), size=len(idx))]
                if source_only or epoch < c.warmup:
                    zs, zts = model.heads(xs, ts)
                    logits = zs @ zts.T / c.temperature
                    y = torch.arange(len(zs))
                    loss = 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))
                    parts = {"total": loss}
                else:
                    parts = acp_losses(model, xs, ts, xt, cs, ct, ctxt, c)
                opt.zero_grad()
                parts["total"].backward()
                opt.step()
            if log is not None:
                log(epoch, {k: float(v) for k, v in parts.items()})
    model.heads.eval()
    return model.heads


def save_adapted(directory, heads: AdapterPair, base: str, config: ACPConfig, provenance: dict):
    """Write ``trained:DIR`` (adapter mode on ``base``)."""
    return save_trained(directory, "adapter", {"base": base, **heads.configs()}, heads,
                        {"method": "acp", "acp": asdict(config), **provenance})


__all__ = ["ACPConfig", "ACPModel", "acp_losses", "adapt", "save_adapted", "spherical_kmeans"]
