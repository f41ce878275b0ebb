"""``xmr train --mode finetune``: an ``hf:`` (tiny random CLIP saved locally, tests/_tiny_models.py) or ``openclip:``
model's own weights are trained — all of them, the last blocks, the projections only, or LoRA through peft — and
exactly those change; the folder loads as ``trained:DIR`` and evaluates to the run's own numbers; a killed LoRA run
resumes bit-identically; modes a model cannot be trained in are refused with nothing written."""
from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli
from xmr.errors import ConfigError
from xmr.train import TrainConfig, train

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from _tiny_models import build
    from xmr.synth.images import generate_images

    d = tmp_path_factory.mktemp("ft")
    return build("clip", d / "clip"), generate_images(d / "s", n=24, seed=3, size=24, test_fraction=0.25)


def _cfg(world, **kw):
    clip, synth = world
    base = dict(dataset=f"manifest:{synth}", model=f"hf:{clip}", mode="finetune", epochs=2, batch_size=6, lr=5e-3)
    return TrainConfig(**{**base, **kw})


def _need_peft():
    pytest.importorskip("peft", reason="LoRA needs peft (pip install 'xmr[train]')")


def _changed(world, out) -> set[str]:
    base = load_file(str(world[0] / "model.safetensors"))
    new = load_file(str(out / "model.safetensors"))
    assert set(new) <= set(base) | {"text_model.embeddings.position_ids", "vision_model.embeddings.position_ids"}
    return {k for k in new if k in base and not torch.equal(base[k], new[k])}


def test_whole_trains_every_weight_but_the_logit_scale(world, tmp_path):
    res = train(_cfg(world), tmp_path / "run", show_progress=False)
    changed = _changed(world, res.out)
    base = load_file(str(world[0] / "model.safetensors"))
    floats = {k for k, v in base.items() if v.is_floating_point()}
    assert floats - changed == {"logit_scale"}  # the loss owns its temperature


def test_last_block_trains_only_the_last_block_and_what_follows(world, tmp_path):
    res = train(_cfg(world, finetune="last:1"), tmp_path / "run", show_progress=False)
    changed = _changed(world, res.out)
    assert changed and all(k.startswith(("vision_model.encoder.layers.1.", "text_model.encoder.layers.1.",
                                         "vision_model.post_layernorm.", "text_model.final_layer_norm.",
                                         "visual_projection.", "text_projection.")) for k in changed), changed
    assert any(".layers.1." in k for k in changed) and "visual_projection.weight" in changed


def test_projections_trains_only_the_projections(world, tmp_path):
    res = train(_cfg(world, finetune="projections"), tmp_path / "run", show_progress=False)
    assert _changed(world, res.out) == {"visual_projection.weight", "text_projection.weight"}


def test_lora_merges_into_q_and_v_and_loads_as_a_plain_model(world, tmp_path):
    _need_peft()
    from xmr.data import load_dataset
    from xmr.encoders import create_encoder
    from xmr.encoders.hf import HFEncoder
    from xmr.eval import evaluate_model

    res = train(_cfg(world, finetune="lora", lora={"r": 2, "alpha": 4}), tmp_path / "run", show_progress=False)
    changed = _changed(world, res.out)
    assert changed and {k.rsplit(".", 2)[-2] for k in changed} == {"q_proj", "v_proj"}
    assert not any("lora" in k for k in load_file(str(res.out / "model.safetensors")))
    enc = create_encoder(f"trained:{res.out}")
    assert isinstance(enc, HFEncoder)
    ev = evaluate_model(load_dataset(f"manifest:{world[1]}", split="test"), enc, show_progress=False)
    for d in ("t2i", "i2t"):
        for k in ("R@1", "R@5", "MdR"):
            assert ev[d][k] == pytest.approx(res.history[-1][f"{d}_{k}"], abs=1e-3), (d, k)


def test_merged_lora_equals_the_injected_layers_by_hand():
    _need_peft()
    from xmr.train.finetune import LoraSettings, inject_lora, merged_copy

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3))
    with pytest.raises(ConfigError, match="target_modules"):
        inject_lora(torch.nn.Sequential(torch.nn.Linear(4, 3)), LoraSettings(), 0, "toy")
    w0 = net[0].weight.detach().clone()
    inject_lora(net, LoraSettings(r=2, alpha=6.0, target_modules=["0"]), 0, "toy")
    layer = net[0]
    with torch.no_grad():
        layer.lora_B["default"].weight.copy_(torch.arange(6.0).reshape(3, 2) / 10)  # B starts at zero (Eq. 3)
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    x = torch.randn(5, 4)
    want = x @ (w0 + 3.0 * b @ a).T + layer.base_layer.bias  # W0 x + (alpha / r) B A x
    assert torch.allclose(net(x), want, atol=1e-6)
    merged = merged_copy(net)
    assert isinstance(merged[0], torch.nn.Linear) and torch.allclose(merged(x), want, atol=1e-6)
    assert torch.equal(net[0].base_layer.weight, w0)  # the training model is untouched


class _Killed(Exception):
    pass


