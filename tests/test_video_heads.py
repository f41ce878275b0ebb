"""Video heads (xmr.heads), head training, the synthetic video generator and the train-head / synth CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xmr.cli import main
from xmr.errors import ConfigError
from xmr.heads import create_head, list_heads, load_head
from xmr.heads.ts2net import token_shift
from xmr.heads.train import train_head
from xmr.heads.xpool import rerank

torch.set_num_threads(1)

D, W, T, P = 16, 16, 5, 4
CFG = {
    "mean": {"dim": D},
    "mean_proj": {"dim": D, "proj": True},
    "seqtransf": {"dim": D, "heads": 2},
    "xpool": {"dim": D},
    "ts2net": {"dim": D, "width": W, "heads": 2, "select_k": 2},
    "prototypes": {"dim": D, "heads": 2, "num_prototypes": 3},
    "lean": {"dim": D, "heads": 2, "max_frames": T, "num_frames": T},
}
HEADS = list(CFG)


def _name(h: str) -> str:
    return "mean" if h == "mean_proj" else h


def _inputs(h: str, bv: int = 6, bt: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(bv, T, 1 + P, W, generator=g) if h == "ts2net" else torch.randn(bv, T, D, generator=g)
    return torch.randn(bt, D, generator=g), frames


def test_registry_lists_all_heads():
    assert {n for n, _ in list_heads()} == {"mean", "seqtransf", "xpool", "ts2net", "prototypes", "lean",
                                                "textweighted"}
    with pytest.raises(ConfigError, match="Available: lean, mean"):
        create_head("nope")
    with pytest.raises(ConfigError, match="unknown field"):
        create_head("mean", {"dim": 8, "layers": 2})


@pytest.mark.parametrize("h", HEADS)
def test_shapes_no_nan_and_gradients(h):
    head = create_head(_name(h), CFG[h])
    text, frames = _inputs(h)
    sims = head.similarity(text, frames)
    assert sims.shape == (3, 6) and torch.isfinite(sims).all()
    assert (sims.abs() <= 1 + 1e-5).all()
    if head.query_independent:
        v = head.embed_video(frames)
        assert v.shape[0] == 6 and v.shape[-1] == D and torch.isfinite(v).all()
    loss = (sims * head.logit_scale.exp()).logsumexp(1).mean() - sims.diagonal().mean()
    loss.backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    with_grad = [n for n, p in head.named_parameters() if p.grad.abs().sum() > 0]
    assert len(with_grad) >= len(list(head.parameters())) - 1  # every layer is used (topk may skip nothing)


@pytest.mark.parametrize("h", HEADS)
def test_save_load_round_trip(h, tmp_path):
    head = create_head(_name(h), CFG[h], seed=3).eval()
    text, frames = _inputs(h)
    head.save(tmp_path / h)
    assert json.loads((tmp_path / h / "config.json").read_text())["head"] == _name(h)
    again = load_head(tmp_path / h)
    assert type(again) is type(head) and again.config == head.config
    with torch.no_grad():
        assert torch.equal(again.similarity(text, frames), head.similarity(text, frames))


def test_load_head_errors(tmp_path):
    from xmr.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="config.json is missing"):
        load_head(tmp_path)
    create_head("seqtransf", dim=D, heads=2).save(tmp_path / "a")
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    cfg["dim"] = 32
    (tmp_path / "a" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelUnavailableError, match="does not fit"):
        load_head(tmp_path / "a")


def test_mean_is_order_blind_seqtransf_is_not():
    _, frames = _inputs("mean")
    rev = frames.flip(1)
    mean = create_head("mean", dim=D)
    assert torch.allclose(mean.embed_video(frames), mean.embed_video(rev), atol=1e-6)
    seq = create_head("seqtransf", dim=D, heads=2)
    with torch.no_grad():
        assert not torch.allclose(seq.embed_video(frames), seq.embed_video(rev), atol=1e-4)


def test_xpool_video_embedding_depends_on_text():
    head = create_head("xpool", dim=D)
    text, frames = _inputs("xpool")
    with torch.no_grad():
        v = head.embed_video_for(text, frames)  # (B_t, B_v, D)
    assert v.shape == (3, 6, D)
    assert not torch.allclose(v[0], v[1], atol=1e-4)
    with pytest.raises(ConfigError, match="no query-independent"):
        head.embed_video(frames)
    with pytest.raises(ConfigError, match="cannot pool"):
        head.as_pool()


def test_xpool_rerank_matches_exhaustive_when_k_covers_all():
    head = create_head("xpool", dim=D, seed=1)
    text, frames = _inputs("xpool", bv=7)
    with torch.no_grad():
        full = head.similarity(text, frames)
    scores, idx = rerank(head, text, frames, k=7)
    assert torch.equal(idx, full.argsort(dim=1, descending=True))
    assert torch.allclose(scores, full.sort(dim=1, descending=True).values, atol=1e-6)
    scores3, idx3 = rerank(head, text, frames, k=3)
    assert idx3.shape == (3, 3)
    assert torch.allclose(scores3, full.gather(1, idx3), atol=1e-6)


def test_ts2net_refuses_features_without_patch_tokens():
    head = create_head("ts2net", CFG["ts2net"])
    with pytest.raises(ConfigError, match="patch tokens"):
        head.similarity(torch.randn(2, D), torch.randn(4, T, D))
    for h in ("mean", "seqtransf", "xpool", "prototypes"):
        with pytest.raises(ConfigError, match=r"\(B, T, D\)"):
            create_head(h, CFG[h]).similarity(torch.randn(2, D), torch.randn(4, T, 1 + P, D))


def test_token_shift_moves_channels_between_frames():
    x = torch.arange(2 * 3 * 2 * 8, dtype=torch.float32).view(2, 3, 2, 8)
    y = token_shift(x, 0.25)
    assert torch.equal(y[:, 1:, :, :2], x[:, :-1, :, :2]) and (y[:, 0, :, :2] == 0).all()
    assert torch.equal(y[:, :-1, :, 2:4], x[:, 1:, :, 2:4]) and (y[:, -1, :, 2:4] == 0).all()
    assert torch.equal(y[..., 4:], x[..., 4:])


def test_token_shift_moves_whole_tokens_like_ts2net():
    # TS2-Net's released code on a 7x7 grid (ViT-B/32): tokens 1, 8, ..., 43 come from frame t-1 and 4, 11, ..., 46
    # from frame t+1, all channels; the class token and every other patch stay; end frames keep their own tokens
    x = torch.randn(2, 3, 50, 6)
    y = token_shift(x, 1 / 7, mode="tokens")
    back, fwd = list(range(1, 50, 7)), list(range(4, 50, 7))
    assert torch.equal(y[:, 1:, back], x[:, :-1, back]) and torch.equal(y[:, 0, back], x[:, 0, back])
    assert torch.equal(y[:, :-1, fwd], x[:, 1:, fwd]) and torch.equal(y[:, -1, fwd], x[:, -1, fwd])
    kept = [i for i in range(50) if i not in back + fwd]
    assert 0 in kept and torch.equal(y[:, :, kept], x[:, :, kept])
    assert torch.equal(token_shift(x, 0.0, "tokens"), x)
    assert torch.equal(token_shift(x[:, :1], 0.5, "tokens"), x[:, :1])  # one frame: nothing to shift
    head = create_head("ts2net", CFG["ts2net"], shift_mode="tokens", shift_fraction=1 / 7)
    assert head.embed_video(_inputs("ts2net")[1]).shape == (6, D)
    with pytest.raises(ConfigError, match="shift_mode"):
        create_head("ts2net", CFG["ts2net"], shift_mode="rows")


def _zero_residual_branches(encoder: torch.nn.TransformerEncoder) -> None:
    for layer in encoder.layers:  # pre-norm blocks: x + 0 + 0 -> every block passes its input through
        for lin in (layer.self_attn.out_proj, layer.linear2):
            torch.nn.init.zeros_(lin.weight)
            torch.nn.init.zeros_(lin.bias)


def test_seqtransf_normalises_frames_before_mean_like_clip4clip():
    # CLIP4Clip: y = transformer(x + pos) + x, then each frame is L2-normalised, then meanP. With the blocks'
    # residual branches and the positions at zero, y = 2x per frame, so the head must equal meanP exactly
    # (it would not if the frames were averaged before normalising: their norms differ).
    seq, mean = create_head("seqtransf", dim=D, heads=2), create_head("mean", dim=D)
    _zero_residual_branches(seq.transformer)
    torch.nn.init.zeros_(seq.frame_pos)
    _, frames = _inputs("seqtransf")
    frames = frames * torch.linspace(0.2, 3.0, T)[None, :, None]  # frame norms far apart
    with torch.no_grad():
        assert torch.allclose(seq.embed_video(frames), mean.embed_video(frames), atol=1e-6)
        unnormalised = torch.nn.functional.normalize(frames.mean(dim=1), dim=-1)
        assert not torch.allclose(seq.embed_video(frames), unnormalised, atol=1e-3)


def test_ts2net_pools_the_class_token_outputs_per_frame():
    # like TS2-Net's seqTransf stage: residual to the input tokens, then only each frame's class-token output is
    # kept (normalised per frame, mean-pooled). With the blocks' residual branches and the positions at zero the
    # class-token output is 2 * (shifted) cls, so patch tokens cannot change the video vector.
    head = create_head("ts2net", CFG["ts2net"])
    _zero_residual_branches(head.transformer)
    torch.nn.init.zeros_(head.frame_pos)
    _, tokens = _inputs("ts2net")
    other = tokens.clone()
    other[:, :, 1:] = torch.randn_like(other[:, :, 1:])
    with torch.no_grad():
        v = head.embed_video(tokens)
        cls = token_shift(tokens, head.config.shift_fraction, head.config.shift_mode)[:, :, 0]
        per_frame = torch.nn.functional.normalize(head.proj(head.ln(2 * cls)), dim=-1)
        assert torch.allclose(v, torch.nn.functional.normalize(per_frame.mean(dim=1), dim=-1), atol=1e-6)
        assert torch.allclose(head.embed_video(other), v, atol=1e-6)


def test_xpool_matches_reference_at_init_and_dropout_only_trains():
    # X-Pool at its initialisation (identity projections, zero biases): with one frame the attention weight is 1, so
    # the pooled video is LN3(2 * LN2(LN1(frame))) = the layer-normed frame (LayerNorm ignores scale, up to eps)
    head = create_head("xpool", dim=D)
    text, frames = _inputs("xpool")
    one = frames[:, :1]
    with torch.no_grad():
        ln = torch.nn.functional.layer_norm(one[:, 0], (D,))
        assert torch.allclose(head.pool(text, one), ln.expand(3, -1, -1), atol=1e-4)
    drop = create_head("xpool", dim=D, dropout=0.3)
    with torch.no_grad():
        assert torch.equal(drop.eval().similarity(text, frames), head.eval().similarity(text, frames))
        drop.train()
        assert not torch.equal(drop.similarity(text, frames), head.similarity(text, frames))
    with pytest.raises(ConfigError, match="dropout"):
        create_head("xpool", dim=D, dropout=1.0)


def test_mean_as_index_pool():
    from xmr.video import mean_pool

    pool = create_head("mean", dim=D).as_pool()
    embs = np.random.default_rng(0).normal(size=(T, D)).astype(np.float32)
    embs /= np.linalg.norm(embs, axis=1, keepdims=True)
    times = np.arange(T, dtype=np.float64)
    np.testing.assert_allclose(pool(embs, times), mean_pool(embs, times), atol=1e-6)


def test_train_head_learns_a_separable_toy_problem():
    # videos differ only in frame order; texts are one vector per order -> mean cannot, seqtransf can
    g = torch.Generator().manual_seed(0)
    base = torch.nn.functional.normalize(torch.randn(2, D, generator=g), dim=-1)
    fwd = torch.stack([base[0], base[0], base[1], base[1]])  # (T=4, D)
    frames = torch.stack([fwd, fwd.flip(0)] * 8) + 0.01 * torch.randn(16, 4, D, generator=g)
    text = torch.nn.functional.normalize(torch.randn(2, D, generator=g), dim=-1)
    pairs = [(i % 2, i) for i in range(16)]
    seq = train_head(frames, text, pairs, "seqtransf", {"dim": D, "heads": 2}, epochs=40, lr=3e-3, seed=0,
                     batch_size=16)
    with torch.no_grad():
        s = seq.similarity(text, frames[:2])
    assert s[0, 0] > s[0, 1] and s[1, 1] > s[1, 0]
    mean = create_head("mean", dim=D)
    with torch.no_grad():
        m = mean.similarity(text, frames[:2])
    assert torch.allclose(m[:, 0], m[:, 1], atol=0.05)  # order-blind
    with pytest.raises(ConfigError, match="pairs"):
        train_head(frames, text, [(5, 0)], "mean", {"dim": D})


def test_synth_videos_decodable_with_captions(tmp_path):
    from xmr.data import load_dataset
    from xmr.media.video import sample_frames
    from xmr.synth.videos import generate_clips, SynthVideoConfig, generate_videos

    manifest = generate_videos(tmp_path, n=6, seed=0, frames=8)
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert [r["type"] for r in rows] == ["a", "b", "b", "c", "c", "a"]
    assert "appears briefly" in rows[0]["captions"][0]
    assert ", then " in rows[1]["captions"][0]
    b1, b2 = rows[1]["captions"][0], rows[2]["captions"][0]
    first, second = b1.removeprefix("a ").split(" appears, then a ")
    assert b2 == f"a {second} appears, then a {first}"  # the twin is the reversed order
    dirs = {rows[3]["captions"][0].split()[-1], rows[4]["captions"][0].split()[-1]}
    assert dirs in ({"left", "right"}, {"up", "down"})
    ds = load_dataset(f"manifest:{manifest}", check_media=True)
    assert len(ds) == 6
    frames = sample_frames(ds.items[1].media, 8)
    assert frames.shape == (8, 64, 64, 3)
    clips = generate_clips(SynthVideoConfig(n=6, seed=0, frames=8))
    assert np.abs(frames.astype(int) - clips[1]["frames"].astype(int)).mean() < 3  # H.264 yuv420p: edges blur
    twin = sample_frames(ds.items[2].media, 8)
    assert np.abs(twin.astype(int) - frames[::-1].astype(int)).mean() < 2  # same frames, reversed
    again = generate_clips(SynthVideoConfig(n=6, seed=0, frames=8))
    assert all(np.array_equal(a["frames"], b["frames"]) for a, b in zip(clips, again))
    with pytest.raises(ConfigError):
        SynthVideoConfig(n=0)


def test_cli_synth_and_train_head(tmp_path, capsys):
    data, out = tmp_path / "synth", tmp_path / "head"
    assert main(["-q", "synth", "videos", "--out", str(data), "--n", "6", "--seed", "1", "--frames", "8"]) == 0
    manifest = data / "captions.jsonl"
    assert main(["-q", "train-head", "--dataset", f"manifest:{manifest}", "--split", "all", "--encoder", "tiny",
                 "--head", "ts2net", "--out", str(out), "--frames", "4", "--epochs", "2"]) == 0
    head = load_head(out)
    assert head.name == "ts2net" and head.config.width == 64
    # the frame plan it was trained with is recorded (the one frames -> features path)
    assert head.provenance["frames"] == {"sampling": "uniform", "num_frames": 4, "frame_size": 224}
    assert head.provenance["videos"] == 6 and not head.training  # nn.Module's train/eval flag is untouched
    assert main(["-q", "train-head", "--dataset", f"manifest:{manifest}", "--split", "all", "--head", "nope",
                 "--out", str(out)]) == 2
    assert "unknown video head 'nope'" in capsys.readouterr().err
