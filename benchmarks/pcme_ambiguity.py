"""PCME's and DAA's claims on a world where caption ambiguity is known: does the learned caption uncertainty grow
with ambiguity, how do R@1 and PMRP compare with the deterministic counterpart (same heads and loss, σ = 0), and
does DAA (PCME + the differentiable ASP loss, β = 1000 per direction as in the reference config) raise ASP?

Semantic relevance for DAA and ASP: :func:`xmr.synth.attributes.caption_fit` (the share of a caption's mentioned
attributes an image has).

World: :func:`xmr.synth.attributes.attribute_world` (4 attribute groups of 6/5/4/3 values; a caption mentions a
random non-empty subset of the groups; ambiguity = groups left out). Items are split into train / test; scores on
the test items are PCME's match probability (:func:`xmr.eval.match_probability`, K samples) for the probabilistic
model and the same formula on the means for the deterministic one.

    OMP_NUM_THREADS=1 python benchmarks/pcme_ambiguity.py --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from xmr.eval import asp, evaluate_sims, match_probability, pmrp
from xmr.prob import PCME, PCMEConfig
from xmr.synth.attributes import attribute_world, caption_fit

VARIANTS = {"PCME": dict(probabilistic=True), "PCME+DAA": dict(probabilistic=True, daa_beta=1000.0),
            "deterministic": dict(probabilistic=False)}


def run(seed: int, variant: str, steps: int, n_train: int, n_test: int) -> dict:
    w = attribute_world(n_train + n_test, seed=seed)
    train = w.text_to_item < n_train
    test = ~train
    torch.manual_seed(seed)
    model = PCME(PCMEConfig(image_dim=w.image_features.shape[1], text_dim=w.text_features.shape[1],
                            embed_dim=32, **VARIANTS[variant]))
    train_idx = np.flatnonzero(train)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    img = torch.from_numpy(w.image_features)
    txt = torch.from_numpy(w.text_features[train])
    t2i = torch.from_numpy(w.text_to_item[train])
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randperm(txt.shape[0], generator=gen)[:64]
        sem = torch.from_numpy(caption_fit(w, train_idx[idx.numpy()], w.text_to_item[train_idx[idx.numpy()]])
                               .T.astype(np.float32))  # (images, captions) of the batch
        out = model.loss(img[t2i[idx]], txt[idx], gen, semantic=sem)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    train_s = time.perf_counter() - t0
    test_txt = torch.from_numpy(w.text_features[test])
    test_img = img[n_train:]
    zt = model.samples(test_txt, "text", gen).numpy()
    zi = model.samples(test_img, "image", gen).numpy()
    sims = match_probability(zt, zi, float(model.a.detach()), float(model.b.detach()))
    t2i_test = w.text_to_item[test] - n_train
    res = evaluate_sims(sims, t2i_test, protocol="standard")
    pm = pmrp(sims, t2i_test, w.labels[n_train:])
    fit = caption_fit(w, np.flatnonzero(test), np.arange(n_train, n_train + n_test))
    out = {"t2i_R@1": res["t2i"]["R@1"], "i2t_R@1": res["i2t"]["R@1"], "t2i_PMRP": pm["t2i"]["PMRP"],
           "i2t_PMRP": pm["i2t"]["PMRP"], "t2i_ASP": asp(sims, fit)["ASP"], "i2t_ASP": asp(sims.T, fit.T)["ASP"],
           "train_s": train_s}
    if model.cfg.probabilistic:
        u = model.uncertainty(model.embed(test_txt, "text")[1]).numpy()
        out["spearman_uncertainty_ambiguity"] = float(spearmanr(u, w.ambiguity[test]).statistic)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--train-items", type=int, default=600)
    ap.add_argument("--test-items", type=int, default=300)
    args = ap.parse_args()
    rows = {}
    for name in VARIANTS:
        runs = [run(s, name, args.steps, args.train_items, args.test_items) for s in args.seeds]
        rows[name] = {k: (float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs])))
                      for k in runs[0]}
    print(json.dumps(rows, indent=1))
    print("\n| model | t2i R@1 | i2t R@1 | t2i PMRP | i2t PMRP | t2i ASP | i2t ASP | Spearman(σ, ambiguity) | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        f = lambda k: f"{r[k][0]:.2f} ± {r[k][1]:.2f}" if k in r else "-"  # noqa: E731
        print(f"| {name} | {f('t2i_R@1')} | {f('i2t_R@1')} | {f('t2i_PMRP')} | {f('i2t_PMRP')} | {f('t2i_ASP')} | "
              f"{f('i2t_ASP')} | {f('spearman_uncertainty_ambiguity')} | {f('train_s')} |")


if __name__ == "__main__":
    main()
