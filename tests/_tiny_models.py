"""Tiny random-initialised transformers dual encoders, saved like real checkpoints, built offline.

Each builder writes ``config.json`` + ``model.safetensors`` + tokenizer files + ``preprocessor_config.json`` into a
directory, exactly what ``model.save_pretrained(d); processor.save_pretrained(d)`` produces for a hub model, so
``create_encoder("hf:" + d)`` exercises the real loading path. Tokenizers are built in memory (no vocab download):

* CLIP-style byte-level BPE (``CLIPTokenizer``) with the 2 x 256 byte symbols and no merges: every text encodes;
* a character ``BertTokenizer`` (ALIGN, Chinese-CLIP);
* a Unigram ``XLMRobertaTokenizer`` over characters (AltCLIP).

SigLIP's real tokenizer is sentencepiece-based (needs the ``sentencepiece`` package), so the tiny SigLIP uses the
byte-level CLIP tokenizer: what matters for the test is the SigLIP text policy (max_length padding, no mask).
"""
from __future__ import annotations

import string
from pathlib import Path

import torch

WIDTH = 32  # hidden size of both towers
IMAGE = 32  # image side
PATCH = 8  # ViT patch side
CONTEXT = 16  # text positions


def _byte_chars() -> list[str]:
    """GPT-2/CLIP byte -> printable unicode table (256 symbols)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def clip_tokenizer(context: int = CONTEXT):
    from transformers import CLIPTokenizer

    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=context)


def bert_tokenizer(context: int = CONTEXT):
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation) + ["##" + c for c in string.ascii_lowercase]
    return BertTokenizer(vocab={t: i for i, t in enumerate(specials + chars)}, model_max_length=context)


def xlmr_tokenizer(context: int = CONTEXT):
    from transformers import XLMRobertaTokenizer

    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁", -2.0)] + [(c, -3.0) for c in string.ascii_letters + string.digits + string.punctuation]
    pieces += [("<mask>", 0.0)]
    return XLMRobertaTokenizer(vocab=pieces, model_max_length=context)


def _vit(**kw) -> dict:
    return dict(hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=2, num_attention_heads=2,
                image_size=IMAGE, patch_size=PATCH, **kw)


def _text(tok, **kw) -> dict:
    ids = {f"{k}_token_id": getattr(tok, f"{k}_token_id") for k in ("pad", "bos", "eos")}
    return dict(vocab_size=len(tok), hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=CONTEXT, **{k: v for k, v in ids.items() if v is not None},
                **kw)


def build(model_type: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Save a tiny ``model_type`` checkpoint (model + tokenizer + image processor) into ``out_dir``."""
    import transformers as T

    out = Path(out_dir)
    square = {"height": IMAGE, "width": IMAGE}
    if model_type == "clip":
        tok = clip_tokenizer()
        cfg = T.CLIPConfig(text_config=_text(tok), vision_config=_vit(), projection_dim=16)
        cls, ip = T.CLIPModel, T.CLIPImageProcessorPil(size={"shortest_edge": IMAGE}, crop_size=square)
    elif model_type == "siglip":
        tok = clip_tokenizer()
        cfg = T.SiglipConfig(text_config=_text(tok, projection_size=WIDTH), vision_config=_vit())
        cls, ip = T.SiglipModel, T.SiglipImageProcessorPil(size=square)
    elif model_type == "siglip2":
        tok = clip_tokenizer()
        vis = _vit(num_patches=16)
        vis.pop("image_size")
        cfg = T.Siglip2Config(text_config=_text(tok, projection_size=WIDTH), vision_config=vis)
        cls, ip = T.Siglip2Model, T.Siglip2ImageProcessorPil(patch_size=PATCH, max_num_patches=16)
    elif model_type == "chinese_clip":
        tok = bert_tokenizer()
        cfg = T.ChineseCLIPConfig(text_config=_text(tok), vision_config=_vit(), projection_dim=16)
        cls, ip = T.ChineseCLIPModel, T.ChineseCLIPImageProcessorPil(size={"shortest_edge": IMAGE}, crop_size=square)
    elif model_type == "altclip":
        tok = xlmr_tokenizer()
        text = _text(tok, project_dim=WIDTH)
        text["max_position_embeddings"] = CONTEXT + 2  # RoBERTa positions start after padding_idx
        cfg = T.AltCLIPConfig(text_config=text, vision_config=_vit(), projection_dim=16)
        cls, ip = T.AltCLIPModel, T.CLIPImageProcessorPil(size={"shortest_edge": IMAGE}, crop_size=square)
    elif model_type == "align":
        tok = bert_tokenizer()
        vision = dict(image_size=IMAGE, width_coefficient=0.1, depth_coefficient=0.1, hidden_dim=64,
                      initializer_range=0.5)  # 0.02 makes a 8-channel EfficientNet output ~1e-30
        # ALIGN's image embedding is the pooled EfficientNet output (width 32 here), unprojected
        cfg = T.AlignConfig(text_config=_text(tok), vision_config=vision, projection_dim=32)
        cls = T.AlignModel
        ip = T.EfficientNetImageProcessorPil(size=square, crop_size=square, do_center_crop=False)
    else:
        raise ValueError(f"no tiny builder for {model_type!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(cfg).eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    ip.save_pretrained(out)
    return out


MODEL_TYPES = ("clip", "siglip", "siglip2", "chinese_clip", "altclip", "align")
