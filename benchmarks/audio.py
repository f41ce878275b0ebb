"""Audio benchmark: clips where the caption is about the sound, the picture, or both (``xmr.synth.sounds``).

    python benchmarks/audio.py --n 160 --epochs 60 --no-eclipse          # parts 1-2 as in docs/experts.md
    python benchmarks/audio.py --no-eao --no-expert --epochs 30 --long-n 160   # part 3 as in docs/experts.md
    python benchmarks/audio.py --seeds 0 --n 80 --no-expert --no-eclipse        # a quick look

Per seed: ``--n`` synthetic clips (2 s, one coloured shape, two of five sound events), split train / test by the
generator (about half each).

1. **Everything at Once** (:mod:`xmr.heads.eao`): trained on the train clips' ``both`` captions with the
   combinatorial loss (``--epochs``), then on the test clips: queries are the ``sound`` captions and, separately,
   the ``picture`` captions; the gallery is embedded from video tokens only, audio tokens only, or both fused
   (one forward pass over the concatenated tokens). R@1/5/10 where a hit is any test clip whose caption of that kind
   equals the query (several clips share a caption: 20 sound captions, 12 picture captions); each distinct caption
   is one query.
2. **The audio expert in the index** (skip with ``--no-expert``; model ``concept``, the bundled audio tower): the test clips
   written as MP4 (H.264 + AAC), ``xmr index --experts audio``; the same sound queries through ``xmr search``'s
   pipeline: ``visual`` (the first stage: frames through ``concept``), ``audio`` (best audio row's score alone),
   ``fused (vista)`` (the experts stage's default). The bundled tower was trained on seed-0 sounds of
   ``xmr.synth.sounds`` (the same generator, other random draws).

3. **ECLIPSE** (skip with ``--no-eclipse``; :func:`eclipse_seed`): 12 s clips where each colour is visible 1 s
   with its sound; dense video-only vs sparse video-only vs sparse frames + audio; R@1/5/10, block MACs, and the
   PyAV decode time of 16 frames vs 4 frames + the audio track.

Prints markdown tables (mean +- std over seeds) and writes JSON with ``--out``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

KS = (1, 5, 10)


def ranks_of(scores: np.ndarray, positives: list[set]) -> np.ndarray:
    """0-based rank of each query's best-ranked positive (ties broken against the query)."""
    out = []
    for q, pos in enumerate(positives):
        best = max(scores[q, j] for j in pos)
        out.append(int((scores[q] > best).sum()))
    return np.array(out)


def recalls(ranks: np.ndarray) -> dict:
    return {f"R@{k}": float((ranks < k).mean()) for k in KS}


def eao_seed(seed: int, n: int, epochs: int) -> dict:
    import torch

    from xmr.heads.eao import audio_tokens, frame_tokens
    from xmr.synth.sounds import SynthSoundConfig, generate_sound_clips
    from xmr.train.eao import train_eao

    torch.set_num_threads(1)
    clips = generate_sound_clips(SynthSoundConfig(n=n, seed=100 + seed))
    V = np.stack([frame_tokens(c["frames"]) for c in clips])
    A = np.stack([audio_tokens(c["audio"]) for c in clips])
    tr = [i for i, c in enumerate(clips) if c["split"] == "train"]
    te = [i for i, c in enumerate(clips) if c["split"] == "test"]
    model, rec = train_eao([clips[i]["both"] for i in tr], V[tr], A[tr], epochs=epochs, seed=seed)
    with torch.no_grad():
        gal = {"video only": model.encode(video=V[te]), "audio only": model.encode(audio=A[te]),
               "fused (video+audio)": model.encode(video=V[te], audio=A[te])}
        out = {"train_seconds": rec["seconds"], "final_loss": rec["loss"][-1]}
        for kind in ("sound", "picture"):
            queries = sorted({clips[i][kind] for i in te})
            pos = [{j for j, i in enumerate(te) if clips[i][kind] == q} for q in queries]
            T = model.encode(text=queries)
            out[kind] = {name: recalls(ranks_of((T @ G.T).numpy(), pos)) for name, G in gal.items()}
            out[kind]["queries"] = len(queries)
    return out


