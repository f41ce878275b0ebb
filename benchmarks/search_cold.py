"""Wall time of one ``xmr search`` from a cold process, against ``python -c "import numpy"`` and against another
checkout ("today's" code), interleaved in one run.

Builds an index of the bundled sample images (default model) unless ``--index`` is given, then runs each command
``--rounds`` times in turn (numpy, ours, baseline, numpy, ours, ...), so load from other jobs falls on all of them
alike. Reports the median and min wall time, peak RSS (wait4) and, from one extra probe run per checkout, which
heavy libraries the search imported.

    python benchmarks/search_cold.py --baseline-src /tmp/base/src
    python benchmarks/search_cold.py --rounds 9 --json /tmp/search_cold.json
    python benchmarks/search_cold.py --rescore-variants   # + `--rescore none`, + a cache without warmed bank stats

``--rescore-variants`` adds two commands of our code: the same search with ``--rescore none`` (the default model's
QB-Norm off), and the default search with a fresh ``XMR_CACHE`` each run (links to the ONNX exports and class
embeddings, but no querybank statistics and no MiniLM fingerprint memo): the first search after an index change
that ``xmr index`` did not warm.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "xmr" / "assets" / "samples"
XMR = "import sys; from xmr.cli import main; sys.exit(main(sys.argv[1:]))"
HEAVY = ("torch", "transformers", "sentence_transformers", "sklearn", "scipy", "onnxruntime", "faiss", "tokenizers",
         "av", "PIL")
PROBE = ("import sys, io, contextlib\nfrom xmr.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
         "    main(sys.argv[1:])\nprint(' '.join(m for m in %r if m in sys.modules))" % (HEAVY,))


def _env(src: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src.resolve()), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled modules are cached (the warm-up writes them)
    return env


def _timed(cmd: list[str], env: dict) -> tuple[float, int]:
    """(wall seconds, peak RSS MiB) of one process, via wait4."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode()
    p.stderr.close()
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed ({p.returncode}):\n{err[-2000:]}")
    return wall, ru.ru_maxrss // 1024


def _fresh_cache(folder: Path) -> Path:
    """An XMR_CACHE with the real one's ONNX exports and class embeddings linked in, and nothing else."""
    real = Path(os.environ.get("XMR_CACHE") or Path.home() / ".cache" / "xmr").expanduser()
    folder.mkdir(parents=True)
    for sub in ("onnx", "concept"):
        if (real / sub).is_dir():
            (folder / sub).symlink_to(real / sub)
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-src", help="src/ folder of the code to compare with")
    ap.add_argument("--index", help="existing index (default: the bundled samples, indexed once with our code)")
    ap.add_argument("--query", default="a cat lying on a sofa")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("--rescore-variants", action="store_true",
                    help="also time --rescore none and a search whose querybank statistics are not cached")
    args = ap.parse_args()
    ours = REPO / "src"
    tmp = Path(tempfile.mkdtemp(prefix="xmr-search-cold-"))
    try:
        index = args.index
        if index is None:
            photos, index = tmp / "photos", str(tmp / "index")
            shutil.copytree(SAMPLES, photos, ignore=shutil.ignore_patterns("*.json", "*.md"))
            subprocess.run([sys.executable, "-c", XMR, "-q", "index", str(photos), "--index", index], check=True,
                           env=_env(ours))
        search = ["search", args.query, "--index", index, "-k", "10"]
        cmds = {"import numpy": ([sys.executable, "-c", "import numpy"], _env(ours)),
                "xmr search (ours)": ([sys.executable, "-c", XMR, *search], _env(ours))}
        if args.baseline_src:
            cmds["xmr search (baseline)"] = ([sys.executable, "-c", XMR, *search], _env(Path(args.baseline_src)))
        fresh: set[str] = set()
        if args.rescore_variants:
            cmds["--rescore none (ours)"] = ([sys.executable, "-c", XMR, *search, "--rescore", "none"], _env(ours))
            cmds["stats not warmed (ours)"] = ([sys.executable, "-c", XMR, *search], _env(ours))
            fresh.add("stats not warmed (ours)")
        for cmd, env in cmds.values():  # warm the OS file cache and the model caches (ONNX export, class texts)
            _timed(cmd, env)
        res: dict[str, dict] = {k: {"wall_s": [], "rss_mb": []} for k in cmds}
        for r in range(args.rounds):
            for k, (cmd, env) in cmds.items():
                if k in fresh:
                    env = {**env, "XMR_CACHE": str(_fresh_cache(tmp / f"cache{r}"))}
                w, m = _timed(cmd, env)
                res[k]["wall_s"].append(round(w, 3))
                res[k]["rss_mb"].append(m)
        for k, (cmd, env) in cmds.items():
            if k.startswith("xmr"):
                out = subprocess.run([sys.executable, "-c", PROBE, *search], env=env, capture_output=True, text=True)
                res[k]["heavy_modules"] = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        load = os.getloadavg()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = statistics.median(res["import numpy"]["wall_s"])
    print(f"{args.rounds} interleaved rounds, {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / "
          f"{load[2]:.1f}")
    for k, r in res.items():
        med = statistics.median(r["wall_s"])
        line = (f"  {k:22s} median {med:6.2f} s  min {min(r['wall_s']):6.2f} s  ({med / base:5.1f}x numpy)  "
                f"peak RSS {max(r['rss_mb'])} MB")
        if "heavy_modules" in r:
            line += f"  imports: {r['heavy_modules'] or '-'}"
        print(line)
    if "xmr search (baseline)" in res:
        a = statistics.median(res["xmr search (baseline)"]["wall_s"])
        b = statistics.median(res["xmr search (ours)"]["wall_s"])
        print(f"  ours vs baseline: {a / b:.1f}x faster")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": args.rounds, "load_avg": load, "results": res}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
