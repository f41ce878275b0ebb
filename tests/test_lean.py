"""LEAN / LINAS (xmr.heads.lean): the student looks only at its few frames, the linguistic association reads only
real support captions, distillation pulls the student onto the teacher, and the synthetic set's extra captions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xmr.errors import ConfigError
from xmr.heads import create_head, load_head
from xmr.heads.lean import (LeanTrainConfig, LinguisticAssociation, distill_student, support_sets, train_teacher,
                            uniform_indices)


def _linear(d: int, seed: int) -> nn.Linear:
    """A text tower initialised from its own seed (not the global RNG, which earlier tests move)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(d, d)


def _toy(n_videos=24, t=8, d=16, caps=2, seed=0):
    """Frames (N, T, D) whose content differs per video; ``caps`` noisy caption embeddings per video, each seeing
    a different half of the frames (complementary captions)."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(n_videos, t, d, generator=g)
    texts, pairs = [], []
    for v in range(n_videos):
        for c in range(caps):
            part = frames[v, c * t // caps: (c + 1) * t // caps].mean(0)
            texts.append(part + 0.3 * torch.randn(d, generator=g))
            pairs.append((len(texts) - 1, v))
    return frames, torch.stack(texts), pairs


def test_uniform_indices_are_frame_plan_centres():
    assert uniform_indices(16, 4).tolist() == [2, 6, 10, 14]  # FramePlan.uniform(4) on a 16-frame clip
    assert uniform_indices(16, 1).tolist() == [8] and uniform_indices(3, 8).tolist() == [0, 1, 2]


def test_lean_head_only_looks_at_its_frames():
    head = create_head("lean", dim=16, max_frames=4, num_frames=4, heads=2).eval()
    x = torch.randn(2, 16, 16)
    with torch.no_grad():
        base = head.embed_video(x)
        other = x.clone()
        other[:, [0, 1, 3, 5, 15]] = torch.randn(2, 5, 16)  # not among frames 2, 6, 10, 14
        np.testing.assert_allclose(head.embed_video(other), base, atol=1e-6)
        moved = x.clone()
        moved[:, 6] += 1.0
        assert (head.embed_video(moved) - base).abs().max() > 1e-3
        np.testing.assert_allclose(head.embed_video(x[:, [2, 6, 10, 14]]), base, atol=1e-6)  # = decoding only those


def test_linguistic_association_ignores_masked_support_and_adds_a_convex_mix():
    assoc = LinguisticAssociation(8, seed=0)
    c = torch.randn(3, 8)
    s = torch.randn(3, 4, 8)
    mask = torch.tensor([[True, True, False, False], [True, False, False, False], [True, True, True, True]])
    out = assoc(c, s, mask)
    s2 = s.clone()
    s2[~mask] = 1e3  # padding values must not matter
    torch.testing.assert_close(assoc(c, s2, mask), out)
    torch.testing.assert_close(out[1], c[1] + s[1, 0])  # one real support caption: weight 1
    mix = out[2] - c[2]  # a convex combination of the support rows: inside their bounding box
    assert torch.all(mix <= s[2].max(0).values + 1e-6) and torch.all(mix >= s[2].min(0).values - 1e-6)


def test_support_sets_hold_the_videos_own_captions():
    by_video = [np.array([0, 1, 2]), np.array([3]), np.array([4, 5, 6, 7, 8])]
    idx, mask = support_sets(by_video, np.array([0, 1, 2]), size=4, rng=np.random.default_rng(0))
    assert idx.shape == mask.shape == (3, 4)
    assert sorted(idx[0][mask[0]]) == [0, 1, 2] and idx[1][mask[1]].tolist() == [3]
    assert mask[2].all() and len(set(idx[2])) == 4 and set(idx[2]) <= {4, 5, 6, 7, 8}  # sampled, no repeats


def test_distillation_pulls_the_student_onto_the_teacher(tmp_path):
    frames, texts, pairs = _toy()
    cfg = LeanTrainConfig(teacher_frames=8, student_frames=2, support_size=2, epochs=30, lr=5e-3, batch_size=8)
    teacher = train_teacher(frames, texts, pairs, cfg=cfg, head_cfg={"heads": 2})
    assert not teacher.training
    q = np.arange(0, len(texts), 2)
    with torch.no_grad():
        t_t = torch.nn.functional.normalize(
            teacher.text(texts, q, np.stack([q, q + 1], 1), np.ones((len(q), 2), bool)), dim=-1)
        v_t = teacher.video(frames)

    def gap(student, tower):  # squared distances to the teacher's text and video embeddings
        with torch.no_grad():
            t_s = torch.nn.functional.normalize(tower(texts[q]), dim=-1)
            v_s = student.embed_video(frames)
            return float(((t_s - t_t) ** 2).sum(-1).mean()), float(((v_s - v_t) ** 2).sum(-1).mean())

    steps = []
    tower = _linear(16, seed=0)
    student = distill_student(frames, texts, pairs, teacher, tower, cfg, head_cfg={"heads": 2}, on_step=steps.append)
    assert student.name == "lean" and student.config.num_frames == 2 and not student.training
    assert set(steps[0]) == {"loss", "retrieval", "embedding", "similarity"}
    plain_tower = _linear(16, seed=0)  # the same student trained on the retrieval loss alone (no teacher terms)
    plain = distill_student(frames, texts, pairs, teacher, plain_tower,
                            LeanTrainConfig(**{**cfg.__dict__, "alpha": 0.0, "beta": 0.0}), head_cfg={"heads": 2})
    (text_d, video_d), (text_p, video_p) = gap(student, tower), gap(plain, plain_tower)
    # measured over 5 tower initialisations: video 0.67-0.76 vs 1.20-1.27, text 0.98-1.29 vs 1.46-2.01
    assert video_d < 0.75 * video_p and text_d < text_p
    student.save(tmp_path / "lean")  # a trained student is an ordinary saved head
    again = load_head(tmp_path / "lean")
    with torch.no_grad():
        torch.testing.assert_close(again.embed_video(frames), student.embed_video(frames))


def test_teacher_uses_the_support_captions():
    # each caption sees half the video: the teacher scores its positives higher with both captions than with one
    frames, texts, pairs = _toy(seed=1)
    cfg = LeanTrainConfig(teacher_frames=8, support_size=2, epochs=30, lr=5e-3, batch_size=8, seed=1)
    teacher = train_teacher(frames, texts, pairs, cfg=cfg, head_cfg={"heads": 2})
    q = np.arange(0, len(texts), 2)  # first caption of each video
    with torch.no_grad():
        v = teacher.video(frames)
        both = torch.nn.functional.normalize(
            teacher.text(texts, q, np.stack([q, q + 1], 1), np.ones((len(q), 2), bool)), dim=-1)
        alone = torch.nn.functional.normalize(teacher.text(texts, q, q[:, None], np.ones((len(q), 1), bool)), dim=-1)
        r_both = ((both @ v.T).argmax(1) == torch.arange(len(q))).float().mean()
        r_alone = ((alone @ v.T).argmax(1) == torch.arange(len(q))).float().mean()
    assert r_both > r_alone


def test_adaptive_distillation_weights_and_training():
    from xmr.heads.lean import AdaptiveWeights

    w = AdaptiveWeights()
    torch.testing.assert_close(w(4).sum(0), torch.ones(4))  # a distribution over each column
    torch.testing.assert_close(w(4), torch.full((4, 4), 0.25))  # a = b = 1 at start: uniform
    with torch.no_grad():
        w.a.fill_(30.0)
    torch.testing.assert_close(w(4), torch.eye(4), atol=1e-6, rtol=0)  # a >> b: the diag variant
    frames, texts, pairs = _toy()
    cfg = LeanTrainConfig(teacher_frames=8, student_frames=2, support_size=2, epochs=10, lr=5e-3, batch_size=8,
                          similarity="adapt")
    teacher = train_teacher(frames, texts, pairs, cfg=cfg, head_cfg={"heads": 2})
    steps = []
    distill_student(frames, texts, pairs, teacher, _linear(16, seed=0), cfg, head_cfg={"heads": 2},
                    on_step=steps.append)
    assert steps[0]["positive_weight"] == pytest.approx(1 / 8, abs=0.02)
    assert abs(steps[-1]["positive_weight"] - 1 / 8) > 0.02  # the weights are learned
    with pytest.raises(ConfigError, match="similarity"):
        LeanTrainConfig(similarity="svd")


def test_plain_head_training_refuses_lean():
    from xmr.heads.train import train_head

    frames, texts, pairs = _toy(n_videos=4)
    with pytest.raises(ConfigError, match="distillation"):
        train_head(frames, texts, pairs, "lean", {"dim": 16, "heads": 2})
    with pytest.raises(ConfigError, match="distillation"):
        train_head(frames, texts, pairs, create_head("lean", dim=16, heads=2))


def test_bad_training_settings_are_refused():
    with pytest.raises(ConfigError, match="alpha"):
        LeanTrainConfig(alpha=-1.0)
    with pytest.raises(ConfigError, match="student_frames"):
        LeanTrainConfig(student_frames=0)
    frames, texts, _ = _toy(n_videos=2)
    with pytest.raises(ConfigError, match="at least 2 videos"):
        train_teacher(frames, texts, [(0, 0)], cfg=LeanTrainConfig(epochs=1, teacher_frames=8))


def test_synthetic_clips_with_complementary_captions(tmp_path):
    pytest.importorskip("av", reason="writing clips needs PyAV (pip install 'xmr[video]')")
    from xmr.synth.videos import SynthVideoConfig, generate_clips, generate_videos

    one = generate_clips(SynthVideoConfig(n=9, seed=2, frames=8))
    four = generate_clips(SynthVideoConfig(n=9, seed=2, frames=8, captions=4))
    for a, b in zip(one, four):
        assert a["captions"] == [a["caption"]] == [b["captions"][0]]  # the first caption is the usual one
        np.testing.assert_array_equal(a["frames"], b["frames"])
        assert len(set(b["captions"])) == 4
    twins = [(x, y) for x, y in zip(four, four[1:]) if x["type"] == y["type"] in "bc"]
    assert twins and all(set(x["captions"]).isdisjoint(y["captions"]) for x, y in twins)  # reversal changes them all
    from xmr.data import load_dataset

    ds = load_dataset(f"manifest:{generate_videos(tmp_path / 's', n=3, seed=0, frames=8, captions=3)}")
    assert [len(it.captions) for it in ds.items] == [3, 3, 3]
    with pytest.raises(ConfigError, match="captions"):
        SynthVideoConfig(captions=5)


def test_train_lean_refuses_trainer_owned_options():
    from xmr.heads.lean import train_lean

    frames, texts, pairs = _toy(n_videos=4)
    with pytest.raises(ConfigError, match="num_frames"):
        train_lean(frames, texts, pairs, LeanTrainConfig(epochs=1, teacher_frames=8), {"num_frames": 2})
    with pytest.raises(ConfigError, match=">= 16 frames"):
        train_lean(frames, texts, pairs, LeanTrainConfig(epochs=1))  # 8 frames given, teacher wants 16


def test_cli_trains_lean_usable_as_video_head(tmp_path, capsys):
    """`xmr train-head --head lean`: teacher + student trained from a manifest, the student saved, then used by
    `xmr eval` as video:tiny+lean@DIR (which decodes the student's frames only)."""
    pytest.importorskip("av", reason="decoding clips needs PyAV (pip install 'xmr[video]')")
    import json

    from xmr.cli import main
    from xmr.heads.lean import LeanHead
    from xmr.synth.videos import generate_videos

    manifest = generate_videos(tmp_path / "s", n=6, seed=1, frames=8, captions=3)
    out = tmp_path / "lean"
    argv = ["-q", "train-head", "--dataset", f"manifest:{manifest}", "--split", "all", "--encoder", "tiny",
            "--head", "lean", "--frames", "2", "--teacher-frames", "4", "--epochs", "2", "--out", str(out),
            "--config", '{"layers": 1, "heads": 2}']
    assert main(argv) == 0
    assert f"video:tiny+lean@{out}" in capsys.readouterr().out
    head = load_head(out)
    assert isinstance(head, LeanHead) and head.config.num_frames == 2 and head.config.layers == 1
    prov = head.provenance
    assert prov["frames"]["num_frames"] == 2 and prov["teacher_frames"]["num_frames"] == 4
    assert prov["distillation"]["support_size"] == 4 and prov["videos"] == 6 and prov["captions"] == 18
    assert main(["-q", "eval", "--dataset", f"manifest:{manifest}", "--model", f"video:tiny+lean@{out}",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["fingerprint"]["video"]["frames"] == 2 and res["fingerprint"]["video"]["head"] == "lean"
    assert 0 <= res["t2i"]["R@1"] <= 100
    # same seed, same data: the same weights (training is deterministic)
    assert main([*argv[:-4], "--out", str(tmp_path / "again"), *argv[-2:]]) == 0
    again = load_head(tmp_path / "again")
    for k, v in head.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


@pytest.mark.parametrize("extra, match", [(["--teacher-frames", "6"], "multiple of --frames"),
                                          (["--support-size", "0"], "support_size"),
                                          (["--epochs", "0"], "epochs")])
def test_cli_lean_refuses_bad_settings(tmp_path, capsys, extra, match):
    pytest.importorskip("av", reason="decoding clips needs PyAV (pip install 'xmr[video]')")
    from xmr.cli import main
    from xmr.synth.videos import generate_videos

    manifest = generate_videos(tmp_path / "s", n=2, seed=1, frames=8)
    assert main(["-q", "train-head", "--dataset", f"manifest:{manifest}", "--split", "all", "--head", "lean",
                 "--frames", "4", "--out", str(tmp_path / "o"), *extra]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_lean_options_refused_for_other_heads(tmp_path, capsys):
    from xmr.cli import main

    assert main(["-q", "train-head", "--dataset", "manifest:x.jsonl", "--head", "mean", "--out", str(tmp_path / "o"),
                 "--teacher-frames", "8"]) == 2
    assert "only apply to --head lean" in capsys.readouterr().err


# ---- index frame plan: only the student's frames are decoded ------------------------------------------------------
def test_index_decodes_only_the_students_frames(tmp_path, tiny_encoder, monkeypatch, capsys):
    """``xmr index --model video:tiny+lean@DIR`` decodes the student's ``num_frames`` uniform frames of each clip
    (6 s at 10 fps, 2 frames: the centres of two halves, t = 1.5 s and 4.5 s, frames 15 and 45), not the index's
    fps grid (8 frames for this clip, which ``video:tiny+mean`` still decodes); the video vector is the student's
    embedding of exactly those frames; the plan is recorded and shown by ``xmr info``."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _video_clips import frame_index, make_clip

    from xmr.cli import main
    from xmr.encoders import create_encoder
    from xmr.index import IndexStore
    from xmr.index.indexer import VIDEO_SETTINGS_KEY
    from xmr.media.video import VideoReader

    pytest.importorskip("av")
    media = tmp_path / "media"
    media.mkdir()
    make_clip(media / "a.mp4", n_frames=60, fps=10, size=(128, 48))
    head = create_head("lean", dim=tiny_encoder.dim, max_frames=2, num_frames=2, heads=2).eval()
    head.save(tmp_path / "student")
    decoded: list[int] = []
    real = VideoReader.frames_at

    def spy(self, ts, **kw):
        for t, arr in real(self, ts, **kw):
            decoded.append(frame_index(arr))
            yield t, arr

    monkeypatch.setattr(VideoReader, "frames_at", spy)
    spec = f"video:tiny+lean@{tmp_path / 'student'}"
    assert main(["-q", "index", str(media), "--index", str(tmp_path / "idx"), "--model", spec]) == 0
    assert decoded == [15, 45]
    with IndexStore(tmp_path / "idx") as st:
        frames = json.loads(st.get_meta(VIDEO_SETTINGS_KEY))["frames"]
        assert frames == {"sampling": "uniform", "num_frames": 2, "frame_size": 336}
    enc = create_encoder(spec)
    from xmr.video.embed import VideoIndexConfig, embed_video

    emb = embed_video(media / "a.mp4", enc, VideoIndexConfig())
    assert emb.num_frames == 2
    with VideoReader(media / "a.mp4") as r:
        imgs = [arr for _, arr in real(r, np.array([1.5, 4.5]), size=336)]
    from PIL import Image

    feats = enc.encode_frames([Image.fromarray(a) for a in imgs])
    with torch.no_grad():
        want = head.embed_video(torch.as_tensor(feats)[None])[0].numpy()
    np.testing.assert_allclose(emb.vector, want / np.linalg.norm(want), atol=1e-5)
    import sqlite3

    db = sqlite3.connect(tmp_path / "idx" / "meta.sqlite")
    (blob,) = db.execute("SELECT vector FROM items").fetchone()
    db.close()
    np.testing.assert_allclose(np.frombuffer(blob, np.float32), emb.vector, atol=1e-6)  # what the index stored
    capsys.readouterr()
    assert main(["info", "--index", str(tmp_path / "idx")]) == 0
    assert "2 uniform frames per clip" in capsys.readouterr().out

    decoded.clear()  # a head without a fixed frame count keeps the index's fps grid
    assert main(["-q", "index", str(media), "--index", str(tmp_path / "idx2"), "--model", "video:tiny+mean"]) == 0
    assert len(decoded) == 8
