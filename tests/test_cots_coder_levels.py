"""COTS' token level (MLM / MVM) and adaptive momentum filter, CODER's concept level: hand-computed cases, gradient
checks, refusals, and a short ``xmr train`` run of each on a tiny model."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from xmr.encoders.tiny import PAD, TinyConfig, tokenize
from xmr.errors import ConfigError
from xmr.train.losses import Batch, LossInfo, create_loss
from xmr.train.losses.coder_concepts import (build_vocabulary, caption_words, concept_index, cooccurrence_graph,
                                             multi_hot)
from xmr.train.losses.cots import queue_infonce
from xmr.train.losses.cots_token import kmeans, patchify
from xmr.train.model import TinyModel

SMALL_TINY = TinyConfig(image_size=8, patch_size=4, width=16, layers=1, heads=2, dim=8, context_length=24)
TEXTS = ("a red circle at the top", "a blue square at the left", "two red squares at the top",
         "a blue circle on the left", "a red circle at the top", "a green square at the left")


def _tiny(seed=0):
    return TinyModel(TinyConfig(**{**SMALL_TINY.__dict__, "seed": seed}))


def _batch(model, pixels, ids, index=None):
    n = pixels.shape[0]
    index = torch.arange(n) if index is None else index
    return Batch(img=model.encode_image(pixels), txt=model.encode_text(ids), index=index, img_in=pixels,
                 txt_in=ids, item=index)


def _inputs(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), tokenize(list(TEXTS[:n]), SMALL_TINY.context_length)


# ------------------------------------------------------------------------------------------- hand-computed cases


def test_patchify_orders_patches_row_major():
    x = torch.arange(3 * 4 * 4, dtype=torch.float32).view(1, 3, 4, 4)
    p = patchify(x, 2)  # (1, 4, 12)
    assert p.shape == (1, 4, 12)
    # patch 1 is the top-right 2x2 block of every channel: channel 0 holds 2, 3, 6, 7
    assert p[0, 1, :4].tolist() == [2.0, 3.0, 6.0, 7.0]
    assert p[0, 2, :4].tolist() == [8.0, 9.0, 12.0, 13.0]


def test_kmeans_finds_two_separated_groups():
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0], [5.0, 5.1]])
    c = kmeans(x, 2, seed=0)
    got = sorted(tuple(round(v, 4) for v in row) for row in c.tolist())
    assert got == [(0.0333, 0.0333), (5.0333, 5.0333)]


def test_caption_words_vocabulary_and_graph_by_hand():
    assert caption_words("A red circle, at the TOP; red!") == ["red", "circle", "top"]
    texts = ["red circle", "red square", "blue circle", "red circle top"]
    vocab = build_vocabulary(texts, 10)
    assert vocab == ["circle", "red"]  # 3 captions each; ties alphabetical; "square", "blue", "top" once: dropped
    idx = concept_index(texts, vocab)
    assert idx.tolist() == [[1, 0], [1, -1], [0, -1], [1, 0]]
    assert multi_hot(idx, 2).tolist() == [[1, 1], [0, 1], [1, 0], [1, 1]]
    # co-occurrence: circle & red in 2 captions; P(red|circle) = 2/3 = P(circle|red): M = [[1, 2/3], [2/3, 1]]
    # rows sum to 5/3: A = M / (5/3)
    a = cooccurrence_graph(idx, 2)
    assert a.flatten().tolist() == pytest.approx([0.6, 0.4, 0.4, 0.6], abs=1e-6)


def test_amf_threshold_and_dropped_pairs_are_not_enqueued():
    model = _tiny()
    loss = create_loss("cots", {"queue_size": 4, "amf": True, "amf_k": 1.0}, model, LossInfo(num_pairs=6, dim=8))
    scores = torch.tensor([0.2, 0.4, 0.6, 0.8])  # mean 0.5, std (unbiased) 0.2582 -> threshold 0.2418
    assert loss.amf_keep(torch.tensor([0.1, 0.3])).tolist() == [True, True]  # queue not full yet: warm-up
    loss.amf_scores.copy_(scores)
    thr = 0.5 - scores.std().item()
    assert thr == pytest.approx(0.5 - math.sqrt(0.2 / 3), abs=1e-6)
    assert loss.amf_keep(torch.tensor([0.24, 0.25, 0.9])).tolist() == [False, True, True]
    # a batch whose first pair scores far below: its keys stay out of the queue, every score goes into the score queue
    pixels, ids = _inputs(2)
    b = _batch(model, pixels, ids)
    with torch.no_grad():
        k_img, k_txt = loss.key_model.encode_image(pixels), loss.key_model.encode_text(ids)
    s = (k_img * k_txt).sum(1)
    m = s.max()
    loss.amf_scores.copy_(torch.stack([m - 1e-4, m, m + 1e-4, m]))  # threshold m - 8.2e-5: the lower pair goes
    keep = loss.amf_keep(s)
    assert sorted(keep.tolist()) == [False, True]
    value, logs = loss(b, model)
    assert logs["amf_dropped"] == pytest.approx(float((~keep).float().mean()))
    loss.after_step(model)
    assert int((loss.queue_item >= 0).sum()) == int(keep.sum())
    assert loss.amf_scores[:2].tolist() == pytest.approx(s.tolist(), abs=1e-6)


def test_amf_with_everything_kept_equals_plain_cots():
    model = _tiny()
    info = LossInfo(num_pairs=6, dim=8)
    plain = create_loss("cots", {"queue_size": 8}, model, info)
    amf = create_loss("cots", {"queue_size": 8, "amf": True, "amf_k": 100.0}, model, info)
    amf.amf_scores.copy_(torch.linspace(-1, 1, 8))  # full queue, threshold mean - 100 std: nothing dropped
    pixels, ids = _inputs()
    a, _ = plain(_batch(model, pixels, ids), model)
    b, logs = amf(_batch(model, pixels, ids), model)
    assert logs["amf_dropped"] == 0.0 and a.item() == pytest.approx(b.item(), rel=1e-6)


# ----------------------------------------------------------------------------------------------- token level


def test_token_level_terms_reach_both_towers_and_their_decoders():
    torch.manual_seed(0)
    model = _tiny()
    loss = create_loss("cots", {"queue_size": 8, "mlm_weight": 1.0, "mvm_weight": 1.0, "mvm_codes": 4,
                                "mlm_ratio": 0.3}, model, LossInfo(num_pairs=6, dim=8))
    pixels, ids = _inputs()
    b = _batch(model, pixels, ids)
    net = model.net
    mlm = loss.token.mlm(net, ids, b.img, 0.3)
    # chance level over 256 bytes for a fresh decoder, not zero and not absurd
    assert 0.5 * math.log(256) < mlm.item() < 2 * math.log(256)
    mlm.backward()
    assert net.token_embed.weight.grad.abs().sum() > 0  # the text tower
    assert net.patch_embed.weight.grad.abs().sum() > 0  # the image tower, through the image's global embedding
    model.zero_grad()
    b = _batch(model, pixels, ids)
    mvm = loss.token.mvm(net, pixels, b.txt, 0.5)
    assert bool(loss.token.codebook_ready) and loss.token.codebook.abs().sum() > 0
    mvm.backward()
    assert net.patch_embed.weight.grad.abs().sum() > 0 and net.token_embed.weight.grad.abs().sum() > 0
    assert loss.token.mvm_head[0].weight.grad.abs().sum() > 0


def test_mlm_masks_only_real_bytes_with_pad():
    torch.manual_seed(0)
    model = _tiny()
    loss = create_loss("cots", {"queue_size": 8, "mlm_weight": 1.0}, model, LossInfo(num_pairs=6, dim=8))
    seen = {}
    orig = model.net.encode_text_tokens

    def spy(x):
        seen["ids"] = x.clone()
        return orig(x)

    model.net.encode_text_tokens = spy
    pixels, ids = _inputs()
    loss.token.mlm(model.net, ids, model.encode_image(pixels), 0.5)
    changed = seen["ids"] != ids
    assert changed.any() and (seen["ids"][changed] == PAD).all()
    assert not changed[:, 0].any()  # BOS kept
    assert not changed[ids == PAD].any()


def test_mlm_decoder_gradcheck():
    """The MLM term as a function of the image embedding and the token outputs (float64)."""
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.GELU(), torch.nn.Linear(6, 7)).double()
    target = torch.tensor([1, 4, 6])

    def term(h, g):
        return F.cross_entropy(head(torch.cat([h, F.normalize(g, dim=1)], dim=1)), target)

    h = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert gradcheck(term, (h, g), eps=1e-6, atol=1e-5)


def test_token_level_needs_token_outputs():
    from xmr.encoders.trained import AdapterConfig
    from xmr.train.model import AdapterModel

    model = AdapterModel(AdapterConfig(8, 8, 16, False, 0), AdapterConfig(8, 8, 16, False, 1), "concept")
    with pytest.raises(ConfigError, match="--mode full --model tiny"):
        create_loss("cots", {"mvm_weight": 1.0}, model, LossInfo(num_pairs=4, dim=8))


# ----------------------------------------------------------------------------------------------- concept level


def test_concept_level_needs_captions():
    with pytest.raises(ConfigError, match="captions"):
        create_loss("coder", {"concept_weight": 1.0}, _tiny(), LossInfo(num_pairs=4, dim=8))
    with pytest.raises(ConfigError, match="fewer than 2 words"):
        create_loss("coder", {"concept_weight": 1.0}, _tiny(), LossInfo(num_pairs=2, dim=8, texts=("x y", "z w")))


def test_concept_level_trains_its_branch_and_moves_prototypes():
    torch.manual_seed(0)
    model = _tiny()
    info = LossInfo(num_pairs=6, dim=8, texts=TEXTS)
    loss = create_loss("coder", {"queue_size": 8, "concept_weight": 1.0, "clusters": 3}, model, info)
    assert loss.concept.vocab[:2] == ["red", "circle"] or set(loss.concept.vocab) >= {"red", "circle", "top", "left"}
    pixels, ids = _inputs()
    protos = loss.concept.prototypes.clone()
    value, logs = loss(_batch(model, pixels, ids), model)
    assert {"concept", "cluster", "word"} <= set(logs)
    value.backward()
    assert loss.concept.nodes.grad.abs().sum() > 0 and loss.concept.gcn.weight.grad.abs().sum() > 0
    assert model.net.patch_embed.weight.grad.abs().sum() > 0
    loss.after_step(model)
    assert not torch.equal(protos, loss.concept.prototypes)
    # checkpoints keep the learned state and the prototypes; the word graph is rebuilt from the captions
    sd = loss.state_dict()
    assert "concept.prototypes" in sd and "concept.adj" not in sd
    again = create_loss("coder", {"queue_size": 8, "concept_weight": 1.0, "clusters": 3}, _tiny(), info)
    again.load_state_dict(sd)
    assert torch.equal(again.concept.adj, loss.concept.adj)


def test_concept_level_contrast_gradcheck():
    """Concept descriptors (graph conv + query attention) into the weighted queue InfoNCE, float64."""
    torch.manual_seed(0)
    adj = cooccurrence_graph(torch.tensor([[0, 1], [1, 2], [0, -1]]), 3).double()
    nodes = torch.randn(3, 4, dtype=torch.float64)
    queue = F.normalize(torch.randn(5, 4, dtype=torch.float64), dim=1)
    key = F.normalize(torch.randn(2, 4, dtype=torch.float64), dim=1)

    def term(q, w):
        h = F.normalize(adj @ nodes @ w, dim=1)
        c = F.normalize((q @ h.T / 0.5).softmax(dim=1) @ h, dim=1)
        return queue_infonce(c, key, queue, 0.5)

    q = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    assert gradcheck(term, (q, w), eps=1e-6, atol=1e-5)


# ----------------------------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("loss,config", [
    ("cots", {"queue_size": 8, "mlm_weight": 1.0, "mvm_weight": 1.0, "mvm_codes": 8, "amf": True,
              "batch_negatives": True}),
    ("coder", {"queue_size": 8, "concept_weight": 1.0, "clusters": 4}),
])
def test_xmr_train_runs_and_resumes_with_the_new_terms(tmp_path, loss, config):
    from xmr.synth.images import generate_images
    from xmr.train import TrainConfig, train

    man = generate_images(tmp_path / "w", n=16, seed=1, noise=0.25)
    cfg = TrainConfig(dataset=f"manifest:{man}", model="tiny", mode="full", loss=loss, loss_config=config, epochs=2,
                      batch_size=4, seed=0, tiny={"image_size": 8, "patch_size": 4, "width": 16, "layers": 1,
                                                  "heads": 2, "dim": 8})
    full = train(cfg, tmp_path / "full", show_progress=False)
    keys = set(full.history[-1])
    assert ({"mlm", "mvm", "amf_dropped", "amf_dropped_noisy"} if loss == "cots" else {"concept", "cluster"}) <= keys
    once = train(TrainConfig(**{**cfg.__dict__, "epochs": 1}), tmp_path / "half", show_progress=False)
    assert once.epochs == 1
    resumed = train(cfg, tmp_path / "half", resume=True, show_progress=False)
    assert resumed.history[-1]["train_loss"] == pytest.approx(full.history[-1]["train_loss"], rel=1e-5)
