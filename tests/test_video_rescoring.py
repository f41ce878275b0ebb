"""Every video head in the main job: X-Pool and prototype indexes keep frame embeddings and re-score candidates
exactly; TS2-Net pools patch tokens into index vectors; `xmr eval` scores X-Pool exhaustively and evaluates moments."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("av")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from xmr.synth.videos import generate_videos

    # 6 s clips: two 4 s segments each, so the best segment matters
    return generate_videos(tmp_path_factory.mktemp("synth"), n=6, seed=5, frames=48, fps=8)


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """Untrained (seeded) heads saved like `xmr train-head` does; exactness does not need training."""
    from xmr.heads import create_head

    d = tmp_path_factory.mktemp("heads")
    create_head("xpool", dim=64, num_frames=8, seed=1).save(d / "xpool")
    create_head("prototypes", dim=64, num_frames=8, seed=1).save(d / "prototypes")
    create_head("ts2net", dim=64, width=64, num_frames=8, seed=1).save(d / "ts2net")
    return d


def _exhaustive(store, enc, query: str):
    """Brute force: the head's exact score of every video and every segment, score = max(video, best segment)."""
    q = enc.encode_text([query])[0]
    out = {}
    for (i,) in store.db.execute("SELECT id FROM items WHERE media_type='video'").fetchall():
        times, feats = store.frames_of(i)
        segs, _ = store.segments_of(i)
        best = float(enc.head.score_frames(q, [feats])[0])
        for g in segs:
            m = (times >= g.start) & (times < g.end)
            best = max(best, float(enc.head.score_frames(q, [feats[m]])[0]))
        out[i] = best
    return out


@pytest.mark.parametrize("name", ["xpool", "prototypes"])
def test_rescoring_head_index_matches_exhaustive_scores(tmp_path, synth, heads, name, capsys):
    from xmr import create_encoder
    from xmr.cli import main
    from xmr.index import IndexStore
    from xmr.retrieval import search_index, search_vector

    spec = f"video:tiny+{name}@{heads / name}"
    enc = create_encoder(spec)
    assert enc.capabilities.video_rescoring and enc.video_rescorer() is not None
    index = tmp_path / "idx"
    assert main(["-q", "index", str(synth.parent), "--index", str(index), "--model", spec]) == 0
    capsys.readouterr()
    with IndexStore(index) as st:
        assert st.count() == 6 and st.count_frames() == 6 and st.count_segments() == 12
        times, feats = st.frames_of(st.db.execute("SELECT id FROM items LIMIT 1").fetchone()[0])
        assert feats.shape == (len(times), 64) and np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)
        want = _exhaustive(st, enc, "a red circle")
        got = search_index(st, enc, text="a red circle", k=6, candidates=6)  # pool = everything -> exhaustive
        assert [r.id for r in got] == sorted(want, key=lambda i: (-want[i], i))
        assert [r.score for r in got] == pytest.approx([want[r.id] for r in got], abs=1e-5)
        assert all(r.start is not None and r.end > r.start for r in got)
        # a pool of 2 candidates re-scores only those: the results are a re-ordering of the first stage's top 2
        first = search_vector(st, enc.encode_text(["a red circle"])[0], 2)  # the stored candidate vectors only
        two = search_index(st, enc, text="a red circle", k=2, candidates=2)
        assert {r.id for r in two} == {r.id for r in first} and len(two) == 2
    assert main(["-q", "search", "a red circle", "--index", str(index), "--json", "--candidates", "6"]) == 0
    res = json.loads(capsys.readouterr().out)["results"]
    assert [r["id"] for r in res] == [r.id for r in got] and all("start" in r for r in res)


