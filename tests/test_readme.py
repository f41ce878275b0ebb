"""The README's "Using it" block runs as written, in order, on a fresh clone after quickstart.

The block between ``<!-- readme-test:begin -->`` and ``<!-- readme-test:end -->`` is extracted and each command is
run in order in a temporary working directory that looks like the repository root (``src`` and ``tests`` are
symlinks to the real ones), with its own ``XMR_HOME`` and ``HF_HUB_OFFLINE=1``. Every command must exit 0.

All commands run in ONE fresh Python process, each through ``xmr.cli.main(argv)`` exactly as the ``xmr`` console
script calls it (``python -c CODE`` lines are exec'd there): separate processes would load the default model once
per command (~10 s each on 2 cores)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from conftest import REPO

README = REPO / "README.md"
BEGIN, END = "<!-- readme-test:begin -->", "<!-- readme-test:end -->"
SUBCOMMANDS = {"index", "search", "info", "models", "synth", "train", "train-head", "train-compose", "train-reranker",
               "eval", "demo", "serve", "adapt", "train-moments"}

# Runs in the child process: reads [[argv...], ...] from stdin, runs them in order, stops at the first failure.
DRIVER = r"""
import json, sys, time, traceback
from xmr.cli import main
t0 = time.monotonic()
for i, argv in enumerate(json.load(sys.stdin)):
    print(f"### [{i}] {time.monotonic() - t0:.1f}s {' '.join(argv)}", flush=True)
    if argv[0] in (".", "source"):
        continue  # activating the venv: this process already is the venv's python
    try:
        if argv[0] == "xmr":
            rc = main(argv[1:])
        elif argv[0] == "python" and argv[1] == "-c" and len(argv) == 3:
            exec(compile(argv[2], "<readme>", "exec"), {"__name__": "__main__"})
            rc = 0
        else:
            print(f"unsupported README command: {argv}")
            rc = 99
    except SystemExit as e:  # argparse errors and explicit exits
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        rc = 98
    sys.stdout.flush(); sys.stderr.flush()
    if rc:
        print(f"### FAILED [{i}] rc={rc}", flush=True)
        sys.exit(100 + i)
print(f"### ALL OK {time.monotonic() - t0:.1f}s", flush=True)
"""


def readme_commands() -> list[list[str]]:
    """The runnable block's commands, as argv lists (comments dropped; one command per line)."""
    text = README.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1, f"README.md needs exactly one {BEGIN} ... {END} block"
    block = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    lines = block.splitlines()
    assert lines[0].startswith("```") and lines[-1] == "```", "the runnable block must be one fenced code block"
    cmds = []
    for line in lines[1:-1]:
        assert not line.rstrip().endswith("\\"), f"one command per line in the runnable block: {line!r}"
        argv = shlex.split(line, comments=True)
        if argv:
            cmds.append(argv)
    return cmds


def test_readme_block_is_well_formed():
    cmds = readme_commands()
    assert len(cmds) >= 10
    for argv in cmds:
        assert argv[0] in ("xmr", "python", ".", "source"), f"unsupported command in the README block: {argv}"
        if argv[0] == "xmr":
            assert argv[1] in SUBCOMMANDS, f"unknown xmr subcommand: {argv}"
            assert argv[1] != "serve", "xmr serve never returns: keep it in the 'needs your data' block"


def test_readme_using_it_block_runs_in_order(tmp_path):
    pytest.importorskip("av", reason="the README's video lines need PyAV (pip install 'xmr[video]')")
    cmds = readme_commands()
    work = tmp_path / "clone"
    work.mkdir()
    for name in ("src", "tests"):  # the README's paths are relative to the repository root
        (work / name).symlink_to(REPO / name, target_is_directory=True)
    env = dict(os.environ, XMR_HOME=str(tmp_path / "xmr_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("XMR_INDEX", None)
    proc = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(cmds), cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + "\n" + proc.stderr
    assert proc.returncode == 0, f"README command failed (exit {proc.returncode}):\n{out[-6000:]}"
    assert "### ALL OK" in proc.stdout
    # the lines that make files made them, where the README says
    assert (work / "synth" / "captions.jsonl").is_file()
    assert (work / "heads" / "xp").is_dir() and (work / "xp-index").is_dir()
    assert (tmp_path / "xmr_home" / "index").is_dir()
