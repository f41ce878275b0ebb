"""A language's own WordPiece tokenizer (trained with HF ``tokenizers``) and the start of its embedding table.

The normaliser lower-cases like the English MiniLM tokenizer but keeps accents (they carry meaning in German, French
and Czech: "schön", "été", "město"); the pre-tokeniser and the ``[CLS] ... [SEP]`` template are BERT's, so the frozen
tower sees sequences of the form it was trained on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_wordpiece(texts: Iterable[str], vocab_size: int, max_length: int) -> str:
    """A WordPiece tokenizer trained on ``texts``; returns its JSON (``tokenizer.json``). ``[PAD]`` has id 0."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from tokenizers.trainers import WordPieceTrainer

    tok = Tokenizer(WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), min_frequency=2,
                               show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls),
                                                                                                 ("[SEP]", sep)])
    tok.enable_truncation(max_length)
    return tok.to_str()


def initial_embeddings(tokenizer_json: str, english_dir: Path, english_emb: np.ndarray, vocab_size: int) -> np.ndarray:
    """(vocab_size, width): each new token's start = the mean of the frozen English word embeddings of the English
    WordPiece pieces of its surface form (``##ung`` -> pieces of "ung"); specials map to the English specials. Rows
    past the trained vocabulary (a small corpus may give fewer tokens than asked) stay at the English ``[UNK]``."""
    from tokenizers import Tokenizer

    new = Tokenizer.from_str(tokenizer_json)
    en = Tokenizer.from_file(str(Path(english_dir) / "tokenizer.json"))
    en.no_truncation()
    en.no_padding()
    unk = en.token_to_id("[UNK]")
    out = np.tile(english_emb[unk], (vocab_size, 1)).astype(np.float32)
    for token, i in new.get_vocab().items():
        if i >= vocab_size:
            continue
        if token in SPECIALS:
            j = en.token_to_id(token)
            out[i] = english_emb[j if j is not None else unk]
            continue
        surface = token[2:] if token.startswith("##") else token
        ids = [t for t in en.encode(surface, add_special_tokens=False).ids]
        if ids:
            out[i] = english_emb[ids].mean(axis=0)
    return out


def factorise(table: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Best rank-r approximation ``table ~ A @ B`` (truncated SVD): A (V, r), B (r, width)."""
    u, s, vt = np.linalg.svd(table.astype(np.float64), full_matrices=False)
    r = min(rank, len(s))
    a = np.zeros((table.shape[0], rank))
    b = np.zeros((rank, table.shape[1]))
    a[:, :r] = u[:, :r] * s[:r]
    b[:r] = vt[:r]
    return a.astype(np.float32), b.astype(np.float32)
