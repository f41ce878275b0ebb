"""``hf:<dir or hub id>``: transformers image-text matching heads as cross-encoders.

Supported: BLIP (``BlipForImageTextRetrieval``, checkpoints such as Salesforce/blip-itm-base-coco) with its ITM
head. The score of a pair is ``itm_logit[match] - itm_logit[no match]`` (log-odds). Each distinct image goes
through the vision tower once per call; the text encoder then cross-attends to that image's cached patch
embeddings, exactly the ITM branch of ``BlipForImageTextRetrieval.forward(use_itm_head=True)``.

Weights must be local (a ``save_pretrained`` directory, or a hub id already in the Hugging Face cache); nothing is
downloaded here.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from ..encoders._device import resolve_device
from ..errors import ConfigError, ModelUnavailableError
from ..media.image import load_image
from . import RERANKERS
from .base import CrossEncoder

log = logging.getLogger(__name__)

ITM_MODEL_TYPES = ("blip",)


class HFITMReranker(CrossEncoder):
    def __init__(self, model, processor, device=None):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor

    @torch.no_grad()
    def _image_embeds(self, images) -> torch.Tensor:
        ip = self.processor.image_processor
        out = []
        for s in range(0, len(images), 16):
            px = ip([load_image(x) for x in images[s : s + 16]], return_tensors="pt")["pixel_values"]
            out.append(self.model.vision_model(pixel_values=px.to(self.device)).last_hidden_state)
        return torch.cat(out)  # (U, 1 + P, D)

    @torch.no_grad()
    def score(self, texts, images, pairs, batch_size: int = 64) -> np.ndarray:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        ut, ti = np.unique(pairs[:, 0], return_inverse=True)
        ui, ii = np.unique(pairs[:, 1], return_inverse=True)
        emb = self.image_cache.rows([images[i] for i in ui], self._image_embeds)
        tok = self.processor.tokenizer([texts[i] for i in ut], padding=True, truncation=True, return_tensors="pt")
        ids, att = tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device)
        out = np.empty(len(pairs), dtype=np.float32)
        for s in range(0, len(pairs), batch_size):
            a = torch.as_tensor(ti[s : s + batch_size], device=self.device)
            b = torch.as_tensor(ii[s : s + batch_size], device=self.device)
            img = emb[b]
            h = self.model.text_encoder(input_ids=ids[a], attention_mask=att[a], encoder_hidden_states=img,
                                        encoder_attention_mask=torch.ones(img.shape[:2], dtype=torch.long,
                                                                          device=self.device)).last_hidden_state
            logits = self.model.itm_head(h[:, 0, :]).float()  # (B, 2): [no match, match]
            out[s : s + len(a)] = (logits[:, 1] - logits[:, 0]).cpu().numpy()
        return out

    def describe(self) -> dict:
        return {**super().describe(), "model_type": self.model.config.model_type}


@RERANKERS.register("hf", help="transformers image-text matching head (BLIP ITM): hf:<dir or cached hub id>")
def _factory(arg: str, device: str | None = None) -> HFITMReranker:
    from ..encoders.hf import _backend_kwargs, _resolve_source

    src, is_local = _resolve_source(arg)
    from transformers import AutoConfig, BlipForImageTextRetrieval, BlipProcessor

    kw = {"local_files_only": True, "trust_remote_code": False}
    try:
        config = AutoConfig.from_pretrained(src, **kw)
    except OSError as e:
        raise ModelUnavailableError(
            f"hf:{arg}: not available locally ({e}). Download it where there is network (e.g. `hf download "
            f"Salesforce/blip-itm-base-coco --local-dir blip-itm`) and give the directory") from None
    if config.model_type not in ITM_MODEL_TYPES:
        raise ConfigError(f"hf:{arg} has model type {config.model_type!r}; re-ranking supports image-text matching "
                          f"heads of: {', '.join(ITM_MODEL_TYPES)} (e.g. Salesforce/blip-itm-base-coco)")
    image_kw, model_kw = _backend_kwargs()
    try:
        processor = BlipProcessor.from_pretrained(src, **kw, **image_kw)
        model = BlipForImageTextRetrieval.from_pretrained(src, **kw, **model_kw)
    except OSError as e:
        raise ModelUnavailableError(f"hf:{arg}: incomplete model directory ({e}); save it with "
                                    "model.save_pretrained(DIR) and processor.save_pretrained(DIR)") from None
    return HFITMReranker(model, processor, device=device)
