"""TS2-Net as the paper trains it (xmr.heads.ts2net_vit): token shift inside the last ViT blocks of a tiny random
hf: CLIP (exact tokens checked at the attention input), the weights' layout unchanged, the text-weighted frame
aggregation against hand-computed values, end-to-end training through `xmr train-head --head ts2net-vit`, and the
saved folder used as `ts2net:DIR` by eval and by an index's re-scoring."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import _tiny_models as tiny_models
from xmr.errors import ConfigError, ModelUnavailableError
from xmr.heads.textweighted import text_weighted_similarity
from xmr.heads.ts2net import token_shift
from xmr.heads.ts2net_vit import TS2NetViT, TS2NetViTConfig

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tiny_models.build("clip", tmp_path_factory.mktemp("ts2vit") / "clip")


def _model(clip_dir, **kw) -> TS2NetViT:
    cfg = {"dim": 16, "max_frames": 4, "num_frames": 4, "perturb_samples": 32, **kw}
    return TS2NetViT(transformers.CLIPModel.from_pretrained(clip_dir), TS2NetViTConfig(**cfg))


# ------------------------------------------------------------------ text-weighted frame aggregation


def test_text_weighted_aggregation_hand_computed():
    text = torch.tensor([[1.0, 0.0]])
    frames = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])  # cosines with the text: 1 and 0 (norms do not matter)
    # TS2-Net's code: c / ||c|| = (1, 0), softmax(4 * (1, 0)) = (e^4, 1) / (e^4 + 1); score = e^4 / (e^4 + 1)
    want = math.exp(4) / (math.exp(4) + 1)
    assert float(text_weighted_similarity(text, frames)) == pytest.approx(want, abs=1e-6)
    # no frame normalisation, temperature 1: e / (e + 1)
    assert float(text_weighted_similarity(text, frames, 1.0, False)) == pytest.approx(math.e / (math.e + 1), abs=1e-6)
    # a very high temperature is the mean of the frame cosines; a very low one the best frame's
    assert float(text_weighted_similarity(text, frames, 1e6)) == pytest.approx(0.5, abs=1e-5)
    assert float(text_weighted_similarity(text, frames, 1e-3)) == pytest.approx(1.0, abs=1e-5)


def test_textweighted_head_is_query_dependent_and_needs_rescoring():
    from xmr.heads import create_head

    head = create_head("textweighted", dim=2, num_frames=2)
    assert head.needs_rescoring and not head.query_independent
    frames = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [0.6, 0.8]]])
    s = head.similarity(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), frames)
    # video 0 has one frame matching each text exactly: both texts prefer it over video 1 (cosines 0.6 / 0.8),
    # although meanP of video 0 (0.707, 0.707) is farther from either text than video 1 is from the second
    assert s[0, 0] > s[0, 1] and s[1, 0] > s[1, 1]
    with pytest.raises(ConfigError, match="temperature"):
        create_head("textweighted", dim=2, temperature=0.0)


# ------------------------------------------------------------------ token shift inside the ViT


def test_shift_is_inside_the_last_blocks_attention_input(clip_dir):
    torch.manual_seed(0)
    net = _model(clip_dir, shift_layers=1).eval()
    layers = net.clip.vision_model.encoder.layers
    seen = {}
    layers[-1].register_forward_pre_hook(lambda m, a, k: seen.__setitem__("block_in", (a or (k["hidden_states"],))[0]),
                                         with_kwargs=True)
    layers[-1].self_attn.register_forward_pre_hook(lambda m, a, k: seen.__setitem__("attn_in", k["hidden_states"]),
                                                   with_kwargs=True)
    layers[0].self_attn.register_forward_pre_hook(lambda m, a, k: seen.__setitem__("attn0_in", k["hidden_states"]),
                                                  with_kwargs=True)
    layers[0].register_forward_pre_hook(lambda m, a, k: seen.__setitem__("block0_in", (a or (k["hidden_states"],))[0]),
                                        with_kwargs=True)
    px = torch.randn(2, 3, 3, 32, 32)  # 2 videos x 3 frames, 1 + 16 tokens
    with torch.no_grad():
        net.frame_tokens(px)
        x = seen["block_in"].view(2, 3, 17, -1)
        want = token_shift(layers[-1].layer_norm1(x), 1 / 7, "tokens").view(6, 17, -1)
        torch.testing.assert_close(seen["attn_in"], want)
        # which tokens moved: patches 0, 7, 14 (tokens 1, 8, 15) from t-1; patches 3, 10 (tokens 4, 11) from t+1
        ln = layers[-1].layer_norm1(x)
        a = seen["attn_in"].view(2, 3, 17, -1)
        torch.testing.assert_close(a[:, 1, [1, 8, 15]], ln[:, 0, [1, 8, 15]])
        torch.testing.assert_close(a[:, 1, [4, 11]], ln[:, 2, [4, 11]])
        torch.testing.assert_close(a[:, :, 0], ln[:, :, 0])  # class tokens stay
        # the first block (not shifted) sees its own frame's tokens
        torch.testing.assert_close(seen["attn0_in"], layers[0].layer_norm1(seen["block0_in"]))
        # one image (no clip): the hook does nothing
        single = net.clip.vision_model(pixel_values=px[0, :1]).last_hidden_state
        net.remove_shift()
        torch.testing.assert_close(net.clip.vision_model(pixel_values=px[0, :1]).last_hidden_state, single)


def test_shift_makes_frames_see_their_neighbours(clip_dir):
    torch.manual_seed(0)
    px = torch.randn(1, 4, 3, 32, 32)
    px2 = px.clone()
    px2[:, 0] += 1.0  # change frame 0 only
    for kw, moved in (({"shift_layers": 2}, True), ({"shift_layers": 0}, False),
                      ({"shift_mode": "channels", "shift_fraction": 0.25}, True)):
        net = _model(clip_dir, **kw).eval()
        with torch.no_grad():
            a, b = net.frame_tokens(px), net.frame_tokens(px2)
        assert bool((a[:, 1] - b[:, 1]).abs().max() > 1e-4) is moved  # frame 1 sees frame 0 only through the shift
        torch.testing.assert_close(a[:, 3], b[:, 3])  # 3 steps from frame 0, 2 shifted blocks: never reached
    with pytest.raises(ConfigError, match="shift_mode"):
        _model(clip_dir, shift_mode="diagonal")


def test_weights_layout_is_the_models_own(clip_dir, tmp_path):
    net = _model(clip_dir)
    plain = transformers.CLIPModel.from_pretrained(clip_dir)
    clip_keys = {k[len("clip."):] for k in net.state_dict() if k.startswith("clip.")}
    assert clip_keys == set(plain.state_dict())
    # TS2-Net's clip.* weights load strictly into a plain CLIPModel, and a checkpoint loads into the wrapped model
    plain.load_state_dict({k[len("clip."):]: v for k, v in net.state_dict().items() if k.startswith("clip.")})
    net.clip.load_state_dict(plain.state_dict())


# ------------------------------------------------------------------ selection and training


def test_perturbed_selection_trains_the_scorer_and_is_deterministic_in_eval(clip_dir):
    torch.manual_seed(0)
    net = _model(clip_dir).train()
    px = torch.randn(2, 3, 3, 32, 32)
    f = net.frame_embeddings(px)
    assert f.shape == (2, 3, 16)
    net.similarity(torch.randn(2, 16), f).sum().backward()
    assert net.scorer.out[-2].weight.grad.abs().sum() > 0  # through the perturbed top-k's gradient estimator
    assert net.clip.vision_model.encoder.layers[-1].self_attn.q_proj.weight.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net.frame_embeddings(px), net.frame_embeddings(px), rtol=0, atol=0)


def test_training_lowers_the_loss_and_touches_only_what_finetune_names(clip_dir):
    from xmr.train.ts2net_vit import train_ts2net_vit

    torch.manual_seed(0)
    net = _model(clip_dir, perturb_samples=16)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    px = torch.randn(6, 2, 3, 32, 32)
    ids = torch.randint(0, 200, (6, 8))
    texts = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    train_ts2net_vit(net, px, texts, [(i, i) for i in range(6)], finetune="last:1", epochs=8, lr=3e-3, batch_size=6)
    assert net.history[-1] < net.history[0]
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "clip.vision_model.encoder.layers.1.self_attn.q_proj.weight" in changed
    assert "clip.vision_model.encoder.layers.0.self_attn.q_proj.weight" not in changed  # frozen: not in last:1
    assert "clip.vision_model.embeddings.patch_embedding.weight" not in changed
    assert "clip.logit_scale" not in changed and "logit_scale" in changed
    assert {"scorer.out.2.weight", "token_pos"} <= changed
    with pytest.raises(ConfigError, match="lora"):
        train_ts2net_vit(net, px, texts, [(i, i) for i in range(6)], finetune="lora")


def test_refuses_what_it_cannot_train(clip_dir, tmp_path):
    with pytest.raises(ConfigError, match="dim"):
        _model(clip_dir, dim=32)  # the model's projection is 16 wide
    with pytest.raises(ConfigError, match="shift_layers"):
        _model(clip_dir, shift_layers=5)
    siglip = transformers.SiglipModel.from_pretrained(tiny_models.build("siglip", tmp_path / "siglip"))
    with pytest.raises(ConfigError, match="CLIP-style ViT"):
        TS2NetViT(siglip, TS2NetViTConfig(dim=32))
    with pytest.raises(ModelUnavailableError, match="ts2net"):
        from xmr.encoders import create_encoder

        create_encoder(f"ts2net:{tmp_path / 'nothing'}")


# ------------------------------------------------------------------ the command, the encoder, eval


def test_train_head_ts2net_vit_saves_a_ts2net_encoder_that_eval_uses(clip_dir, tmp_path, capsys):
    from xmr.cli import main
    from xmr.encoders import create_encoder
    from xmr.synth.videos import generate_videos

    manifest = generate_videos(tmp_path / "s", n=6, seed=1, frames=8, test_fraction=0.5)
    out = tmp_path / "ts2"
    assert main(["train-head", "--dataset", f"manifest:{manifest}", "--split", "all", "--encoder", f"hf:{clip_dir}",
                 "--head", "ts2net-vit", "--frames", "4", "--epochs", "2", "--batch-size", "6", "--out", str(out),
                 "--config", '{"perturb_samples": 16}']) == 0
    assert "ts2net:" in capsys.readouterr().out
    enc = create_encoder(f"ts2net:{out}", device="cpu")
    assert enc.capabilities.video and enc.capabilities.video_rescoring and enc.dim == 16
    # the loaded CLIP is the trained one, not the base checkpoint
    from safetensors.torch import load_file

    saved = load_file(str(out / "model.safetensors"))
    key = "clip.vision_model.encoder.layers.1.self_attn.q_proj.weight"
    torch.testing.assert_close(enc.ts2net.state_dict()[key], saved[key])
    assert not torch.equal(saved[key], transformers.CLIPModel.from_pretrained(clip_dir).state_dict()[key[5:]])
    from xmr.video import item_frames
    from xmr.data import load_dataset

    ds = load_dataset(f"manifest:{manifest}")
    frames = item_frames(ds.items[0], 4)
    f = enc.encode_frames(frames)
    assert f.shape == (4, 16) and np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    # exact re-scoring of a query = the text-weighted score of those frames
    q = enc.encode_text(["a red circle"])[0]
    want = float(text_weighted_similarity(torch.from_numpy(q)[None], torch.from_numpy(f)[None]))
    assert enc.video_rescorer().score(q, np.arange(4.0), f, [])[0] == pytest.approx(want, abs=1e-5)
    import json

    assert main(["-q", "eval", "--dataset", f"manifest:{manifest}", "--split", "test", "--model", f"ts2net:{out}",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["fingerprint"]["video"]["scoring"] == "exhaustive head similarity"
    assert res["fingerprint"]["video"]["frames"] == 4  # the frames it was trained on
    # an index keeps the frame embeddings; search re-scores the candidates with the text-weighted score
    index = tmp_path / "idx"
    assert main(["-q", "index", str(manifest.parent / "videos"), "--index", str(index), "--model", f"ts2net:{out}"]) == 0
    capsys.readouterr()
    assert main(["-q", "search", "a red circle moves left", "--index", str(index), "--json", "--k", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["stage"] for s in data["stages"]][-1] == "head" and len(data["results"]) == 3
    scores = [r["score"] for r in data["results"]]
    assert scores == sorted(scores, reverse=True) and all(-1 <= x <= 1 for x in scores)
    for argv, why in ((["--encoder", "tiny", "--head", "ts2net-vit"], "hf:"),
                      (["--encoder", "tiny", "--head", "mean", "--finetune", "last:1"], "only apply")):
        assert main(["train-head", "--dataset", f"manifest:{manifest}", *argv, "--out", str(tmp_path / "x")]) == 2
        assert why in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cached_frozen_prefix_gives_the_same_tokens(clip_dir):
    torch.manual_seed(0)
    net = _model(clip_dir, shift_layers=1).eval()
    px = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.frame_tokens(net.prefix_hidden(px, 1), start=1), net.frame_tokens(px))
    with pytest.raises(ConfigError, match="shifted"):
        net.prefix_hidden(px, 2)
