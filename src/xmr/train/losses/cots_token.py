"""COTS' token-level interaction for models with token outputs (the ``tiny`` dual encoder in ``--mode full``).

Lu et al., "COTS", CVPR 2022 (token-level interaction, masked vision-language modelling, MVLM; read from the
abstract and public summaries, the full text was not reachable here): each
stream predicts its own masked tokens from its unmasked tokens **and the global feature of the paired item of the
other modality**, with no cross-stream attention network:

* masked language modelling (MLM): ``L_mlm = -mean_{masked i} log p(w_i | w_unmasked, v_glob)``, a share
  ``mlm_ratio`` of a caption's tokens masked;
* masked vision modelling (MVM): ``L_mvm = -mean_{masked j} log p(z_j | x_unmasked, t_glob)``, a share
  ``mvm_ratio`` of an image's patches masked, ``z_j`` the patch's discrete visual token.

Each decoder is a two-layer MLP over ``[h_i ; g]``: the stream's output token at the masked position concatenated
with the other modality's (L2-normalised, trainable) global embedding, so the gradient reaches both towers (our
reading: the summaries say only that no cross-stream network is used, not how the heads combine the two).

Deviations, plainly:

* visual tokens: the paper tokenises images with a pre-trained discrete VAE (DALL-E's); none can be downloaded here,
  so the visual "vocabulary" is a k-means codebook (``mvm_codes`` codes) of the raw normalised patch pixels, fitted
  (seeded, 10 Lloyd iterations) on the patches of the run's first batch and kept in the checkpoint (under
  ``accelerate launch`` each process fits its own from its own first batch);
* masking: the tiny vocabulary has no ``[MASK]`` token, so a masked byte is replaced by the PAD id (whose embedding
  is otherwise unused: PAD positions follow EOS and the text tower is causal) and a masked patch's pixels are set to
  0 (the normalisation mean), not replaced by a learned mask embedding;
* context: the tiny text tower is causal, so a masked byte is predicted from the bytes before it (and the image),
  not from both sides as in BERT-style MLM.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError


def _decoder(width: int, dim: int, out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width + dim, 2 * width), nn.GELU(), nn.Linear(2 * width, out))


def patchify(pixels: torch.Tensor, p: int) -> torch.Tensor:
    """(B, 3, S, S) -> (B, P, 3 * p * p) patches in the ViT's row-major order."""
    b, c, s, _ = pixels.shape
    x = pixels.view(b, c, s // p, p, s // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (s // p) ** 2, c * p * p)


def kmeans(x: torch.Tensor, k: int, seed: int, iters: int = 10) -> torch.Tensor:
    """(N, D) -> (k, D) centres: k distinct rows drawn with ``seed``, then Lloyd iterations (an empty cluster keeps
    its centre)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(x.shape[0], generator=g)[:k].to(x.device)
    c = x[idx].clone()
    for _ in range(iters):
        a = torch.cdist(x, c).argmin(dim=1)
        sums = torch.zeros_like(c).index_add_(0, a, x)
        n = torch.bincount(a, minlength=c.shape[0]).unsqueeze(1).to(x.dtype)
        c = torch.where(n > 0, sums / n.clamp(min=1), c)
    return c


class TokenLevel(nn.Module):
    """MLM + MVM decoders and the visual codebook for one tiny dual encoder (``model.net``)."""

    def __init__(self, model, dim: int, mvm_codes: int, seed: int):
        super().__init__()
        net = getattr(model, "net", None)
        if not (hasattr(net, "encode_text_tokens") and hasattr(net, "encode_image_tokens")
                and hasattr(getattr(net, "config", None), "patch_size")):
            raise ConfigError("cots: the token-level terms (mlm_weight / mvm_weight > 0) need a model with token "
                              "outputs: train --mode full --model tiny (adapters on frozen features have no tokens)")
        c = net.config
        from ...encoders.tiny import BOS, EOS, PAD

        self.bos, self.eos, self.pad = BOS, EOS, PAD
        self.patch = c.patch_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 53)
            self.mlm_head = _decoder(c.width, dim, 256)  # predicts the masked byte
            self.mvm_head = _decoder(c.width, dim, mvm_codes)  # predicts the masked patch's visual token
        self.register_buffer("codebook", torch.zeros(mvm_codes, 3 * c.patch_size ** 2))
        self.register_buffer("codebook_ready", torch.zeros((), dtype=torch.bool))
        self.seed = seed

    def visual_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, P) codebook index of every patch (the codebook is fitted on the first call)."""
        patches = patchify(pixels.float(), self.patch)
        flat = patches.reshape(-1, patches.shape[-1])
        if not bool(self.codebook_ready):
            k = self.codebook.shape[0]
            if flat.shape[0] < k:
                raise ConfigError(f"cots: mvm_codes {k} is more than the {flat.shape[0]} patches of the first batch; "
                                  "lower mvm_codes")
            self.codebook.copy_(kmeans(flat, k, self.seed + 71))
            self.codebook_ready.fill_(True)
        return torch.cdist(flat, self.codebook).argmin(dim=1).view(patches.shape[:2])

    def mlm(self, net, ids: torch.Tensor, img_glob: torch.Tensor, ratio: float,
            keep: torch.Tensor | None = None) -> torch.Tensor:
        """Masked-byte cross-entropy of captions ``ids`` (B, L) given the paired images' embeddings (B, d)."""
        real = (ids != self.bos) & (ids != self.eos) & (ids != self.pad)
        if keep is not None:
            real = real & keep.view(-1, 1)
        mask = real & (torch.rand(ids.shape, device=ids.device) < ratio)
        if not bool(mask.any()):  # at least one masked byte: the first real one
            first = real.float().argmax(dim=1)
            mask = torch.zeros_like(real)
            rows = real.any(dim=1)
            mask[rows, first[rows]] = True
        if not bool(mask.any()):
            return img_glob.sum() * 0.0
        h = net.encode_text_tokens(ids.masked_fill(mask, self.pad))  # (B, L, W)
        b_idx = mask.nonzero(as_tuple=True)[0]
        logits = self.mlm_head(torch.cat([h[mask], img_glob[b_idx].to(h.dtype)], dim=1))
        return F.cross_entropy(logits.float(), ids[mask])

    def mvm(self, net, pixels: torch.Tensor, txt_glob: torch.Tensor, ratio: float,
            keep: torch.Tensor | None = None) -> torch.Tensor:
        """Masked-patch cross-entropy over the visual codebook of images (B, 3, S, S) given their captions' (B, d)."""
        with torch.no_grad():
            target = self.visual_tokens(pixels)  # (B, P)
        b, n = target.shape
        mask = torch.rand((b, n), device=pixels.device) < ratio
        mask[torch.arange(b, device=pixels.device), torch.randint(0, n, (b,), device=pixels.device)] = True
        if keep is not None:
            mask = mask & keep.view(-1, 1)
            if not bool(mask.any()):
                return txt_glob.sum() * 0.0
        p, s = self.patch, pixels.shape[-1]
        pix_mask = mask.view(b, 1, s // p, 1, s // p, 1).expand(b, 1, s // p, p, s // p, p).reshape(b, 1, s, s)
        h = net.encode_image_tokens(pixels.masked_fill(pix_mask, 0.0))[:, 1:]  # (B, P, W), class token dropped
        b_idx = mask.nonzero(as_tuple=True)[0]
        logits = self.mvm_head(torch.cat([h[mask], txt_glob[b_idx].to(h.dtype)], dim=1))
        return F.cross_entropy(logits.float(), target[mask])


__all__ = ["TokenLevel", "kmeans", "patchify"]
