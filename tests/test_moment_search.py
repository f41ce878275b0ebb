"""Moment search over an index's video segments (`xmr search --type moment`): training-free proposals, a SQuiDNet
checkpoint as the localiser, and a clear error for an index without videos."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

av = pytest.importorskip("av", reason="video support needs PyAV (pip install 'xmr[video]')")

from _video_clips import make_clip  # noqa: E402
from conftest import FIXTURES, SAMPLES  # noqa: E402
from xmr.cli import main  # noqa: E402
from xmr.errors import XmrIndexError  # noqa: E402
from xmr.index import index_folder  # noqa: E402
from xmr.index.snapshot import open_reader  # noqa: E402
from xmr.localize.squidnet import SQuiDNet  # noqa: E402
from xmr.retrieval import Query  # noqa: E402
from xmr.retrieval.moment_search import search_moments  # noqa: E402


@pytest.fixture(scope="module")
def video_index(tmp_path_factory, tiny_encoder):
    d = tmp_path_factory.mktemp("moments")
    media = d / "media"
    media.mkdir()
    shutil.copy(FIXTURES / "video" / "video9771.mp4", media / "gymnastics.mp4")
    make_clip(media / "synthetic.mkv", n_frames=60, fps=10, pattern="noise")
    shutil.copy(SAMPLES / "coffee.png", media / "coffee.png")
    index_folder(media, d / "idx", tiny_encoder, show_progress=False)
    return d / "idx"


def test_proposal_moments_ranked_across_videos(video_index, tiny_encoder):
    store, reader = open_reader(video_index)
    try:
        out = search_moments(reader, tiny_encoder, Query.text("a gymnast"), k=5)
        segs = {r.item_id: [] for r in reader.snap.segment_rows.values()}
        for r in reader.snap.segment_rows.values():
            segs[r.item_id].append((r.start, r.end))
    finally:
        store.close()
    assert 1 <= len(out.results) <= 5 and all(r.media_type == "video" for r in out.results)
    assert [r.rank for r in out.results] == list(range(1, len(out.results) + 1))
    assert all(a.score >= b.score for a, b in zip(out.results, out.results[1:]))
    for r in out.results:  # each moment lies within its video's segment timeline, start < end
        lo, hi = min(s for s, _ in segs[r.id]), max(e for _, e in segs[r.id])
        assert lo <= r.start < r.end <= hi
    assert out.stages[-1]["localizer"] == "proposals"


def test_squidnet_checkpoint_localises(video_index, tiny_encoder, tmp_path):
    model = SQuiDNet({"dim": tiny_encoder.dim, "hidden": 8, "max_moment": 3})
    model.save(tmp_path / "sq")
    store, reader = open_reader(video_index)
    try:
        out = search_moments(reader, tiny_encoder, Query.text("a gymnast"), k=4, model=SQuiDNet.load(tmp_path / "sq"))
    finally:
        store.close()
    assert len(out.results) == 4 and out.stages[-1]["localizer"] == "squidnet"
    assert all(r.start < r.end and np.isfinite(r.score) for r in out.results)


def test_cli_moment_search_json_and_errors(video_index, tmp_path, capsys):
    assert main(["search", "a gymnast", "--index", str(video_index), "--type", "moment", "--k", "3", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert 1 <= len(d["results"]) <= 3 and all(r["start"] < r["end"] for r in d["results"])
    assert {r["id"] for r in d["results"]} == {1, 2}  # both videos, the image never
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(SAMPLES / "coffee.png", photos / "coffee.png")
    assert main(["-q", "index", str(photos), "--index", str(tmp_path / "img"), "--model", "tiny"]) == 0
    capsys.readouterr()
    assert main(["search", "a cup", "--index", str(tmp_path / "img"), "--type", "moment"]) == 2
    err = capsys.readouterr().err
    assert "moment search needs videos" in err and len(err.strip().splitlines()) == 1
    assert main(["search", "x", "--index", str(video_index), "--moment-model", str(tmp_path)]) == 2
    assert "--moment-model needs --type moment" in capsys.readouterr().err


def test_image_only_index_is_refused_by_the_api(tmp_path, tiny_encoder):
    photos = tmp_path / "p"
    photos.mkdir()
    shutil.copy(SAMPLES / "coffee.png", photos / "coffee.png")
    index_folder(photos, tmp_path / "i", tiny_encoder, show_progress=False)
    store, reader = open_reader(tmp_path / "i")
    try:
        with pytest.raises(XmrIndexError, match="no video segments"):
            search_moments(reader, tiny_encoder, Query.text("a cup"))
    finally:
        store.close()


def test_rest_api_type_moment(video_index, tiny_encoder, tmp_path):
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx: pip install -e '.[serve,browser]'")
    from fastapi.testclient import TestClient

    from xmr.serve import ServeSettings, create_app

    client = TestClient(create_app(video_index, encoder=tiny_encoder, settings=ServeSettings()),
                        base_url="http://127.0.0.1", raise_server_exceptions=False)
    r = client.get("/api/search", params={"q": "a gymnast", "type": "moment", "k": 3})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["type"] == "moment" and d["results"] and all(x["start"] < x["end"] for x in d["results"])
    assert d["stages"][-1]["localizer"] == "proposals"
    photos = tmp_path / "p"
    photos.mkdir()
    shutil.copy(SAMPLES / "coffee.png", photos / "coffee.png")
    index_folder(photos, tmp_path / "i", tiny_encoder, show_progress=False)
    images = TestClient(create_app(tmp_path / "i", encoder=tiny_encoder, settings=ServeSettings()),
                        base_url="http://127.0.0.1", raise_server_exceptions=False)
    r = images.get("/api/search", params={"q": "a cup", "type": "moment"})
    assert r.status_code == 422 and "moment search needs videos" in r.text


def test_rest_api_moment_model(video_index, tiny_encoder, tmp_path):
    """``xmr serve --moment-model DIR``: type=moment searches are localised by the SQuiDNet; a model of another
    width stops the server at start with the reason."""
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx: pip install -e '.[serve,browser]'")
    from fastapi.testclient import TestClient

    from xmr.errors import ConfigError, XmrError
    from xmr.serve import ServeSettings, create_app

    SQuiDNet({"dim": tiny_encoder.dim, "hidden": 8, "max_moment": 3}).save(tmp_path / "sq")
    client = TestClient(create_app(video_index, encoder=tiny_encoder,
                                   settings=ServeSettings(moment_model=str(tmp_path / "sq"))),
                        base_url="http://127.0.0.1", raise_server_exceptions=False)
    r = client.get("/api/search", params={"q": "a gymnast", "type": "moment", "k": 4})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["stages"][-1]["localizer"] == "squidnet" and len(d["results"]) == 4
    assert all(x["start"] < x["end"] and x["media_type"] == "video" for x in d["results"])
    # the other types are unaffected by the moment model
    r = client.get("/api/search", params={"q": "a gymnast", "type": "video", "k": 2})
    assert r.status_code == 200 and "localizer" not in json.dumps(r.json()["stages"])
    SQuiDNet({"dim": tiny_encoder.dim + 1, "hidden": 8}).save(tmp_path / "wide")
    with pytest.raises(ConfigError, match="train it on this index's encoder"):
        create_app(video_index, encoder=tiny_encoder, settings=ServeSettings(moment_model=str(tmp_path / "wide")))
    with pytest.raises(XmrError, match="directory not found"):
        create_app(video_index, encoder=tiny_encoder, settings=ServeSettings(moment_model=str(tmp_path / "none")))


def test_serve_cli_refuses_a_bad_moment_model(video_index, tmp_path, capsys):
    """`xmr serve --moment-model` loads and checks the model before binding a port: a missing folder or another
    width is one line, exit 2."""
    pytest.importorskip("uvicorn", reason="xmr serve needs the serve extra: pip install -e '.[serve]'")
    assert main(["serve", "--index", str(video_index), "--moment-model", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "directory not found" in err and len(err.strip().splitlines()) == 1
    SQuiDNet({"dim": 7, "hidden": 4}).save(tmp_path / "w7")
    assert main(["serve", "--index", str(video_index), "--moment-model", str(tmp_path / "w7")]) == 2
    assert "trained on 7-wide features" in capsys.readouterr().err
