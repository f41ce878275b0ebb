"""MILES (``--loss miles``) and video training in ``xmr train``: the space-time block mask, the regression term on
hand-made cases, gradient checks, what is trained (student, mask embedding, head) and what follows by EMA (the
snapshot), the total loss, and ``xmr train`` on ``xmr synth videos`` clips: CLI run, ``trained:DIR`` loading,
fine-tuning from it, resume after a kill, clear refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.autograd import gradcheck

from conftest import run_cli
from xmr.encoders.tiny_video import TinyVideoConfig
from xmr.errors import ConfigError
from xmr.train import TrainConfig, train
from xmr.train.losses import Batch, LossInfo, create_loss
from xmr.train.losses.infonce import clip_loss
from xmr.train.losses.miles import regression_loss, space_time_block_mask
from xmr.train.video_data import TinyVideoModel

TINY = {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "heads": 2, "dim": 16, "context_length": 48}


def _model(frames=2, seed=0, **tiny) -> TinyVideoModel:
    return TinyVideoModel(TinyVideoConfig({**TINY, **tiny, "seed": seed}, frames))


def _clips(b=3, frames=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, frames, 3, 16, 16, generator=g)


# ------------------------------------------------------------------------------------------------ the mask


def test_space_time_block_mask_masks_exactly_the_ratio_in_blocks_and_is_seeded():
    m = space_time_block_mask(16, 4, 4, 0.5, np.random.default_rng(0))
    assert m.shape == (16, 4, 16) and m.dtype == bool
    assert (m.sum(axis=(1, 2)) == 32).all()  # exactly round(0.5 * 4 * 16) per clip
    assert np.array_equal(m, space_time_block_mask(16, 4, 4, 0.5, np.random.default_rng(0)))
    assert not np.array_equal(m, space_time_block_mask(16, 4, 4, 0.5, np.random.default_rng(1)))
    g = m.reshape(16, 4, 4, 4)
    # blocks, not scattered patches: far more masked patches have a masked neighbour in time (same place, next
    # frame) and in space than independent masking at 50 % would give (half of them)
    both_t = (g[:, 1:] & g[:, :-1]).sum() / g[:, :-1].sum()
    both_x = (g[..., 1:] & g[..., :-1]).sum() / g[..., :-1].sum()
    assert both_t > 0.6 and both_x > 0.6
    assert space_time_block_mask(2, 3, 2, 0.25, np.random.default_rng(0)).sum(axis=(1, 2)).tolist() == [3, 3]


# ----------------------------------------------------------------------------------------- hand-made cases


def test_regression_loss_hand_cases():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    tgt = torch.tensor([[0.0, 0.0], [3.0, 6.0]])
    assert regression_loss(pred, tgt, "l1").item() == pytest.approx((1 + 2 + 0 + 2) / 4)
    assert regression_loss(pred, tgt, "l2").item() == pytest.approx((1 + 4 + 0 + 4) / 4)
    assert regression_loss(pred, tgt, "smooth_l1").item() == pytest.approx((0.5 + 1.5 + 0 + 1.5) / 4)
    assert regression_loss(pred[:0], tgt[:0], "l1").item() == 0.0
    with pytest.raises(ConfigError, match="regression"):
        regression_loss(pred, tgt, "l3")


def _loss(model, **cfg):
    return create_loss("miles", {"target_norm": False, **cfg}, model, LossInfo(num_pairs=3, dim=model.dim, seed=0))


def _identity_head(loss):
    with torch.no_grad():
        loss.head.weight.copy_(torch.eye(loss.head.weight.shape[0]))
        loss.head.bias.zero_()


def test_mvm_is_zero_when_the_mask_embedding_is_the_hidden_patch_and_grows_otherwise():
    """A clip of one flat colour: every patch embeds to the same vector e. With the mask embedding = e, the corrupted
    clip is the clean clip, the snapshot is (still) the encoder and the head is the identity: L_mvm = 0 exactly."""
    model = _model()
    loss = _loss(model)
    _identity_head(loss)
    x = torch.full((2, 2, 3, 16, 16), 0.3)
    e = model.net.net.patch_embed(x[0, :1]).flatten(2)[0, :, 0].detach()  # the embedding of any patch
    mask = torch.from_numpy(space_time_block_mask(2, 2, 2, 0.5, np.random.default_rng(0)))
    with torch.no_grad():
        loss.mask_embedding.copy_(e)
        assert loss.mvm(model, x, mask).item() == pytest.approx(0.0, abs=1e-6)
        loss.mask_embedding.add_(torch.linspace(-1, 1, 16))  # not a constant shift (LayerNorm removes those)
        assert loss.mvm(model, x, mask).item() > 1e-3


def test_mvm_regresses_the_snapshot_tokens_at_the_masked_positions_only():
    model = _model()
    loss = _loss(model, regression="l2")
    _identity_head(loss)
    x = _clips(b=2)
    mask = torch.zeros(2, 2, 4, dtype=torch.bool)
    mask[0, 1, 2] = mask[1, 0, 0] = True  # two masked patches: token 1 + 1*4 + 2 = 7 of clip 0, token 1 of clip 1
    with torch.no_grad():
        student = model.video_tokens(x, mask, loss.mask_embedding)
        target = loss.snapshot.video_tokens(x)
        want = ((student[0, 7] - target[0, 7]).pow(2).mean() + (student[1, 1] - target[1, 1]).pow(2).mean()) / 2
        assert loss.mvm(model, x, mask).item() == pytest.approx(want.item(), rel=1e-5)
        for p in loss.snapshot.parameters():  # another snapshot, another target
            p.add_(0.05)
        assert loss.mvm(model, x, mask).item() != pytest.approx(want.item(), rel=1e-3)


def test_target_norm_layer_normalises_the_targets():
    model = _model()
    loss, plain = _loss(model, target_norm=True), _loss(model)
    x, mask = _clips(b=1), torch.ones(1, 2, 4, dtype=torch.bool)
    with torch.no_grad():
        ln = loss.snapshot.net.net.image_ln_post  # a trained final norm scales and shifts the targets ...
        ln.weight.mul_(0.1), ln.bias.add_(0.3)
        plain.snapshot.load_state_dict(loss.snapshot.state_dict())
        student = loss.head(model.video_tokens(x, mask, loss.mask_embedding)[0, 1:])
        target = F.layer_norm(loss.snapshot.video_tokens(x)[0, 1:], (16,))
        assert loss.mvm(model, x, mask).item() == pytest.approx((student - target).abs().mean().item(), rel=1e-5)
        # ... which target_norm undoes (the encoder cannot make its targets small)
        assert loss.mvm(model, x, mask).item() != pytest.approx(plain.mvm(model, x, mask).item(), rel=1e-2)


def test_total_loss_is_contrastive_plus_weighted_mvm():
    model = _model()
    loss = _loss(model, mvm_weight=0.5)
    x, ids = _clips(), torch.randint(0, 256, (3, 48), generator=torch.Generator().manual_seed(1))
    b = Batch(img=model.encode_image(x), txt=model.encode_text(ids), index=torch.arange(3), img_in=x, txt_in=ids)
    torch.manual_seed(5)
    value, logs = loss(b, model)
    torch.manual_seed(5)
    mask = loss.draw_mask(3, x.device)  # the same draw as inside forward
    with torch.no_grad():
        want = clip_loss(b.img, b.txt, loss.scale()) + 0.5 * loss.mvm(model, x, mask)
    assert value.item() == pytest.approx(want.item(), rel=1e-5)
    assert set(logs) == {"vtc", "mvm", "scale"}


# ------------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("kind", ["l1", "l2", "smooth_l1"])
def test_gradcheck_regression(kind):
    g = torch.Generator().manual_seed(3)
    pred = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    tgt = torch.randn(5, 4, dtype=torch.float64, generator=g)
    assert gradcheck(lambda p: regression_loss(p, tgt, kind), (pred,), eps=1e-6, atol=1e-5)


def test_gradcheck_mvm_through_the_masked_encoder():
    model = _model().double()
    loss = _loss(model, regression="l2").double()
    x = _clips(b=2).double()
    mask = torch.from_numpy(space_time_block_mask(2, 2, 2, 0.5, np.random.default_rng(0)))
    emb = loss.mask_embedding.detach().clone().requires_grad_(True)

    def f(e):
        return regression_loss(loss.head(model.video_tokens(x, mask, e)[:, 1:][mask.flatten(1)]),
                               loss.snapshot.video_tokens(x)[:, 1:][mask.flatten(1)], "l2")

    assert gradcheck(f, (emb,), eps=1e-6, atol=1e-5)


def test_gradients_train_the_student_not_the_snapshot_and_the_snapshot_follows_by_ema():
    model = _model()
    loss = _loss(model, momentum=0.9)
    x, ids = _clips(), torch.randint(0, 256, (3, 48), generator=torch.Generator().manual_seed(1))
    b = Batch(img=model.encode_image(x), txt=model.encode_text(ids), index=torch.arange(3), img_in=x, txt_in=ids)
    value, _ = loss(b, model)
    value.backward()
    assert all(p.grad is None for p in loss.snapshot.parameters())
    assert model.net.time_pos.grad.abs().sum() > 0 and model.net.net.patch_embed.weight.grad.abs().sum() > 0
    assert loss.mask_embedding.grad.abs().sum() > 0 and loss.head.weight.grad.abs().sum() > 0
    old = [p.detach().clone() for p in loss.snapshot.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    loss.after_step(model)
    for o, s, p in zip(old, loss.snapshot.parameters(), model.parameters()):
        assert torch.allclose(s, 0.9 * o + 0.1 * p, atol=1e-6)


def test_miles_refuses_a_model_without_video_tokens_and_bad_settings():
    from xmr.encoders.trained import AdapterConfig
    from xmr.train.model import AdapterModel

    adapters = AdapterModel(AdapterConfig(8, 0, 16, True, 0), AdapterConfig(8, 0, 16, True, 1), "tiny")
    with pytest.raises(ConfigError, match="video data set"):
        create_loss("miles", {}, adapters, LossInfo(num_pairs=4, dim=8))
    for bad in ({"mask_ratio": 1.0}, {"momentum": 1.0}, {"regression": "l0"}):
        with pytest.raises(ConfigError, match="miles"):
            create_loss("miles", bad, _model(), LossInfo(num_pairs=4, dim=16))


# ---------------------------------------------------------------------------------------- xmr train on videos


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from xmr.synth.videos import generate_videos

    return generate_videos(tmp_path_factory.mktemp("vids") / "v", n=16, seed=1, size=24, radius=4, frames=8,
                           fps=8, captions=2, test_fraction=0.25)


def _cfg(videos, **kw):
    base = dict(dataset=f"manifest:{videos}", model="tiny", mode="full", loss="miles", epochs=2, batch_size=4,
                lr=5e-3, frames=2, tiny=dict(TINY))
    return TrainConfig(**{**base, **kw})


class _Killed(Exception):
    pass


def test_cli_trains_miles_on_videos_and_the_folder_loads_and_fine_tunes(videos, tmp_path, capsys):
    out = tmp_path / "pre"
    code, text, _ = run_cli(capsys, "train", "--dataset", f"manifest:{videos}", "--mode", "full", "--model", "tiny",
                            "--loss", "miles", "--frames", "2", "--tiny-config", '{"image_size": 16, "patch_size": 8, '
                            '"width": 16, "layers": 1, "heads": 2, "dim": 16, "context_length": 48}', "--epochs", "2",
                            "--batch-size", "4", "--out", str(out))
    assert code == 0 and "trained miles (full, tiny) for 2 epochs" in text
    rows = (out / "metrics.csv").read_text().splitlines()
    assert "vtc" in rows[0] and "mvm" in rows[0] and len(rows) == 4  # header, epoch 0 (before training), 1, 2
    from xmr.encoders import create_encoder
    from xmr.data import load_dataset

    enc = create_encoder(f"trained:{out}")
    ds = load_dataset(f"manifest:{videos}", split="test")
    v = enc.encode_videos(list(ds.media))
    t = enc.encode_text(ds.texts)
    assert v.shape == (len(ds), 16) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    # the same scores as the run's own last evaluation
    from xmr.eval import evaluate_sims

    m = evaluate_sims(t @ v.T, np.asarray(ds.text_to_item), protocol="standard")
    last = [r.split(",") for r in rows]
    assert m["t2i"]["R@1"] == pytest.approx(float(last[-1][last[0].index("t2i_R@1")]), abs=1e-3)
    # fine-tune from it (contrastive), and a frame count it was not trained with is refused
    res = train(_cfg(videos, model=f"trained:{out}", tiny={}, loss="infonce", epochs=1), tmp_path / "ft",
                show_progress=False)
    start = load_file(str(out / "model.safetensors"))
    assert res.history[0]["t2i_R@1"] == pytest.approx(m["t2i"]["R@1"], abs=1e-3)  # epoch 0 = the pre-trained model
    assert set(load_file(str(res.out / "model.safetensors"))) == set(start)
    with pytest.raises(ConfigError, match="--frames 2"):
        train(_cfg(videos, model=f"trained:{out}", tiny={}, frames=3), tmp_path / "ft3", show_progress=False)
    # xmr eval / index / search with it: tests/test_clip_video.py


def test_killed_miles_run_resumes_to_the_uninterrupted_result(videos, tmp_path):
    cfg = _cfg(videos, epochs=3)
    full = train(cfg, tmp_path / "full", show_progress=False)

    def kill(epoch, step):
        if epoch == 1 and step == 4:  # in the second epoch (3 steps per epoch: 12 train clips, batch 4)
            raise _Killed

    with pytest.raises(_Killed):
        train(cfg, tmp_path / "killed", on_step=kill, show_progress=False)
    resumed = train(cfg, tmp_path / "killed", resume=True, show_progress=False)
    assert resumed.resumed_from == 1
    a, b = load_file(str(full.out / "model.safetensors")), load_file(str(resumed.out / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    sa = load_file(str(full.out / "checkpoints" / "epoch-0003" / "state.safetensors"))
    sb = load_file(str(resumed.out / "checkpoints" / "epoch-0003" / "state.safetensors"))
    assert any(k.startswith("system.loss.snapshot.") for k in sa)  # the snapshot encoder is checkpointed
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith("system."))


def test_video_runs_refuse_other_modes_models_and_image_losses_on_images(videos, tmp_path):
    with pytest.raises(ConfigError, match="--mode full"):
        train(_cfg(videos, mode="adapter", model="concept", tiny={}), tmp_path / "a", show_progress=False)
    with pytest.raises(ConfigError, match="video data sets train"):
        train(_cfg(videos, model="hf:nothing", tiny={}), tmp_path / "b", show_progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_an_unreadable_clip_is_a_clear_error_not_a_made_up_video(videos, tmp_path):
    import json

    from xmr.errors import MediaError

    bad = tmp_path / "bad"
    (bad / "videos").mkdir(parents=True)
    lines = [json.loads(x) for x in videos.read_text().splitlines()][:4]
    for i, row in enumerate(lines):
        src = videos.parent / row["media"]
        dst = bad / row["media"]
        data = src.read_bytes()
        dst.write_bytes(data[: len(data) // 3] if i == 1 else data)  # clip 1 truncated
        row["split"] = "train"
    (bad / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    with pytest.raises((MediaError, ConfigError)) as e:
        train(_cfg(bad / "captions.jsonl", eval_split=None), tmp_path / "out", show_progress=False)
    assert lines[1]["media"].split("/")[-1] in str(e.value)
    assert not (tmp_path / "out" / "model.safetensors").exists()