def expert_seed(seed: int, n: int, workdir: Path) -> dict:
    """The test clips as MP4 files, indexed with concept + the bundled audio tower; sound queries scored visual /
    audio / fused from the index's stored vectors, exactly as the experts stage does (vista: (s_v + s_a) /
    ||v + t_a||, t_a the best audio row)."""
    from xmr.cli import main as xmr
    from xmr.encoders import create_encoder
    from xmr.index import IndexStore
    from xmr.synth.sounds import SynthSoundConfig, generate_sound_clips, write_av_clip

    clips = [c for c in generate_sound_clips(SynthSoundConfig(n=n, seed=100 + seed)) if c["split"] == "test"]
    vids = workdir / f"seed{seed}" / "videos"
    vids.mkdir(parents=True, exist_ok=True)
    for c in clips:
        write_av_clip(vids / f"{c['id']}.mp4", c["frames"], 8, c["audio"])
    idx = workdir / f"seed{seed}" / "idx"
    t0 = time.perf_counter()
    assert xmr(["-q", "index", str(vids), "--index", str(idx), "--model", "concept", "--experts", "audio"]) == 0
    index_s = time.perf_counter() - t0
    with IndexStore(idx) as st:
        dim = st.dim
        items = {Path(r.path).stem: r.id for r in st.items_under(str(vids.absolute())).values()}
        order = [c["id"] for c in clips]
        Vm = np.asarray(st.item_vectors([items[k] for k in order]), np.float32)
        rows = st.db.execute("SELECT item_id, vector FROM expert_text WHERE expert='audio'").fetchall()
    R = {}
    for iid, v in rows:
        R.setdefault(iid, []).append(np.frombuffer(v, np.float32))
    Rm = [np.stack(R[items[k]]) for k in order]
    queries = sorted({c["sound"] for c in clips})
    pos = [{j for j, c in enumerate(clips) if c["sound"] == q} for q in queries]
    Q = np.asarray(create_encoder("concept").encode_text(queries, show_progress=False), np.float32)
    s_v = Q @ Vm.T
    best = [r[np.argmax(Q @ r.T, axis=1)] for r in Rm]  # (queries, dim) best row per item
    s_a = np.stack([(Q * b).sum(1) for b in best], 1)
    norm = np.stack([np.linalg.norm(Vm[j][None, :] + best[j], axis=1) for j in range(len(order))], 1)
    modes = {"visual": s_v, "audio": s_a, "fused (vista)": (s_v + s_a) / norm}
    out = {m: recalls(ranks_of(sc, pos)) for m, sc in modes.items()}
    out.update(index_seconds=round(index_s, 1), clips=len(clips), queries=len(queries), dim=dim)
    return out


def eclipse_seed(seed: int, n: int, epochs: int, workdir: Path, dense: int = 16, sparse: int = 4,
                 chunks: int = 24, cost_clips: int = 8) -> dict:
    """Long clips (3 segments x 4 s; each colour visible 1 s with its sound): dense video-only (``dense`` frames),
    sparse video-only (``sparse`` frames) and ECLIPSE (``sparse`` frames + ``chunks`` audio tokens); R@1/5/10 of the
    captions, MACs of the block, and the decode cost of each input measured with PyAV on ``cost_clips`` test clips
    written at 224 px, 24 fps (each 4 fps frame shown 6 times; H.264 with a keyframe every 4 s) + AAC 16 kHz."""
    import torch

    from xmr.heads.eao import audio_tokens, frame_tokens
    from xmr.heads.eclipse import EclipseConfig, eclipse_macs
    from xmr.media.audio import load_audio
    from xmr.media.video import sample_frames
    from xmr.synth.sounds import generate_long_clips, write_av_clip
    from xmr.train.eao import train_eclipse

    torch.set_num_threads(1)
    clips = generate_long_clips(n, seed=200 + seed)
    Vd = np.stack([frame_tokens(c["frames"], side=8, max_tokens=dense) for c in clips])
    Vs = np.stack([frame_tokens(c["frames"], side=8, max_tokens=sparse) for c in clips])
    A = np.stack([audio_tokens(c["audio"], chunks=chunks) for c in clips])
    tr = [i for i, c in enumerate(clips) if c["split"] == "train"]
    te = [i for i, c in enumerate(clips) if c["split"] == "test"]
    texts = [clips[i]["caption"] for i in tr]
    queries = sorted({clips[i]["caption"] for i in te})
    pos = [{j for j, i in enumerate(te) if clips[i]["caption"] == q} for q in queries]
    out = {"queries": len(queries), "test_clips": len(te)}
    for name, V, Au in ((f"dense video ({dense} frames)", Vd, None), (f"sparse video ({sparse} frames)", Vs, None),
                        (f"ECLIPSE ({sparse} frames + audio)", Vs, A)):
        model, rec = train_eclipse(texts, V[tr], None if Au is None else Au[tr], epochs=epochs, seed=seed)
        with torch.no_grad():
            G = model.encode(video=V[te], audio=None if Au is None else Au[te])
            T = model.encode(text=queries)
        out[name] = recalls(ranks_of((T @ G.T).numpy(), pos))
        out[name]["macs"] = eclipse_macs(EclipseConfig(video_dim=V.shape[2], audio_dim=A.shape[2], vocab=["x"]),
                                         V.shape[1], chunks, Au is not None)
        out[name]["train_seconds"] = rec["seconds"]
    d = workdir / f"long{seed}"
    d.mkdir(parents=True, exist_ok=True)
    files = []
    for i in te[:cost_clips]:
        big = np.repeat(np.repeat(np.repeat(clips[i]["frames"], 7, axis=1), 7, axis=2), 6, axis=0)  # 224 px, 24 fps
        write_av_clip(d / f"{clips[i]['id']}.mp4", big, 24, clips[i]["audio"], gop=96)
        files.append(d / f"{clips[i]['id']}.mp4")
    cost = {}
    for label, fn in (("dense frames", lambda f: sample_frames(f, dense)),
                      ("sparse frames", lambda f: sample_frames(f, sparse)),
                      ("audio", lambda f: load_audio(f, 16000))):
        t0 = time.perf_counter()
        for f in files:
            fn(f)
        cost[label] = (time.perf_counter() - t0) / len(files)
    out["decode_ms"] = {k: round(1000 * v, 2) for k, v in cost.items()}
    out["decode_ratio"] = (cost["sparse frames"] + cost["audio"]) / cost["dense frames"]
    return out


