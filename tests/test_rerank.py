"""Two-stage re-ranking: score combination, the cross-attention matcher (shapes, gradients, training, save/load),
BLIP ITM through transformers (tiny random checkpoint built offline), and the CLI paths."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import FIXTURES, SAMPLES
from xmr.cli import main
from xmr.errors import ConfigError, ModelUnavailableError
from xmr.rerank import (CrossAttentionMatcher, CrossEncoder, CrossMatcherConfig, combine_scores, create_reranker,
                        rerank_candidates, rerank_dense, topk_candidates, train_cross_matcher)


class FakeCross(CrossEncoder):
    """Cross score = -(text index + image index) mod 3: deterministic, unrelated to the dual scores."""

    def __init__(self):
        self.calls = []

    def score(self, texts, images, pairs, batch_size=64):
        self.calls.append(len(pairs))
        return -((pairs[:, 0] + pairs[:, 1]) % 3).astype(np.float32)


def test_combination_and_candidates_hand_case():
    np.testing.assert_allclose(combine_scores([1.0, 0.0], [0.0, 2.0], alpha=0.25), [0.25, 1.5])
    np.testing.assert_allclose(combine_scores([1.0, 0.0], [0.0, 2.0]), [0.0, 2.0])  # cross only
    with pytest.raises(ConfigError):
        combine_scores([1.0], [1.0], alpha=1.5)
    s, c = rerank_candidates(np.array([[0.9, 0.8, 0.7]]), np.array([[4, 2, 7]]), np.array([[0.0, 3.0, 0.0]]))
    np.testing.assert_array_equal(c, [[2, 4, 7]])  # tie between 4 and 7 keeps the dual order
    np.testing.assert_allclose(s, [[3.0, 0.0, 0.0]])
    np.testing.assert_array_equal(topk_candidates(np.array([[0.1, 0.5, 0.5, 0.9]]), 3), [[3, 1, 2]])


def test_rerank_dense_reorders_only_the_top_k():
    sims = np.array([[0.9, 0.8, 0.7, 0.1],
                     [0.1, 0.2, 0.3, 0.4]])
    before = sims.copy()
    fake = FakeCross()
    out, info = rerank_dense(sims, ["t0", "t1"], ["a", "b", "c", "d"], fake, k=2)
    np.testing.assert_array_equal(sims, before)
    assert info["pairs_scored"] == 4 and fake.calls == [4] and info["k"] == 2
    # row 0: candidates 0 (cross -0) and 1 (cross -1): order kept; non-candidates 2, 3 below, in dual order
    assert list(np.argsort(-out[0])) == [0, 1, 2, 3]
    # row 1: candidates 3 (cross -(1+3)%3=-1) and 2 (cross -(1+2)%3=0): 2 now first
    assert list(np.argsort(-out[1])) == [2, 3, 1, 0]


def test_matcher_shapes_gradients_and_padding():
    cfg = CrossMatcherConfig(width=16, heads=2, layers=2)
    m = CrossAttentionMatcher(cfg)
    text, img = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0]] * 3, dtype=torch.bool)
    logit = m(text, mask, img)
    assert logit.shape == (3,) and torch.isfinite(logit).all()
    torch.nn.functional.binary_cross_entropy_with_logits(logit, torch.tensor([1.0, 0.0, 0.0])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    assert sum(float(p.grad.abs().sum()) for p in m.parameters()) > 0
    text2 = text.clone()
    text2[:, 3:] = 100.0  # padding positions do not change the result (queries attend only to the image)
    torch.testing.assert_close(m(text2, mask, img), logit.detach())
    with pytest.raises(ConfigError):
        CrossMatcherConfig(width=10, heads=4)


@pytest.fixture(scope="module")
def trained_matcher(tmp_path_factory, tiny_encoder):
    from xmr.data import load_dataset

    ds = load_dataset(f"coco:{FIXTURES / 'coco_tiny'}")
    rr = train_cross_matcher(tiny_encoder, ds.texts, ds.media, ds.text_to_item, negatives=2, hard_k=3, epochs=15,
                             batch_size=16, seed=0, info={"dataset": ds.spec})
    d = tmp_path_factory.mktemp("xattn") / "matcher"
    rr.save(d)
    return rr, d, ds


def test_trained_matcher_learns_and_round_trips(trained_matcher):
    rr, d, ds = trained_matcher
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["model"] == "xmr-xattn-matcher" and cfg["encoder"] == "tiny" and cfg["training"]["epochs"] == 15
    pairs = np.array([(t, i) for t in range(ds.num_texts) for i in range(len(ds))])
    scores = rr.score(ds.texts, ds.media, pairs).reshape(ds.num_texts, len(ds))
    pos = scores[np.arange(ds.num_texts), ds.text_to_item]
    is_neg = np.ones(scores.shape, dtype=bool)
    is_neg[np.arange(ds.num_texts), ds.text_to_item] = False
    assert pos.mean() > scores[is_neg].mean() + 1.0  # fits its training pairs
    assert (scores.argmax(axis=1) == ds.text_to_item).mean() >= 0.8
    again = create_reranker(f"xattn:{d}")
    np.testing.assert_allclose(again.score(ds.texts, ds.media, pairs).reshape(scores.shape), scores, rtol=1e-5,
                               atol=1e-5)


def test_reranker_spec_errors(tmp_path):
    with pytest.raises(ConfigError, match="Available"):
        create_reranker("banana:x")
    with pytest.raises(ConfigError, match="needs a model"):
        create_reranker("xattn")
    with pytest.raises(ModelUnavailableError, match="config.json is missing"):
        create_reranker(f"xattn:{tmp_path}")


def _tiny_blip(out):
    import transformers as T

    from _tiny_models import bert_tokenizer

    tok = bert_tokenizer()
    text = dict(vocab_size=len(tok), hidden_size=32, encoder_hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=32, pad_token_id=tok.pad_token_id,
                bos_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id, initializer_range=0.5)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8, initializer_range=0.5)  # large init: image differences visible in the ITM logits
    cfg = T.BlipConfig(text_config=text, vision_config=vision, projection_dim=16, image_text_hidden_size=16,
                       initializer_range=0.5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = T.BlipForImageTextRetrieval(cfg).eval()
    model.save_pretrained(out)
    T.BlipProcessor(image_processor=T.BlipImageProcessorPil(size={"height": 32, "width": 32}),
                    tokenizer=tok).save_pretrained(out)
    return out


def test_blip_itm_reranker_matches_the_model_forward(tmp_path):
    from PIL import Image

    d = _tiny_blip(tmp_path / "blip")
    rr = create_reranker(f"hf:{d}")
    imgs = [str(SAMPLES / "chelsea.png"), str(SAMPLES / "rocket.jpg")]
    texts = ["a cat", "a rocket launch"]
    pairs = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    got = rr.score(texts, imgs, pairs)
    assert got.shape == (4,) and np.isfinite(got).all() and abs(got[0] - got[1]) > 1e-3
    for (t, i), g in zip(pairs, got):  # the cached-vision path == BlipForImageTextRetrieval(use_itm_head=True)
        inp = rr.processor(images=[Image.open(imgs[i]).convert("RGB")], text=[texts[t]], return_tensors="pt")
        with torch.no_grad():
            itm = rr.model(input_ids=inp["input_ids"], pixel_values=inp["pixel_values"],
                           attention_mask=inp["attention_mask"], use_itm_head=True).itm_score
        assert abs(float(itm[0, 1] - itm[0, 0]) - g) < 1e-4
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text('{"model_type": "clip"}')
    with pytest.raises(ConfigError, match="model type 'clip'"):
        create_reranker(f"hf:{tmp_path / 'clip'}")


def test_image_features_are_cached_across_calls(trained_matcher):
    """Re-ranking query after query encodes each candidate file once (cache keyed by path, size, mtime)."""
    rr = create_reranker(f"xattn:{trained_matcher[1]}")  # a fresh cache
    imgs = sorted(str(p) for p in (FIXTURES / "coco_tiny" / "val2017").glob("*.jpg"))[:3]
    pairs = np.array([(0, 0), (0, 1), (0, 2)])
    first = rr.score(["a giraffe"], imgs, pairs)
    misses = rr.image_cache.misses
    again = rr.score(["a dog on grass"], imgs, pairs)
    assert rr.image_cache.misses == misses and rr.image_cache.hits >= 3  # no image encoded twice
    fresh = type(rr)(rr.matcher, rr.encoder, rr.info)  # no cache: the same scores
    np.testing.assert_allclose(fresh.score(["a dog on grass"], imgs, pairs), again, rtol=1e-5, atol=1e-6)
    assert first.shape == again.shape == (3,)


def test_eval_and_search_with_rerank(trained_matcher, capsys, tmp_path):
    _, d, _ = trained_matcher
    code = main(["-q", "eval", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}", "--model", "tiny", "--rerank",
                 f"xattn:{d}", "--rerank-k", "2", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0
    rr = res["rerank"]
    assert rr["pairs_scored"] == 20 * 2 and rr["k"] == 2 and rr["alpha"] == 0.0 and rr == res["fingerprint"]["rerank"]
    assert set(rr["t2i_gain"]) == set(res["t2i"]) and res["i2t"] == res["before"]["i2t"]
    # R@1 can only change within the top 2; R@5 (4 items) cannot change
    assert res["t2i"]["R@5"] == res["before"]["t2i"]["R@5"]
    # the search pipeline on the same gallery (eval --candidates) re-ranks each text's top 2 the same way
    code = main(["-q", "eval", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}", "--model", "tiny", "--rerank",
                 f"xattn:{d}", "--rerank-k", "2", "--candidates", "4", "--json"])
    by_search = json.loads(capsys.readouterr().out)
    assert code == 0 and by_search["t2i"] == res["t2i"] and by_search["search"]["stages"][-1]["stage"] == "rerank"
    # multi-query + re-ranking: defined in the search pipeline (mean cross score over a group's texts)
    mq = ["-q", "eval", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}", "--model", "tiny", "--rerank", f"xattn:{d}",
          "--rerank-k", "2", "--queries-per-target", "2", "--json"]
    assert main(mq) == 2 and "add --candidates K" in capsys.readouterr().err
    assert main(mq + ["--candidates", "4"]) == 0
    grouped = json.loads(capsys.readouterr().out)
    assert grouped["multi_query"]["queries_per_target"] == 2 and grouped["search"]["stages"][-1]["stage"] == "rerank"
    index = tmp_path / "index"
    assert main(["-q", "index", str(FIXTURES / "coco_tiny"), "--index", str(index), "--model", "tiny"]) == 0
    capsys.readouterr()
    code = main(["-q", "search", "a giraffe", "--index", str(index), "--k", "3", "--rerank", f"xattn:{d}",
                 "--rerank-k", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(out["results"]) == 3 and out["rerank"]["k"] == 3
