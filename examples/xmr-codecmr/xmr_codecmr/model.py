"""CodeCMR-style dual encoder, small: each side a hashed bag of tokens (log counts) through a 2-layer MLP into a
shared space, trained with a symmetric InfoNCE loss on (source, binary) pairs of the same function.

CodeCMR (Yu et al., NeurIPS 2020, "CodeCMR: Cross-Modal Retrieval For Function-Level Binary Source Code Matching")
encodes the source with a character-level CNN (DPCNN) and the binary's control-flow graph with a GNN, adds the
*integers and strings* of both sides as separate features (integer-LSTM, string-LSTM) and trains with a triplet loss
with hard negatives. Deviations here (an example plugin, CPU-sized): token bags instead of the char-CNN and the CFG
GNN (no graph; mnemonic unigrams / bigrams and operand kinds instead), the integers enter as hashed ``num:`` /
``imm:`` tokens of the same bag (CodeCMR's observation that literal integers survive compilation is what they
exploit), InfoNCE instead of the triplet loss.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch

BUCKETS = 1 << 14
_SRC_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+|<<|>>|<=|>=|==|!=|\+=|\S")
_REG = re.compile(r"^[re]?[a-d]x$|^[re]?[sd]i$|^[re]?[sb]p$|^r\d+[dwb]?$|^[a-d][lh]$|^xmm\d+$|^[sd]il$")


def _bucket(tok: str) -> int:
    return zlib.crc32(tok.encode()) % BUCKETS


def source_tokens(src: str) -> list[str]:
    toks = [f"num:{int(t)}" if t.isdigit() else t for t in _SRC_TOKEN.findall(src)]
    return toks + [f"{a} {b}" for a, b in zip(toks, toks[1:])]


def _operand(op: str) -> list[str]:
    op = op.strip()
    ints = [int(x, 16) for x in re.findall(r"0x([0-9a-f]+)", op)]
    if op.startswith("0x") and len(ints) == 1 and "[" not in op:
        return [f"imm:{ints[0]}", "imm"]
    if "[" in op:
        return ["mem"] + [f"imm:{i}" for i in ints]
    if _REG.match(op):
        return ["reg"]
    return ["other"]


def binary_tokens(instructions) -> list[str]:
    mn = [m for m, _ in instructions]
    toks = list(mn) + [f"{a} {b}" for a, b in zip(mn, mn[1:])]
    for m, ops in instructions:
        if m.startswith("j") or m == "call":
            continue  # jump targets are addresses
        kinds = [k for o in ops.split(",") if o for k in _operand(o)]
        toks += kinds + [f"{m}:{k}" for k in kinds if not k.startswith("imm:")]
    return toks


def bag(token_lists) -> np.ndarray:
    x = np.zeros((len(token_lists), BUCKETS), np.float32)
    for i, toks in enumerate(token_lists):
        for t in toks:
            x[i, _bucket(t)] += 1
    return np.log1p(x)


@dataclass(frozen=True)
class CodeCmrConfig:
    hidden: int = 256
    dim: int = 128
    seed: int = 0


class CodeCmr(torch.nn.Module):
    def __init__(self, config: CodeCmrConfig):
        super().__init__()
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.src = torch.nn.Sequential(torch.nn.Linear(BUCKETS, config.hidden), torch.nn.ReLU(),
                                           torch.nn.Linear(config.hidden, config.dim))
            self.bin = torch.nn.Sequential(torch.nn.Linear(BUCKETS, config.hidden), torch.nn.ReLU(),
                                           torch.nn.Linear(config.hidden, config.dim))
            self.logit_scale = torch.nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32))

    def encode_sources(self, x):
        return torch.nn.functional.normalize(self.src(x), dim=-1)

    def encode_binaries(self, x):
        return torch.nn.functional.normalize(self.bin(x), dim=-1)


def train(pairs, level_pairs, config: CodeCmrConfig, epochs: int = 30, batch: int = 64, lr: float = 1e-3):
    """A CodeCmr trained on ``pairs`` (CodePair) against their binaries at every level of ``level_pairs``."""
    model = CodeCmr(config)
    xs = torch.from_numpy(bag([source_tokens(p.source) for p in pairs]))
    xb = {lvl: torch.from_numpy(bag([binary_tokens(p.binaries[lvl]) for p in pairs])) for lvl in level_pairs}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng(config.seed)
    losses = []
    for _ in range(epochs):
        for lvl in level_pairs:
            order = rng.permutation(len(pairs))
            for s in range(0, len(order) - 1, batch):
                idx = torch.from_numpy(order[s : s + batch])
                if len(idx) < 2:
                    continue
                a, b = model.encode_sources(xs[idx]), model.encode_binaries(xb[lvl][idx])
                logits = model.logit_scale.exp().clamp(max=100) * a @ b.T
                target = torch.arange(len(idx))
                loss = (torch.nn.functional.cross_entropy(logits, target)
                        + torch.nn.functional.cross_entropy(logits.T, target)) / 2
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
    model.eval()
    return model, losses


def save(model: CodeCmr, directory) -> None:
    from xmr.checkpoint import save_checkpoint

    save_checkpoint(directory, "xmr-codecmr", asdict(model.config), model)


def load(directory) -> CodeCmr:
    from xmr.checkpoint import load_checkpoint
    from xmr.config import config_from_dict

    ckpt = load_checkpoint(directory, "xmr-codecmr", f"codecmr:{directory}", hint="train one with python -m "
                           "xmr_codecmr.bench --save DIR")
    model = CodeCmr(config_from_dict(CodeCmrConfig, ckpt.config))
    ckpt.load_into(model)
    return model.eval()