def test_killed_lora_run_resumes_to_the_uninterrupted_result(world, tmp_path):
    _need_peft()
    cfg = _cfg(world, finetune="lora", epochs=3, lora={"r": 2})
    full = train(cfg, tmp_path / "full", show_progress=False)

    def kill(epoch, step):
        if epoch == 1 and step == 5:
            raise _Killed

    with pytest.raises(_Killed):
        train(cfg, tmp_path / "killed", on_step=kill, show_progress=False)
    resumed = train(cfg, tmp_path / "killed", resume=True, show_progress=False)
    assert resumed.resumed_from == 1
    a, b = load_file(str(full.out / "model.safetensors")), load_file(str(resumed.out / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("model,how,match", [
    ("tiny", "whole", "hf: or openclip:"),
    ("concept", "whole", "hf: or openclip:"),
    ("HF", "last:3", "fewer blocks"),
    ("HF", "last:0", "one of whole"),
    ("HF", "some", "one of whole"),
])
def test_modes_a_model_cannot_be_trained_in_are_refused_nothing_written(world, tmp_path, model, how, match):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=match):
        train(_cfg(world, model=f"hf:{world[0]}" if model == "HF" else model, finetune=how), out, show_progress=False)
    assert not out.exists()


@pytest.mark.parametrize("model_type,how,trained", [
    ("siglip", "last:1", (".layers.1.", "vision_model.head.", "text_model.head.", "post_layernorm", "final_layer_norm")),
    ("chinese_clip", "lora", (".query.", ".value.", ".q_proj.", ".v_proj.")),  # BERT text: query + value; ViT: q, v
    ("altclip", "projections", ("visual_projection.", "text_projection.")),
])
def test_other_model_types(world, tmp_path, model_type, how, trained):
    from _tiny_models import build

    if how == "lora":
        _need_peft()
    d = build(model_type, tmp_path / model_type)
    res = train(_cfg(world, model=f"hf:{d}", finetune=how, epochs=1), tmp_path / "run", show_progress=False)
    base, new = load_file(str(d / "model.safetensors")), load_file(str(res.out / "model.safetensors"))
    changed = {k for k in new if k in base and not torch.equal(base[k], new[k])}
    assert changed and all(any(t in k for t in trained) for k in changed), sorted(changed)
    if how == "lora":
        assert any(".query." in k for k in changed) and any(".q_proj." in k for k in changed)


def test_a_cnn_image_tower_has_no_last_blocks(world, tmp_path):
    from _tiny_models import build

    d = build("align", tmp_path / "align")
    with pytest.raises(ConfigError, match="one transformer block list per tower"):
        train(_cfg(world, model=f"hf:{d}", finetune="last:1"), tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run").exists()


def test_finetune_settings_without_the_mode_are_refused(world):
    with pytest.raises(ConfigError, match="applies to --mode finetune"):
        _cfg(world, mode="adapter", finetune="lora")
    with pytest.raises(ConfigError, match="--finetune lora only"):
        _cfg(world, finetune="whole", lora={"r": 2})
    with pytest.raises(ConfigError, match="r >= 1"):
        from xmr.train.finetune import LoraSettings

        LoraSettings(r=0)


def test_openclip_whole_finetune_and_its_refusals(world, tmp_path, monkeypatch):
    from _fake_open_clip import make_fake_open_clip
    from xmr.encoders import create_encoder

    monkeypatch.setitem(sys.modules, "open_clip", make_fake_open_clip())
    cfg = _cfg(world, model="openclip:ViT-B-32:random", epochs=1)
    res = train(cfg, tmp_path / "oc", show_progress=False)
    w = load_file(str(res.out / "model.safetensors"))
    enc = create_encoder(f"trained:{res.out}")
    assert torch.equal(enc.model.i.weight.cpu(), w["i.weight"])
    import importlib.util

    cases = [("projections", "no projection layers"), ("last:1", "no transformer block")]
    if importlib.util.find_spec("peft") is not None:
        cases.append(("lora", "target_modules"))
    for how, match in cases:
        with pytest.raises(ConfigError, match=match):
            train(_cfg(world, model="openclip:ViT-B-32:random", finetune=how), tmp_path / how, show_progress=False)
        assert not (tmp_path / how).exists()


def test_cli_finetune_lora(world, tmp_path, capsys):
    _need_peft()
    clip, synth = world
    code, out, err = run_cli(capsys, "train", "--dataset", f"manifest:{synth}", "--model", f"hf:{clip}", "--mode",
                             "finetune", "--finetune", "lora", "--lora", '{"r": 2}', "--epochs", "1", "--batch-size",
                             "6", "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert "trained infonce (finetune" in out
    code, out, err = run_cli(capsys, "train", "--dataset", f"manifest:{synth}", "--model", "concept", "--mode",
                             "finetune", "--epochs", "1", "--out", str(tmp_path / "bad"))
    assert code == 2 and "hf: or openclip:" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("loss,lc,precision", [("ncr", {"warmup_epochs": 0, "chunk": 4}, "no"),
                                               ("cots", {"queue_size": 8}, "no"), ("infonce", {}, "bf16")])
def test_peer_and_momentum_losses_and_bf16_fine_tune(world, tmp_path, loss, lc, precision):
    res = train(_cfg(world, finetune="last:1", loss=loss, loss_config=lc, precision=precision, epochs=1),
                tmp_path / "run", show_progress=False)
    state = load_file(str(res.out / "checkpoints" / "epoch-0001" / "state.safetensors"))
    if loss == "ncr":  # the peer network is a second copy of the model, trained alongside
        assert any(k.startswith("system.loss.peer.net.vision_model.") for k in state)
    if loss == "cots":  # momentum encoders of the fine-tuned towers
        assert any(".vision_model." in k and k.startswith("system.loss.") for k in state)
    assert _changed(world, res.out)
