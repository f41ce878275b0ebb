"""Source <-> binary pairs of the same C functions: random functions from statement templates, compiled with gcc at
-O0 and -O2 (``-c``, one object per level), disassembled with objdump; symbol names are removed from both sides
(each function is shown as ``func`` and objdump's ``<name+off>`` annotations are dropped), so a pair cannot be matched
by its name."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OPS = ("+", "-", "*", "^", "|", "&")
CMPS = ("<", ">", "<=", ">=", "==", "!=")


@dataclass
class CodePair:
    name: str  # f<k> (never shown to the encoders)
    source: str  # the function's C source, renamed to ``func``
    binaries: dict  # opt level ("O0", "O2") -> list of (mnemonic, operands) instructions


def _const(rng) -> int:
    return int(rng.choice([rng.integers(2, 16), rng.integers(16, 256), rng.integers(256, 70000)]))


def _stmt(rng, params: list[str], depth: int = 0) -> str:
    p = params[int(rng.integers(len(params)))]
    k = int(rng.integers(6 if depth == 0 else 4))
    op, c = OPS[int(rng.integers(len(OPS)))], _const(rng)
    if k == 0:
        return f"s = s {op} {c};"
    if k == 1:
        return f"s = s {op} ({p} {OPS[int(rng.integers(3))]} {c});"
    if k == 2:
        return f"s = (s << {int(rng.integers(1, 8))}) {op} {p};"
    if k == 3:
        return f"s = s {op} {p} / {int(rng.integers(2, 50))};"
    if k == 4:
        cmp = CMPS[int(rng.integers(len(CMPS)))]
        return f"if ({p} {cmp} {c}) {{ {_stmt(rng, params, 1)} }} else {{ {_stmt(rng, params, 1)} }}"
    return f"for (int i = 0; i < {int(rng.integers(2, 40))}; i++) {{ s += i * {_const(rng)} {op} {p}; }}"


def random_function(rng, name: str) -> str:
    params = [f"{x}" for x in ("a", "b", "c")[: int(rng.integers(1, 4))]]
    body = " ".join(_stmt(rng, params) for _ in range(int(rng.integers(2, 6))))
    return f"int {name}({', '.join('int ' + p for p in params)}) {{ int s = {_const(rng)}; {body} return s; }}"


_LINE = re.compile(r"^\s*[0-9a-f]+:\s+(\S+)\s*(.*)$")
_HEAD = re.compile(r"^[0-9a-f]+ <([^>]+)>:$")


def disassemble(obj: Path) -> dict[str, list[tuple[str, str]]]:
    """{function: [(mnemonic, operands)]} of an object file (intel syntax, ``<...>`` annotations removed)."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-M", "intel", str(obj)], capture_output=True,
                         text=True, check=True).stdout
    funcs: dict[str, list] = {}
    cur = None
    for line in out.splitlines():
        m = _HEAD.match(line.strip())
        if m:
            cur = funcs.setdefault(m.group(1), [])
            continue
        m = _LINE.match(line)
        if m and cur is not None:
            ops = re.sub(r"<[^>]*>", "", m.group(2)).strip()
            cur.append((m.group(1), ops))
    return funcs


def make_pairs(n: int, seed: int, levels=("O0", "O2")) -> list[CodePair]:
    """``n`` random functions compiled at each level. RuntimeError if gcc / objdump are missing."""
    for tool in ("gcc", "objdump"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed; the CodeCMR example compiles C functions with gcc and "
                               f"disassembles them with objdump (apt-get install gcc binutils)")
    rng = np.random.default_rng(seed)
    names = [f"f{k}" for k in range(n)]
    sources = {nm: random_function(rng, nm) for nm in names}
    bins: dict[str, dict] = {nm: {} for nm in names}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "funcs.c"
        src.write_text("\n".join(sources.values()) + "\n")
        for lvl in levels:
            obj = Path(tmp) / f"funcs-{lvl}.o"
            subprocess.run(["gcc", f"-{lvl}", "-fno-inline", "-ffunction-sections", "-c", str(src), "-o", str(obj)],
                           check=True, capture_output=True)
            for nm, ins in disassemble(obj).items():
                if nm in bins:
                    bins[nm][lvl] = ins
    return [CodePair(nm, re.sub(rf"\b{nm}\b", "func", sources[nm]), bins[nm]) for nm in names
            if all(lvl in bins[nm] for lvl in levels)]
