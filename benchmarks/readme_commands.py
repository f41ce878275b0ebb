"""Wall time of every command in the README's "Using it" block, as a user runs them (one process per command),
for this checkout and another one (``--baseline-src``), interleaved command by command.

Each checkout gets its own working folder (``src``/``tests`` symlinked from the repository, as tests/test_readme.py
does) and its own ``XMR_HOME``; the derived-data cache (``XMR_CACHE``, default ``~/.cache/xmr``) is shared and
warmed by a first untimed pass, so neither side pays a one-time export or class-text embedding.

    python benchmarks/readme_commands.py --baseline-src /tmp/base/src --json /tmp/readme_times.json
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- readme-test:begin -->", "<!-- readme-test:end -->"
XMR = "import sys; from xmr.cli import main; sys.exit(main(sys.argv[1:]))"


def commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text("utf-8")
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    out = []
    for line in block.splitlines():
        line = line.strip()
        if not line or line.startswith(("```", "#", ".", "source")):
            continue
        argv = shlex.split(line, comments=True)
        if argv:
            out.append(argv)
    return out


def _workdir(root: Path) -> Path:
    root.mkdir(parents=True)
    for name in ("src", "tests"):
        (root / name).symlink_to(REPO / name)
    return root


def _run(argv: list[str], cwd: Path, src: Path, home: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src.resolve()), "XMR_HOME": str(home), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled modules are cached (the warm-up writes them)
    cmd = [sys.executable, "-c", XMR, *argv[1:]] if argv[0] == "xmr" else [sys.executable, *argv[1:]]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed in {cwd}:\n{r.stderr[-2000:]}")
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-src", required=True, help="src/ folder of the code to compare with")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    srcs = {"baseline": Path(args.baseline_src), "ours": REPO / "src"}
    cmds = commands()
    with tempfile.TemporaryDirectory(prefix="xmr-readme-") as tmp:
        for name, src in srcs.items():  # warm-up pass: caches filled, files in the OS cache (not timed)
            d = _workdir(Path(tmp) / f"warm-{name}")
            for argv in cmds:
                _run(argv, d, src, d / "home")
        dirs = {name: _workdir(Path(tmp) / name) for name in srcs}
        rows = []
        for argv in cmds:
            row = {"command": " ".join(argv)}
            for name, src in srcs.items():
                row[name] = round(_run(argv, dirs[name], src, dirs[name] / "home"), 2)
            row["load_avg"] = round(os.getloadavg()[0], 1)
            rows.append(row)
            print(f"{row['baseline']:7.2f} s  {row['ours']:7.2f} s  {row['baseline'] / row['ours']:5.1f}x  "
                  f"(load {row['load_avg']})  {row['command'][:90]}", flush=True)
    tb, to = sum(r["baseline"] for r in rows), sum(r["ours"] for r in rows)
    print(f"total: baseline {tb:.1f} s, ours {to:.1f} s ({tb / to:.1f}x); slower commands: "
          f"{[r['command'][:60] for r in rows if r['ours'] > r['baseline']] or 'none'}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
