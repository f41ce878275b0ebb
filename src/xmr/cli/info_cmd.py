"""``xmr info``: what an index holds."""
from __future__ import annotations


from ..paths import display_path
from ._common import add_index_arg, index_path, print_json, register_command


def setup(p):
    add_index_arg(p)
    p.add_argument("--json", action="store_true")


def run(args) -> int:
    import json

    from ..index import IndexStore
    from ..index.indexer import VIDEO_SETTINGS_KEY
    from .index_cmd import backend_line

    path = index_path(args)
    with IndexStore(path, readonly=True) as st:
        st_state, record = st.backend_state("items"), st.vector_backend_record()
        size = sum(f.stat().st_size for f in st.path.iterdir() if f.is_file())
        info = {
            "index": path,
            "model": st.model_spec,
            "dim": st.dim,
            "items": st.count(),
            "segments": st.count_segments(),
            "videos_with_frames": st.count_frames(),  # X-Pool / prototype indexes: frame embeddings for re-scoring
            # frame sampling (xmr.video.FramePlan) and segment windows of the last run that indexed videos
            "video_settings": json.loads(st.get_meta(VIDEO_SETTINGS_KEY) or "null"),
            "roots": [{"root": r, "items": n} for r, n in st.roots()],
            "generation": st.generation,
            # the item vectors' backend as saved (name, options, tuned parameters; None before the first sync)
            "vector_backend": (st.backend_state("items") or {}).get("backend") or
            {**st.vector_backend_record(), "tuned": None},
            "bytes_on_disk": size,
            "skipped": [{"path": p, "reason": why} for p, why in st.skipped()],
        }
        summary = st.expert_summary()
        if summary:  # xmr index --experts: per expert, items it ran on, items with text, rows, skipped files
            info["experts"] = {n: {**{k: v for k, v in d.items() if k != "skipped"},
                                   "skipped": [{"path": p, "reason": r} for p, r in d["skipped"]]}
                               for n, d in summary.items()}
    if args.json:
        print_json(info)
        return 0
    print(f"index:  {path}\nmodel:  {info['model']} (dim {info['dim']})\nitems:  {info['items']}"
          f" ({info['segments']} video segments)")
    if info["video_settings"]:
        v = info["video_settings"]
        fr = v["frames"]
        av = v.get("av")
        if v.get("clips"):  # a whole-clip model: one vector per video from its own frames
            c = v["clips"]
            if c["segments"].startswith("none"):  # built before windows were embedded
                print(f"videos: {c['frames']} uniform frames per video (native size) embedded as one clip by the "
                      "model; no segments (no --type moment: re-index for moments)")
            else:
                print(f"videos: {c['frames']} uniform frames per video (native size) embedded as one clip by the "
                      f"model; segments {v['window']:g} s every {v['stride']:g} s, each embedded as a clip of "
                      f"{c['frames']} uniform frames inside it")
        elif av:  # an audio-visual model reads frames and sound per window itself
            print(f"videos: {av['model']}: {av['frames']} frames ({av['frame_size']} px) + {av['chunks']} audio chunks "
                  f"({av['sample_rate']} Hz, first {av['max_audio_seconds']:g} s) per span: the whole video and "
                  f"windows of {v['window']:g} s every {v['stride']:g} s")
        else:
            rule = (f"{fr['num_frames']} uniform frames per clip (the model's head looks at no more)"
                    if fr["sampling"] == "uniform"
                    else f"{fr['fps']:g} fps ({fr['min_frames']}-{fr['max_frames']} frames)")
            print(f"videos: {rule}, "
                  f"frames {fr['frame_size']} px, segments {v['window']:g} s every {v['stride']:g} s"
                  + (f", frames within {fr['snap']:g} grid steps of their targets (--frame-snap)"
                     if fr.get("snap") else ""))
    if info["videos_with_frames"]:
        print(f"frames: kept for {info['videos_with_frames']} videos (the model's head re-scores search candidates)")
    for r in info["roots"]:
        print(f"  {r['items']:6d}  {display_path(r['root'])}")
    print(f"vectors: {backend_line(st_state, record)}")
    print(f"size:   {size / 1e6:.1f} MB")
    for name, d in info.get("experts", {}).items():
        print(f"expert {name}: ran on {d['items']} items, text in {d['with_text']} ({d['rows']} rows), "
              f"{len(d['skipped'])} skipped")
        for s in d["skipped"]:
            print(f"  {display_path(s['path'])}: {s['reason']}")
    print(f"skipped files: {len(info['skipped'])}")
    for s in info["skipped"]:
        print(f"  {display_path(s['path'])}: {s['reason']}")
    return 0


register_command("info", "show what an index holds (model, counts, skipped files with reasons)", setup, run)
