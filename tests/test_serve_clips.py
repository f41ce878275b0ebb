"""`xmr serve` over an index built with a whole-clip video model (``trained:DIR`` of a 1-epoch MILES run, the
fixture of tests/test_clip_video.py): text searches with type=video and type=moment answer what ``xmr search``
answers; an image query, and a moment search on an index built before windows were embedded (no segments), are
refused with a 4xx and the CLI's own reason, never a 500."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="xmr serve needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx: pip install -e '.[serve,browser]'")
pytest.importorskip("av", reason="video items need PyAV (pip install 'xmr[video]')")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import SAMPLES, run_cli  # noqa: E402
from test_clip_video import run_dir  # noqa: E402,F401  (the trained whole-clip model)
from test_miles import videos  # noqa: E402,F401  (its synthetic 1 s clips)


def _index(videos, run_dir, out: Path, monkeypatch=None):  # noqa: F811
    """4 clips indexed with 0.5 s windows every 0.25 s (3 windows each); with ``monkeypatch``, as an index built
    before whole-clip windows were embedded (one vector per video, no segments)."""
    from xmr.encoders import create_encoder
    from xmr.index import index_folder
    from xmr.video.embed import VideoIndexConfig

    folder = out / "clips"
    folder.mkdir(parents=True)
    for p in sorted((videos.parent / "videos").glob("*.mp4"))[:4]:
        shutil.copy(p, folder / p.name)
    enc = create_encoder(f"trained:{run_dir}")
    if monkeypatch is not None:
        import xmr.video.clips as clips

        whole = clips.embed_clip_video
        monkeypatch.setattr(clips, "embed_clip_video",
                            lambda *a, **kw: dataclasses.replace(whole(*a, **kw), segments=[]))
    index_folder(folder, out / "idx", enc, show_progress=False, video=VideoIndexConfig(window=0.5, stride=0.25))
    return out / "idx", enc


def _client(idx, enc) -> TestClient:
    from xmr.serve import create_app

    return TestClient(create_app(idx, encoder=enc), base_url="http://127.0.0.1", raise_server_exceptions=False)


@pytest.fixture(scope="module")
def clip_index(videos, run_dir, tmp_path_factory):  # noqa: F811
    return _index(videos, run_dir, tmp_path_factory.mktemp("clipserve"))


@pytest.fixture(scope="module")
def client(clip_index):
    return _client(*clip_index)


def _caption(videos) -> str:  # noqa: F811
    return json.loads(videos.read_text().splitlines()[0])["captions"][0]


def _same_as_cli(got: list[dict], capsys, *cli) -> None:
    code, out, err = run_cli(capsys, "search", *cli, "--json")
    assert code == 0, err
    want = json.loads(out)["results"]
    assert len(got) == len(want) > 0
    assert [x["path"] for x in got] == [Path(w["path"]).name for w in want]
    assert [x["score"] for x in got] == pytest.approx([w["score"] for w in want], abs=1e-5)
    for x, w in zip(got, want):  # the window a video scored with / the moment's bounds
        assert (x.get("start"), x.get("end")) == pytest.approx((w.get("start"), w.get("end")), abs=1e-5)


def _refusal(r, capsys, *cli) -> str:
    """The server's 4xx message, checked to be the one line ``xmr search`` prints for the same query."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    msg = r.json()["error"]
    code, _, err = run_cli(capsys, "search", *cli)
    assert code == 2 and err.strip() == f"xmr: error: {msg}", (msg, err)
    return msg


def test_text_searches_for_videos_and_moments_answer_as_the_cli(client, clip_index, videos, capsys):  # noqa: F811
    idx, _ = clip_index
    q = _caption(videos)
    for typ in ("video", "moment"):
        r = client.get("/api/search", params={"q": q, "type": typ, "k": 4})
        assert r.status_code == 200, r.text
        got = r.json()["results"]
        assert all(x["media_type"] == "video" for x in got)
        if typ == "moment":  # windows embedded as clips: moments with their bounds inside the 1 s clips
            assert all(0 <= x["start"] < x["end"] <= 1.0 + 1e-6 for x in got)
        _same_as_cli(got, capsys, q, "--index", str(idx), "--type", typ, "--k", "4")
    both = client.get("/api/search", params={"q": q, "k": 4})
    assert both.status_code == 200 and [x["path"] for x in both.json()["results"]] == \
        [x["path"] for x in client.get("/api/search", params={"q": q, "type": "video", "k": 4}).json()["results"]]


def test_image_query_is_refused_with_the_clis_reason(client, clip_index, capsys):
    idx, _ = clip_index
    data = (SAMPLES / "chelsea.png").read_bytes()
    for typ in ("all", "video"):
        r = client.post("/api/search/image", params={"type": typ}, files={"file": ("q.png", data, "image/png")})
        msg = _refusal(r, capsys, "--image", str(SAMPLES / "chelsea.png"), "--index", str(idx), "--type", typ)
        assert "embeds whole video clips, not images" in msg and "text query" in msg
    assert client.get("/health").json()["items"] == 4  # still serving


def test_moment_search_without_windows_is_refused_with_the_clis_reason(videos, run_dir, tmp_path,  # noqa: F811
                                                                       monkeypatch, capsys):
    idx, enc = _index(videos, run_dir, tmp_path, monkeypatch)
    c = _client(idx, enc)
    for params in ({"q": "a circle", "type": "moment"}, {"q": "a circle", "type": "moment", "k": 3, "not": "red"}):
        r = c.get("/api/search", params=params)  # the fast path and the FastAPI route
        msg = _refusal(r, capsys, "a circle", "--index", str(idx), "--type", "moment")
        assert "re-index it" in msg and "--type video" in msg
    r = c.get("/api/search", params={"q": "a circle", "type": "video"})
    assert r.status_code == 200 and len(r.json()["results"]) == 4
