"""The audio expert: decoding (PyAV), log-mel, the audio tower, xmr index --experts audio, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

pytest.importorskip("av", reason="audio decoding needs PyAV (xmr[video])")

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "msrvtt-mini"
FIXTURE_SILENT = Path(__file__).resolve().parent / "fixtures" / "video" / "video9771.mp4"


def _tone_clip(path, freq=440.0, seconds=1.0, sr=16000, frames=True):
    from xmr.synth.sounds import write_av_clip

    t = np.arange(int(seconds * sr)) / sr
    wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    fr = np.full((max(2, int(seconds * 4)), 32, 32, 3), 90, np.uint8) if frames else None
    write_av_clip(path, fr, 4, wave, sr)
    return wave


def test_load_audio_decodes_and_resamples_a_tone(tmp_path):
    from xmr.media.audio import load_audio

    _tone_clip(tmp_path / "a.mp4", freq=1000.0, seconds=1.0, sr=16000)
    w = load_audio(tmp_path / "a.mp4", sr=8000)
    assert w.dtype == np.float32 and abs(w.size - 8000) <= 1100  # AAC adds up to one frame of priming
    spec = np.abs(np.fft.rfft(w[1000:7000]))
    peak_hz = np.argmax(spec) * 8000 / 6000
    assert abs(peak_hz - 1000.0) < 10  # the tone survived AAC + the 16k -> 8k resampler
    assert 0.3 < np.abs(w[1000:7000]).max() < 0.7
    short = load_audio(tmp_path / "a.mp4", sr=8000, max_seconds=0.25)
    assert short.size == 2000


def test_load_audio_errors(tmp_path):
    from xmr.errors import CorruptMediaError, UnreadableMediaError
    from xmr.media.audio import NoAudioStreamError, load_audio

    with pytest.raises(NoAudioStreamError, match="no audio track"):
        load_audio(FIXTURE_SILENT)
    (tmp_path / "e.mp4").write_bytes(b"")
    with pytest.raises(UnreadableMediaError, match="empty"):
        load_audio(tmp_path / "e.mp4")
    (tmp_path / "g.mp4").write_bytes(b"not a video at all" * 50)
    with pytest.raises(CorruptMediaError):
        load_audio(tmp_path / "g.mp4")
    with pytest.raises(UnreadableMediaError):
        load_audio(tmp_path / "missing.mp4")


@pytest.mark.skipif(not (SHARED / "video9770.mp4").exists(), reason=f"needs {SHARED} (msrvtt-mini)")
def test_msrvtt_real_clips():
    from xmr.media.audio import NoAudioStreamError, load_audio

    w = load_audio(SHARED / "video9770.mp4", sr=16000, max_seconds=5)
    assert w.size == 80000 and np.abs(w).max() > 0.01  # real AAC audio, not silence
    with pytest.raises(NoAudioStreamError):
        load_audio(SHARED / "video9771.mp4")


def test_log_mel_puts_a_tone_in_the_right_band():
    from xmr.media.audio import log_mel, mel_filterbank

    sr = 16000
    t = np.arange(sr) / sr
    low = log_mel(np.sin(2 * np.pi * 150 * t).astype(np.float32), sr, 40)
    high = log_mel(np.sin(2 * np.pi * 4000 * t).astype(np.float32), sr, 40)
    assert low.shape == (1 + (sr - 400) // 160, 40)
    assert low.mean(0).argmax() < 8 < 25 < high.mean(0).argmax()
    fb = mel_filterbank(sr, 512, 40)
    assert fb.shape == (40, 257) and (fb >= 0).all() and (fb.max(1) > 0.5).all()  # every filter has a peak


@pytest.fixture(scope="module")
def tiny_tower(tmp_path_factory):
    """An audio tower trained for model ``tiny`` on synthetic sound events (a few seconds)."""
    from xmr import create_encoder
    from xmr.train.audio_tower import sound_pairs, train_audio_tower

    emb, rec = train_audio_tower(sound_pairs(100, seed=0), create_encoder("tiny"), "tiny", epochs=6)
    d = tmp_path_factory.mktemp("tower")
    emb.save(d, extra={"training": rec})
    return d, rec


def test_tower_learns_held_out_sounds_and_round_trips(tiny_tower):
    from xmr import create_encoder
    from xmr.encoders.audio_tower import AudioEmbedder
    from xmr.train.audio_tower import sound_pairs

    d, rec = tiny_tower
    assert rec["loss"][-1] < rec["loss"][0] / 2
    emb = AudioEmbedder.load(d)
    held = sound_pairs(30, seed=7)
    caps = sorted({c for _, c in sound_pairs(100, seed=0)})
    T = np.asarray(create_encoder("tiny").encode_text(caps, show_progress=False))
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    hits = [caps[int(np.argmax(emb.embed_wave(w)[0][2] @ T.T))] == c for w, c in held]
    assert np.mean(hits) >= 0.8  # chance is 1/20
    wins = emb.embed_wave(np.zeros(16000 * 5, np.float32))
    assert [(s, e) for s, e, _ in wins] == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (3.0, 5.0)]
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for _, _, v in wins)


def test_index_experts_audio_end_to_end(tmp_path, capsys, tiny_tower):
    from xmr.synth.sounds import generate_sound_videos

    tower, _ = tiny_tower
    man = generate_sound_videos(tmp_path / "sv", n=6, seed=3)
    vids = man.parent / "videos"
    (vids / "silent.mp4").write_bytes(FIXTURE_SILENT.read_bytes())
    (vids / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100)
    idx = tmp_path / "idx"
    code, out, err = run_cli(capsys, "index", str(vids), "--index", str(idx), "--model", "tiny",
                             "--experts", f"audio:{tower}")
    assert code == 0, err
    assert "audio: has no audio track" in out + err
    code, out, _ = run_cli(capsys, "info", "--index", str(idx), "--json")
    info = json.loads(out)
    au = info["experts"]["audio"]
    assert au["items"] == 7 and au["with_text"] == 6 and au["argument"] == str(tower)
    assert [s["path"].endswith("silent.mp4") for s in au["skipped"]] == [True]
    assert info["items"] == 7  # the silent video is indexed (visual), the broken one skipped by the indexer
    lines = [json.loads(x) for x in man.read_text().splitlines()]
    for ln in lines:
        code, out, _ = run_cli(capsys, "search", ln["sound"], "--index", str(idx), "--json", "-k", "3")
        res = json.loads(out)["results"]
        top = res[0]
        same = {x["media"] for x in lines if x["sound"] == ln["sound"]}
        assert any(top["path"].endswith(m) for m in same), (ln["sound"], top["path"])
        assert top["match"] == "audio" and top["experts"]["audio"]["start"] == 0.0  # an audio hit is a moment
    # the same folder again: nothing re-runs
    code, out, err = run_cli(capsys, "index", str(vids), "--index", str(idx))
    assert code == 0 and "0 unchanged" not in out


def test_bundled_tower_refuses_another_model(tmp_path, capsys):
    from xmr.synth.sounds import generate_sound_videos

    man = generate_sound_videos(tmp_path / "sv", n=1, seed=0)
    code, out, err = run_cli(capsys, "index", str(man.parent / "videos"), "--index", str(tmp_path / "i"),
                             "--model", "tiny", "--experts", "audio")
    assert code == 2
    assert "train-audio --model tiny" in err and "concept" in err
    code, out, _ = run_cli(capsys, "info", "--index", str(tmp_path / "i"), "--json")
    assert code == 0 and json.loads(out)["items"] == 1 and "experts" not in json.loads(out)  # not recorded


def test_experts_argument_parsing(tmp_path):
    from xmr.errors import ConfigError
    from xmr.experts import parse_experts

    assert parse_experts(f"audio:{tmp_path},sidecar") == [f"audio:{tmp_path}", "sidecar"]
    assert parse_experts(f"audio,audio:{tmp_path}") == [f"audio:{tmp_path}"]
    with pytest.raises(ConfigError, match="takes no argument"):
        parse_experts("sidecar:x")


# ---------------------------------------------------------------------------------------------- Everything at Once
def test_eao_tokens_and_combinatorial_loss_terms():
    import torch

    from xmr.heads.eao import EaoConfig, EverythingAtOnce, audio_tokens, build_vocab, frame_tokens, nce

    fr = np.zeros((16, 64, 64, 3), np.uint8)
    fr[:, :8, :8] = 255  # top-left thumbnail cell white
    ft = frame_tokens(fr)
    assert ft.shape == (8, 193) and ft[0, 0] == 1.0 and ft[0, 3] == 0.0 and ft[-1, -1] == 1.0
    at = audio_tokens(np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32))
    assert at.shape == (8, 81) and at[0, -1] == 0.0 and at[-1, -1] == 1.0
    x = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    assert float(nce(x, x, 0.01)) < 1e-3  # aligned rows: ~0; hand case
    assert abs(float(nce(x[:, :1] * 0 + 1 / 8 ** 0.5 * torch.ones(4, 8), x[:, :1] * 0 + 1 / 8 ** 0.5
                         * torch.ones(4, 8), 0.1)) - np.log(4)) < 1e-5  # identical rows: log(batch)
    m = EverythingAtOnce(EaoConfig(video_dim=193, audio_dim=81, vocab=build_vocab(["a red circle"]), width=16,
                                   heads=2, embed_dim=8))
    loss, terms = m.combinatorial_loss(["a red circle"] * 3, torch.from_numpy(np.stack([ft] * 3)),
                                       torch.from_numpy(np.stack([at] * 3)))
    assert sorted(terms) == sorted(["text-video", "text-audio", "video-audio", "text-video+audio",
                                    "video-text+audio", "audio-text+video"])
    assert abs(float(loss.detach()) - sum(terms.values())) < 1e-4


def test_eao_learns_sound_and_picture_captions():
    """Trained on a few clips' "both" captions: sound queries are found from audio tokens far above chance, picture
    queries from video tokens; the fused gallery serves both."""
    import torch

    from xmr.heads.eao import audio_tokens, frame_tokens
    from xmr.synth.sounds import SynthSoundConfig, generate_sound_clips
    from xmr.train.eao import train_eao

    torch.set_num_threads(1)
    clips = generate_sound_clips(SynthSoundConfig(n=80, seed=5, size=48, radius=10, test_fraction=0.0))
    V = np.stack([frame_tokens(c["frames"]) for c in clips])
    A = np.stack([audio_tokens(c["audio"]) for c in clips])
    model, rec = train_eao([c["both"] for c in clips], V, A, epochs=25, seed=0,
                           config={"width": 64, "embed_dim": 64})
    assert rec["loss"][-1] < rec["loss"][0] * 0.6
    with torch.no_grad():
        def acc(kind, **gallery):
            g = model.encode(**gallery)
            qs = [c[kind] for c in clips]
            best = (model.encode(text=qs) @ g.T).argmax(1).numpy()
            return float(np.mean([clips[j][kind] == q for j, q in zip(best, qs)]))
        assert acc("sound", audio=A) > 0.5  # 20 sound captions: chance 0.05
        assert acc("picture", video=V) > 0.3  # 12 picture captions: chance ~0.08
        assert acc("sound", video=V, audio=A) > 0.4


# ---------------------------------------------------------------------------------------------------------- ECLIPSE
def test_eclipse_audio_to_video_attention_is_local_in_time():
    """A frame reads only audio within ``window`` of its time: changing an audio token far from every frame leaves
    the video embedding unchanged, changing one next to a frame does not."""
    import torch

    from xmr.heads.eclipse import Eclipse, EclipseConfig, eclipse_macs

    m = Eclipse(EclipseConfig(video_dim=4, audio_dim=3, vocab=["<unk>", "a"], width=8, heads=2, window=0.1,
                              embed_dim=8)).eval()
    v = torch.cat([torch.randn(1, 2, 3), torch.tensor([[[0.0], [1.0]]])], -1)  # frames at t = 0 and 1
    a = torch.cat([torch.randn(1, 3, 2), torch.tensor([[[0.0], [0.5], [1.0]]])], -1)  # audio at 0, 0.5, 1
    with torch.no_grad():
        base = m.encode(video=v, audio=a)
        far, near = a.clone(), a.clone()
        far[0, 1, :2] += 5.0
        near[0, 0, :2] += 5.0
        assert torch.allclose(m.encode(video=v, audio=far), base, atol=1e-6)
        assert not torch.allclose(m.encode(video=v, audio=near), base, atol=1e-3)
        assert not torch.allclose(m.encode(video=v), base, atol=1e-3)  # audio does enter the video embedding
    cfg = EclipseConfig(vocab=["x"])
    assert eclipse_macs(cfg, 4, 24, True) > eclipse_macs(cfg, 4, 24, False)
    D, E, dv = cfg.width, cfg.embed_dim, cfg.video_dim
    for k in (4, 16):  # by hand: gated projection, self-attention (4 maps + k^2 scores / mix), MLP, output head
        assert eclipse_macs(cfg, k, 24, False) == k * 4 * (dv - 1) * D + 4 * k * D * D + 2 * k * k * D \
            + 4 * k * D * D + 2 * D * E


def test_long_clips_show_each_colour_briefly_with_its_sound():
    from xmr.synth.sounds import COLOURS, generate_long_clips

    (c,) = generate_long_clips(1, seed=3)
    cols = c["caption"].split(" then ")
    assert len(cols) == 3 and len(set(cols)) == 3
    fr = c["frames"]
    for col in cols:
        shown = [(f == COLOURS[col]).all(-1).any() for f in fr]
        assert 3 <= sum(shown) <= 5  # 1 s of 12 s at 4 fps
    t_first = [i for i, f in enumerate(fr) if (f == COLOURS[cols[0]]).all(-1).any()][0] / 4
    s = int(t_first * 16000) + 800
    assert np.abs(c["audio"][s:s + 4000]).mean() > 10 * np.abs(c["audio"][:100]).mean() or t_first < 0.01


def test_cli_synth_sound_and_train_audio(tmp_path, capsys):
    from xmr.encoders.audio_tower import AudioEmbedder
    from xmr.media.audio import load_audio

    code, out, _ = run_cli(capsys, "synth", "videos", "--sound", "--out", str(tmp_path / "s"), "--n", "3")
    assert code == 0 and "3 clips with sound" in out
    lines = [json.loads(x) for x in (tmp_path / "s" / "captions.jsonl").read_text().splitlines()]
    assert [len(x["captions"]) for x in lines] == [3, 3, 3] and all(" then " in x["sound"] for x in lines)
    assert load_audio(tmp_path / "s" / lines[0]["media"]).size > 30000  # 2 s of AAC at 16 kHz
    code, out, _ = run_cli(capsys, "train-audio", "--model", "tiny", "--out", str(tmp_path / "t"), "--n", "20",
                           "--epochs", "1", "--json")
    rec = json.loads(out)
    assert code == 0 and rec["pairs"] == 20 and len(rec["loss"]) == 1
    emb = AudioEmbedder.load(tmp_path / "t")
    assert emb.config.target_model == "tiny" and not (tmp_path / "u").exists()
    with pytest.raises(SystemExit) as e:  # argparse: --n must be positive
        run_cli(capsys, "train-audio", "--model", "tiny", "--out", str(tmp_path / "u"), "--n", "0")
    assert e.value.code == 2 and not (tmp_path / "u").exists()