def test_xpool_index_takes_several_queries_and_plain_index_refuses_candidates(tmp_path, synth, heads, sample_dir,
                                                                              capsys):
    """Several queries on an X-Pool index (refused before the one pipeline): fused, then re-scored by the head."""
    from xmr.cli import main

    spec = f"video:tiny+xpool@{heads / 'xpool'}"
    index = tmp_path / "idx"
    assert main(["-q", "index", str(synth.parent), "--index", str(index), "--model", spec]) == 0
    capsys.readouterr()
    assert main(["-q", "search", "a red circle", "a blue square", "--index", str(index), "--json", "--k", "3",
                 "--fuse", "max"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["stage"] for s in data["stages"]] == ["first-stage", "moments", "head"] and data["fuse"] == "max"
    assert len(data["results"]) == 3 and all("start" in r for r in data["results"])
    scores = [r["score"] for r in data["results"]]
    assert scores == sorted(scores, reverse=True)
    plain = tmp_path / "plain"
    assert main(["-q", "index", str(sample_dir), "--index", str(plain), "--model", "tiny"]) == 0
    assert main(["-q", "search", "a cat", "--index", str(plain), "--candidates", "5"]) == 2
    assert "--candidates only applies" in capsys.readouterr().err


def test_ts2net_index_vectors_are_the_heads_pooling_of_patch_tokens(tmp_path, synth, heads):
    import torch

    from xmr import create_encoder
    from xmr.index import IndexStore, index_folder
    from xmr.video import VideoIndexConfig, embed_video

    enc = create_encoder(f"video:tiny+ts2net@{heads / 'ts2net'}")
    assert not enc.capabilities.video_rescoring and enc.video_rescorer() is None
    clip = sorted((synth.parent / "videos").glob("*.mp4"))[0]
    emb = embed_video(clip, enc, VideoIndexConfig(), keep_frames=True)  # pooled by the head (capabilities.video)
    times, tokens = emb.frames
    assert tokens.shape == (len(times), 1 + 16, 64)  # tiny: 32 px / 8 px patches = 16 patch tokens + class token
    with torch.no_grad():
        sub = enc.head.subsample(torch.from_numpy(tokens))
        want = enc.head.embed_video(sub[None])[0].numpy()
    np.testing.assert_allclose(emb.vector, want / np.linalg.norm(want), atol=1e-5)
    index_folder(synth.parent, tmp_path / "idx", enc, show_progress=False)
    with IndexStore(tmp_path / "idx") as st:
        assert st.count() == 6 and st.count_frames() == 0  # query-independent: no frames kept


def test_eval_xpool_is_exhaustive_head_similarity(synth, heads):
    import torch

    from xmr import create_encoder
    from xmr.data import load_dataset
    from xmr.eval import evaluate_model, evaluate_sims
    from xmr.video import item_frames

    enc = create_encoder(f"video:tiny+xpool@{heads / 'xpool'}")
    ds = load_dataset(f"manifest:{synth}")
    res = evaluate_model(ds, enc, show_progress=False)
    assert res["fingerprint"]["video"]["frames"] == 8
    assert res["fingerprint"]["video"]["scoring"] == "exhaustive head similarity"
    feats = torch.from_numpy(np.stack([enc.encode_frames(item_frames(it, 8, 224)) for it in ds.items]))
    with torch.no_grad():
        sims = enc.head.similarity(torch.from_numpy(enc.encode_text(ds.texts)), feats).numpy()
    want = evaluate_sims(sims, ds.text_to_item)
    assert res["t2i"] == pytest.approx(want["t2i"]) and res["i2t"] == pytest.approx(want["i2t"])
    # stages on top of the head (refused before the one pipeline): dual softmax on the exhaustive head scores,
    # and multi-query fusion of head similarities (mean-sim: the mean of the group's rows)
    staged = evaluate_model(ds, enc, show_progress=False, rescore="dsl", rescore_params={"dsl": {"temperature": 0.1}})
    from xmr.rescore import dual_softmax

    want = evaluate_sims(dual_softmax(sims, 0.1, axis=0), ds.text_to_item)
    assert staged["t2i"] == pytest.approx(want["t2i"]) and staged["before"]["t2i"] == pytest.approx(res["t2i"])
    assert staged["rescore"][0]["step"] == "dsl" and staged["rescore"][0]["transductive"]
    mq = evaluate_model(ds, enc, show_progress=False, queries_per_target=1)
    assert mq["t2i"] == pytest.approx(res["t2i"])  # one caption per group: the head scores themselves


def test_eval_moments_samples_inside_each_window(tmp_path, synth, tiny_encoder):
    """Two moments of one clip are two gallery items; each is encoded from frames inside its own window."""
    from xmr.data import load_dataset
    from xmr.eval import evaluate_model, evaluate_sims
    from xmr.video import item_frames, mean_pool

    clip = str(sorted((synth.parent / "videos").glob("*.mp4"))[0])
    m = tmp_path / "moments.jsonl"
    m.write_text("\n".join(json.dumps(r) for r in [
        {"media": clip, "captions": ["the start"], "start": 0.0, "end": 2.0},
        {"media": clip, "captions": ["the end"], "start": 4.0, "end": 6.0},
        {"media": clip, "captions": ["nowhere"], "start": 50.0, "end": 60.0}]) + "\n")
    from xmr.errors import MediaError

    with pytest.raises(MediaError, match=r"\[50.0-60.0 s\]"):  # a window past the clip's end is named, not dropped
        evaluate_model(load_dataset(f"manifest:{m}"), tiny_encoder, show_progress=False)
    m.write_text("\n".join(m.read_text().splitlines()[:2]) + "\n")
    ds = load_dataset(f"manifest:{m}")
    assert [(it.start, it.end) for it in ds.items] == [(0.0, 2.0), (4.0, 6.0)]
    res = evaluate_model(ds, tiny_encoder, show_progress=False)
    frames = [np.stack([np.asarray(f) for f in item_frames(it, 12, 224)]) for it in ds.items]
    assert not np.array_equal(frames[0], frames[1])  # different windows, different frames
    vids = np.stack([mean_pool(tiny_encoder.encode_images(item_frames(it, 12, 224)), None) for it in ds.items])
    want = evaluate_sims(tiny_encoder.encode_text(ds.texts) @ vids.T, ds.text_to_item)
    assert res["t2i"] == pytest.approx(want["t2i"])


def test_xpool_candidate_embedding_is_xpool_with_uniform_attention():
    """With the query projection zeroed every attention logit is 0, so X-Pool's view of a video is the same for every
    text and must equal the query-independent candidate embedding the index stores."""
    import torch
    import torch.nn.functional as F

    from xmr.heads import create_head

    head = create_head("xpool", dim=16, seed=3).eval()
    frames = torch.randn(5, 6, 16, generator=torch.Generator().manual_seed(0))
    text = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert not torch.allclose(head.embed_video_for(text, frames)[0], head.candidate_embedding(frames), atol=1e-3)
        head.q.weight.zero_()
        head.q.bias.zero_()
        views = head.embed_video_for(text, frames)  # (3, 5, 16)
        cand = head.candidate_embedding(frames)
    for t in range(3):
        torch.testing.assert_close(views[t], cand, atol=1e-5, rtol=0)
    assert torch.allclose(cand.norm(dim=-1), torch.ones(5))
    # the index's candidate pool is the same vector for one video (frames subsampled to num_frames first)
    pool = head.candidate_pool()
    np.testing.assert_allclose(pool(frames[0].numpy()), F.normalize(cand[0], dim=0).numpy(), atol=1e-5)


def test_server_reranks_like_the_cli(tmp_path, synth, heads):
    pytest.importorskip("fastapi", reason="xmr serve needs the serve extra")
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
    from fastapi.testclient import TestClient

    from xmr import create_encoder
    from xmr.index import IndexStore, index_folder
    from xmr.retrieval import search_index
    from xmr.serve import ServeSettings, create_app

    enc = create_encoder(f"video:tiny+xpool@{heads / 'xpool'}")
    index_folder(synth.parent, tmp_path / "idx", enc, show_progress=False)
    with IndexStore(tmp_path / "idx") as st:
        want = search_index(st, enc, text="a green square moves left", k=4)
    client = TestClient(create_app(tmp_path / "idx", encoder=enc, settings=ServeSettings()),
                        base_url="http://127.0.0.1")
    r = client.get("/api/search", params={"q": "a green square moves left", "k": 4})
    assert r.status_code == 200
    got = r.json()["results"]
    assert [x["id"] for x in got] == [w.id for w in want]
    assert [x["score"] for x in got] == pytest.approx([w.score for w in want], abs=1e-6)
    assert [(x["start"], x["end"]) for x in got] == [(w.start, w.end) for w in want]
    assert 'xmr_stage_duration_seconds_count{stage="rescore"} 1' in client.get("/metrics").text


def test_image_query_with_qbnorm_and_type_video_on_an_xpool_index(tmp_path, synth, heads, sample_dir, capsys):
    """The combination the staged route refused: an image query, re-scored exactly by the X-Pool head, then by
    QB-Norm with a text querybank, videos only -- equal to brute force over every video, through CLI and Python."""
    from xmr import create_encoder
    from xmr.cli import main
    from xmr.index import IndexStore, index_folder, open_reader
    from xmr.rescore import QueryBank, qb_norm
    from xmr.retrieval import Query, SearchOptions, build_pipeline

    enc = create_encoder(f"video:tiny+xpool@{heads / 'xpool'}")
    index = tmp_path / "idx"
    index_folder(synth.parent, index, enc, show_progress=False)
    index_folder(sample_dir, index, enc, show_progress=False)  # images too: the type filter must drop them
    bank = tmp_path / "bank.txt"
    texts = ["a red circle", "a blue square moves left", "a green triangle", "a yellow square appears"]
    bank.write_text("\n".join(texts) + "\n")
    img = sample_dir / "coffee.png"
    params = {"qbnorm": {"beta": 20.0, "k": 1, "mode": "inverted"}}
    store, reader = open_reader(index)
    try:
        out = build_pipeline(enc, SearchOptions(rescore=("qbnorm",), rescore_params=params, bank=str(bank),
                                                candidates=50)).search(reader, Query.image(img), 4, "video")
        ids = np.array(sorted(reader.get_items(range(1, 1000))), np.int64)
        vecs = reader.item_vectors(ids)
        q = enc.encode_images([img])[0]
        with IndexStore(index, readonly=True) as st:
            head = {}
            for i in ids:
                rec = st.get_items([int(i)])[int(i)]
                if rec.media_type != "video":
                    continue
                times, feats = st.frames_of(int(i))
                segs, _ = st.segments_of(int(i))
                best = float(enc.head.score_frames(q, [feats])[0])
                for g in segs:
                    m = (times >= g.start) & (times < g.end)
                    best = max(best, float(enc.head.score_frames(q, [feats[m]])[0]))
                head[int(i)] = best
        row = np.array([[head.get(int(i), 0.0) for i in ids]])
        want = qb_norm(row, QueryBank.from_embeddings(enc.encode_text(texts), vecs), **params["qbnorm"])[0]
        vid = np.array([int(i) in head for i in ids])
        order = np.lexsort((ids[vid], -want[vid]))[:4]
        assert [r.id for r in out.results] == ids[vid][order].tolist()
        np.testing.assert_allclose([r.score for r in out.results], want[vid][order], rtol=1e-4, atol=1e-6)
        assert all(r.media_type == "video" and r.start is not None for r in out.results)
        assert [s["stage"] for s in out.stages] == ["first-stage", "moments", "head", "rescore"]
        assert out.stages[0]["type"] == "video"
    finally:
        store.close()
    # the CLI runs the same path
    assert main(["-q", "search", "--image", str(img), "--index", str(index), "--type", "video", "--rescore", "qbnorm",
                 "--qb-mode", "inverted", "--bank", str(bank), "--candidates", "50", "--k", "4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in data["results"]] == [r.id for r in out.results]
    assert data["rescore"][0]["querybank"]["size"] == 4


def test_eval_candidates_measures_the_xpool_two_stage_search(synth, heads):
    """`xmr eval --candidates K` on an X-Pool encoder ranks like the deployed search: first stage by the candidate
    vectors, then exact head scores. With K = the whole gallery it equals the exhaustive evaluation."""
    from xmr import create_encoder
    from xmr.data import load_dataset
    from xmr.eval import evaluate_model

    enc = create_encoder(f"video:tiny+xpool@{heads / 'xpool'}")
    ds = load_dataset(f"manifest:{synth}")
    exhaustive = evaluate_model(ds, enc, show_progress=False)
    full = evaluate_model(ds, enc, show_progress=False, candidates=len(ds))
    assert full["t2i"] == pytest.approx(exhaustive["t2i"]) and full["before"]["t2i"] == pytest.approx(exhaustive["t2i"])
    assert [s["stage"] for s in full["search"]["stages"]] == ["moments", "head"]
    two = evaluate_model(ds, enc, show_progress=False, candidates=1)  # the head only re-orders the top 1: R@1 of
    assert two["search"]["candidates"] == 1  # the candidate vectors (uniform attention) decides R@1 here
    with pytest.raises(Exception, match="gallery holds videos|holds videos"):
        evaluate_model(ds, enc, show_progress=False, candidates=2, rerank="xattn:/nowhere")
