"""`xmr serve` over an index built with a whole-clip video model (``trained:DIR`` of a 1-epoch MILES run, the
fixture of tests/test_clip_video.py): a text search with type=video ranks the clips exactly as ``xmr search`` does;
an image query and a moment search are refused with a 4xx and the reason (the CLI's, for moments), never a 500."""
from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("fastapi", reason="xmr serve needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx: pip install -e '.[serve,browser]'")
pytest.importorskip("av", reason="video items need PyAV (pip install 'xmr[video]')")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import SAMPLES, run_cli  # noqa: E402
from test_clip_video import run_dir  # noqa: E402,F401  (the trained whole-clip model)
from test_miles import videos  # noqa: E402,F401  (its synthetic clips)


@pytest.fixture(scope="module")
def clip_index(videos, run_dir, tmp_path_factory):  # noqa: F811
    from xmr.encoders import create_encoder
    from xmr.index import index_folder

    folder = tmp_path_factory.mktemp("clipserve") / "clips"
    folder.mkdir()
    for p in sorted((videos.parent / "videos").glob("*.mp4"))[:4]:
        shutil.copy(p, folder / p.name)
    enc = create_encoder(f"trained:{run_dir}")
    idx = folder.parent / "idx"
    index_folder(folder, idx, enc, show_progress=False)
    return idx, enc


@pytest.fixture(scope="module")
def client(clip_index):
    from xmr.serve import create_app

    idx, enc = clip_index
    return TestClient(create_app(idx, encoder=enc), base_url="http://127.0.0.1", raise_server_exceptions=False)


def _caption(videos) -> str:  # noqa: F811
    return json.loads(videos.read_text().splitlines()[0])["captions"][0]


def test_text_search_for_videos_ranks_the_clips_as_the_cli_does(client, clip_index, videos, capsys):  # noqa: F811
    idx, _ = clip_index
    q = _caption(videos)
    r = client.get("/api/search", params={"q": q, "type": "video", "k": 4})
    assert r.status_code == 200, r.text
    got = r.json()["results"]
    code, out, err = run_cli(capsys, "search", q, "--index", str(idx), "--type", "video", "--k", "4", "--json")
    assert code == 0, err
    want = json.loads(out)["results"]
    assert len(got) == 4 and all(x["media_type"] == "video" for x in got)
    assert [x["path"] for x in got] == [w["path"].split("/")[-1] for w in want]
    assert [x["score"] for x in got] == pytest.approx([w["score"] for w in want], abs=1e-5)
    assert all("start" not in x for x in got)  # one vector per video: no best segment to report
    alltypes = client.get("/api/search", params={"q": q, "k": 4})
    assert alltypes.status_code == 200 and [x["path"] for x in alltypes.json()["results"]] == [x["path"] for x in got]


def _refusal(r, capsys, *cli) -> str:
    """The server's 4xx message, checked to be the one line ``xmr search`` prints for the same query."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    msg = r.json()["error"]
    code, _, err = run_cli(capsys, "search", *cli)
    assert code == 2 and err.strip() == f"xmr: error: {msg}", (msg, err)
    return msg


def test_image_query_is_refused_with_the_reason(client, clip_index, capsys):
    idx, _ = clip_index
    data = (SAMPLES / "chelsea.png").read_bytes()
    for typ in ("all", "video"):
        r = client.post("/api/search/image", params={"type": typ}, files={"file": ("q.png", data, "image/png")})
        msg = _refusal(r, capsys, "--image", str(SAMPLES / "chelsea.png"), "--index", str(idx), "--type", typ)
        assert "embeds whole video clips, not images" in msg and "text query" in msg


def test_moment_search_is_refused_with_the_clis_reason(client, clip_index, capsys):
    idx, _ = clip_index
    for params in ({"q": "a circle", "type": "moment"}, {"q": "a circle", "type": "moment", "k": 3, "not": "red"}):
        r = client.get("/api/search", params=params)  # the fast path and the FastAPI route
        msg = _refusal(r, capsys, "a circle", "--index", str(idx), "--type", "moment")
        assert "whole-clip model" in msg and "--type video" in msg
    assert client.get("/health").json()["items"] == 4  # still serving
