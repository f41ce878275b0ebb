"""A stand-in for the open_clip API (the real package needs torchvision, which this environment lacks): enough of
it for xmr's ``openclip:`` wrapper to build, encode and validate arch/tag names. Used by test_encoders_hf.py and by
the encoder contract in test_contracts.py when open_clip itself is not installed."""
from __future__ import annotations

import numpy as np


def make_fake_open_clip():
    import types

    import torch

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.t = torch.nn.Embedding(10, 8)
            self.i = torch.nn.Linear(3, 8)

        def encode_text(self, tokens):
            return self.t(tokens).mean(1)

        def encode_image(self, x):
            return self.i(x.mean((2, 3)))

    mod = types.ModuleType("open_clip")
    mod.calls = []
    mod.list_models = lambda: ["ViT-B-32", "ViT-B-16"]
    mod.list_pretrained_tags_by_model = lambda arch: ["openai", "laion2b_s34b_b79k"]
    mod.get_pretrained_cfg = lambda arch, tag: (
        {"hf_hub": "laion/CLIP-ViT-B-32-laion2B-s34B-b79K/"} if tag.startswith("laion") else {"url": "https://x/y.pt"}
    )

    def create(arch, pretrained=None, device=None):
        mod.calls.append((arch, pretrained))
        to_tensor = lambda im: torch.from_numpy(np.asarray(im.resize((8, 8)), np.float32).transpose(2, 0, 1) / 255)
        return Model(), None, to_tensor

    mod.create_model_and_transforms = create
    mod.get_tokenizer = lambda arch: (lambda texts: torch.tensor([[len(t) % 10, 1, 2] for t in texts]))
    return mod
