"""TS2-Net as the paper trains it (token shift inside a trainable ViT) vs the frozen-feature approximation, on the
synthetic videos of ``benchmarks/video_heads.py``.

Claims checked (TS2-Net, ECCV 2022): token shift inside the ViT's last blocks captures subtle motion (here: direction
of motion and order captions, and their time-reversed twins); text-weighted frame aggregation helps when the
caption matches some frames better than others; together, an end-to-end TS2-Net beats a head on frozen tokens.

Setup (what is frozen / trained):
  * data: ``xmr synth videos`` (``--n`` 600, seed 0: 431 train / 169 test clips of 64x64, 8 uniform frames each);
  * image tower: one tiny **random** CLIP ViT (transformers ``CLIPModel``: 4 blocks, width 64, 4 heads, 32x32 input,
    8x8 patches -> 1 + 16 tokens, projection 64; seed 0), the same start for every model;
  * text tower: the word-level GRU of ``benchmarks/video_heads.py`` (trained from scratch per run, same seed rule),
    so only the video side differs between models;
  * models, trained per seed with symmetric InfoNCE (batch 32, AdamW, ``--epochs``):
      - ``frozen ts2net``: :mod:`xmr.heads.ts2net` (defaults: channel shift on the frozen output tokens, softmax-
        weighted top-4 selection, temporal transformer, meanP) on the frozen ViT's tokens (``post_layernorm`` of the
        last hidden state, width 64), lr 2e-3;
      - ``faithful``: :class:`xmr.heads.ts2net_vit.TS2NetViT` — the last 2 ViT blocks fine-tuned (lr ``--clip-lr``)
        with whole-token shift at their attention input, perturbed top-3 selection (500 draws, sigma 0.05),
        temporal transformer (1 block, 4 heads), text-weighted frames (tau 1/4); TS2-Net parts lr 2e-3;
      - ``faithful, no shift``: the same with ``shift_layers=0`` (what the shift adds);
      - ``faithful, mean frames``: the same with the frames' cosines averaged (``temperature`` 1e4; what the text
        weighting adds);
      - ``faithful, channel shift`` (run when named with ``--models``): a TSM-style shift of 1/4 of the channels each
        way instead of whole tokens (the paper's argument for whole-token shift);
      - ``faithful, hard selection`` (when named): hard top-k in training too (what the perturbed top-k adds);
      - ``fine-tuned, no TS2-Net parts`` is not run: the frozen head's own numbers are the other baseline.
  * metrics on the test split (gallery: 169 test clips; every test clip's caption a query): R@1 / R@5 (pessimistic
    ties), per caption type, twin accuracy (own clip strictly above its time-reversed twin; ties 1/2).

    python benchmarks/ts2net_vit.py [--n 600] [--epochs 30] [--seeds 0 1 2] [--out /tmp/xmr_synth_bench]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from video_heads import TYPES, WordGRU, caption_type, evaluate, tokenize  # noqa: E402

from xmr.data import load_dataset  # noqa: E402
from xmr.heads.train import train_head  # noqa: E402
from xmr.heads.ts2net_vit import TS2NetViT, TS2NetViTConfig  # noqa: E402
from xmr.synth.videos import generate_videos  # noqa: E402
from xmr.train.ts2net_vit import train_ts2net_vit  # noqa: E402
from xmr.video import item_frames  # noqa: E402

MODELS = {"frozen ts2net": {}, "faithful": {}, "faithful, no shift": {"shift_layers": 0},
          "faithful, mean frames": {"temperature": 1e4},
          "faithful, channel shift": {"shift_mode": "channels", "shift_fraction": 0.25},
          "faithful, hard selection": {"selection": "hard"}}


def tiny_clip(seed: int = 0):
    import transformers as T

    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, image_size=32,
                  patch_size=8)
    text = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=16)
    cfg = T.CLIPConfig(text_config=text, vision_config=vision, projection_dim=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T.CLIPModel(cfg).eval()
    proc = T.CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return model, proc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip-lr", type=float, default=5e-4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", default=list(MODELS)[:4], choices=list(MODELS))
    ap.add_argument("--out", default="/tmp/xmr_synth_bench")
    ap.add_argument("--json", default=None, help="write the per-query results here")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="train nothing: print the table of these --json files (e.g. one process per seed)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    manifest = Path(args.out) / "captions.jsonl"
    if not manifest.is_file():
        generate_videos(args.out, n=args.n, seed=0)
    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    ds = load_dataset(f"manifest:{manifest}")
    clip, proc = tiny_clip(0)
    pixels = torch.stack([proc(images=item_frames(it, 8, None), return_tensors="pt")["pixel_values"].float()
                          for it in ds.items])  # (N, 8, 3, 32, 32)
    with torch.no_grad():  # the frozen tower's tokens, as xmr's hf encoder gives them (encode_image_tokens)
        vm = clip.vision_model
        toks = torch.cat([vm.post_layernorm(vm(pixel_values=pixels[s: s + 64].flatten(0, 1)).last_hidden_state)
                          for s in range(0, len(pixels), 64)]).view(len(pixels), 8, 17, 64)
    caps = [it.captions[0] for it in ds.items]
    split = np.array([it.split for it in ds.items])
    vocab: dict[str, int] = {}
    ids = tokenize(caps, vocab)
    twin = np.full(len(caps), -1)
    for i in range(len(caps) - 1):  # the generator writes a clip, then its time reversal (same frames reversed)
        if rows[i]["type"] in "bc" and rows[i + 1]["type"] == rows[i]["type"] and twin[i] < 0:
            a = torch.nn.functional.normalize(toks[i, :, 0], dim=-1)  # the frozen class tokens, as video_heads.py
            b = torch.nn.functional.normalize(toks[i + 1, :, 0], dim=-1).flip(0)
            if torch.allclose(a, b, atol=5e-2):
                twin[i], twin[i + 1] = i + 1, i
    tr, te = np.where(split == "train")[0], np.where(split == "test")[0]
    te_pos = {v: k for k, v in enumerate(te)}
    te_twin = np.array([te_pos.get(twin[i], -1) if twin[i] >= 0 else -1 for i in te])
    types = np.array([caption_type(caps[i]) for i in te])
    print(f"{len(tr)} train / {len(te)} test clips, {int((te_twin >= 0).sum())} test clips with a twin; inputs in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    state0 = {k: v.clone() for k, v in clip.state_dict().items()}

    results: dict[str, list[dict]] = {m: [] for m in args.models}
    if args.merge:
        args.seeds = []
        for f in args.merge:
            for m, rs in json.loads(Path(f).read_text()).items():
                results.setdefault(m, []).extend({k: np.asarray(v) if isinstance(v, list) else v for k, v in r.items()}
                                                 for r in rs)
            args.seeds.append(f)
        args.models = [m for m in MODELS if results.get(m)]
    for m in args.models if not args.merge else ():
        for seed in args.seeds:
            tt = WordGRU(len(vocab) + 1, 64, seed)
            s0 = time.perf_counter()
            if m == "frozen ts2net":
                head = train_head(toks[tr], ids[tr], [(i, i) for i in range(len(tr))], "ts2net",
                                  {"dim": 64, "width": 64, "max_frames": 8, "num_frames": 8, "heads": 4},
                                  epochs=args.epochs, lr=args.lr, seed=seed, batch_size=32, text_tower=tt)
                with torch.no_grad():
                    sims = head.similarity(tt(ids[te]), toks[te]).numpy()
            else:
                clip.load_state_dict(state0)  # every run starts from the same random CLIP
                cfg = TS2NetViTConfig(dim=64, max_frames=8, num_frames=8, heads=4, seed=seed, **MODELS[m])
                net = TS2NetViT(clip, cfg)
                train_ts2net_vit(net, pixels[tr], ids[tr], [(i, i) for i in range(len(tr))], finetune="last:2",
                                 epochs=args.epochs, lr=args.clip_lr, head_lr=args.lr, batch_size=32, seed=seed,
                                 text_tower=tt, cache_frozen=True)  # blocks 0-1 and the embeddings stay frozen
                with torch.no_grad():
                    t = torch.nn.functional.normalize(tt(ids[te]), dim=-1)
                    frames = torch.cat([net.frame_embeddings(pixels[te[s: s + 32]]) for s in range(0, len(te), 32)])
                    assert torch.equal(net.clip.vision_model.encoder.layers[0].mlp.fc1.weight,
                                       state0["vision_model.encoder.layers.0.mlp.fc1.weight"])  # frozen indeed
                    sims = net.similarity(t, frames).numpy()
                net.remove_shift()
            ev = evaluate(sims, np.arange(len(te)), te_twin)
            ev["time"] = time.perf_counter() - s0
            results[m].append(ev)
            print(f"  {m:22s} seed {seed}: R@1 {ev['r1'].mean():.3f} R@5 {ev['r5'].mean():.3f} "
                  f"twin {np.nanmean(ev['twin']):.3f} ({ev['time']:.0f} s)", flush=True)

    def cell(m, key, mask):
        vals = [100 * np.nanmean(r[key][mask]) for r in results[m]]
        return f"{np.mean(vals):5.1f} ± {np.std(vals):4.1f}"

    runs = f"runs of {args.seeds}" if args.merge else f"seeds {args.seeds}, {args.epochs} epochs"
    print(f"\ntext->video on {len(te)} test clips, {runs} (mean ± std); total {time.perf_counter() - t0:.0f} s\n")
    hdr = "| model | all R@1 | all R@5 | " + " | ".join(f"{TYPES[t]} R@1" for t in "abc")
    hdr += " | order twin acc | motion twin acc |"
    print(hdr)
    print("|" + " --- |" * (hdr.count("|") - 1))
    for m in args.models:
        allm = np.ones(len(te), bool)
        cells = [cell(m, "r1", allm), cell(m, "r5", allm)] + [cell(m, "r1", types == t) for t in "abc"]
        cells += [cell(m, "twin", (types == t) & (te_twin >= 0)) for t in "bc"]
        print(f"| {m} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({m: [{k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                                    for k, v in r.items()} for r in rs] for m, rs in results.items()}))


if __name__ == "__main__":
    main()