def summarise(runs: list[dict], path: list[str]) -> str:
    vals = []
    for r in runs:
        v = r
        for p in path:
            v = v[p]
        vals.append(v)
    m = statistics.mean(vals)
    s = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{m:.3f} +- {s:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=240, help="clips per seed (about half are test)")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--no-eao", action="store_true", help="skip part 1 (Everything at Once)")
    ap.add_argument("--no-expert", action="store_true", help="skip part 2 (indexing with concept)")
    ap.add_argument("--no-eclipse", action="store_true", help="skip part 3 (ECLIPSE on long clips)")
    ap.add_argument("--long-n", type=int, default=200, help="long clips per seed for part 3")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    runs = [] if args.no_eao else [eao_seed(s, args.n, args.epochs) for s in args.seeds]
    lines = []
    if runs:
        lines = [f"## Everything at Once on synthetic clips with sound (n={args.n} per seed, ~half test, "
                 f"{args.epochs} epochs, seeds {args.seeds})", ""]
        for kind in ("sound", "picture"):
            lines += [f"### queries about the {kind} ({runs[0][kind]['queries']} distinct captions in seed "
                      f"{args.seeds[0]})", "", "| gallery | R@1 | R@5 | R@10 |", "| --- | --- | --- | --- |"]
            for g in ("video only", "audio only", "fused (video+audio)"):
                lines.append(f"| {g} | " + " | ".join(summarise(runs, [kind, g, f"R@{k}"]) for k in KS) + " |")
            lines.append("")
        lines.append(f"EAO train seconds per seed: {summarise(runs, ['train_seconds'])}")
    expert = []
    if not args.no_expert:
        with tempfile.TemporaryDirectory() as d:
            expert = [expert_seed(s, args.n, Path(d)) for s in args.seeds]
        lines += ["", f"## The audio expert in an index (model concept, bundled tower; sound queries, "
                      f"{expert[0]['clips']} test clips and {expert[0]['queries']} queries in seed {args.seeds[0]})",
                  "", "| scores | R@1 | R@5 | R@10 |", "| --- | --- | --- | --- |"]
        for m in ("visual", "audio", "fused (vista)"):
            lines.append(f"| {m} | " + " | ".join(summarise(expert, [m, f"R@{k}"]) for k in KS) + " |")
        lines.append(f"\nindexing seconds per seed (concept frames + audio): {summarise(expert, ['index_seconds'])}")
    ecl = []
    if not args.no_eclipse:
        with tempfile.TemporaryDirectory() as d:
            ecl = [eclipse_seed(s, args.long_n, args.epochs, Path(d)) for s in args.seeds]
        names = [k for k in ecl[0] if isinstance(ecl[0][k], dict) and "R@1" in ecl[0][k]]
        lines += ["", f"## ECLIPSE on long clips (12 s; {args.long_n} per seed, {ecl[0]['test_clips']} test clips, "
                      f"{ecl[0]['queries']} captions in seed {args.seeds[0]})", "",
                  "| model | R@1 | R@5 | R@10 | block MACs |", "| --- | --- | --- | --- | --- |"]
        for nm in names:
            lines.append(f"| {nm} | " + " | ".join(summarise(ecl, [nm, f"R@{k}"]) for k in KS)
                         + f" | {ecl[0][nm]['macs']:,} |")
        lines += ["", "decode ms per clip (224 px 24 fps H.264 + AAC, PyAV): " + ", ".join(
            f"{k} {summarise(ecl, ['decode_ms', k])}" for k in ecl[0]["decode_ms"]),
            f"(sparse frames + audio) / dense frames decode time: {summarise(ecl, ['decode_ratio'])}"]
    lines.append(f"total {time.perf_counter() - t0:.0f} s")
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "eao": runs, "expert": expert, "eclipse": ecl}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
