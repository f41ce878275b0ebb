"""Everything at Once and ECLIPSE as index models (``xmr train-av``, ``xmr index --model eao:DIR / eclipse:DIR``,
``xmr search``, ``xmr serve``) on ``xmr synth videos --sound`` clips: the stored vectors are the model's embedding
of the file's frames and sound (the same tokens it trained on), sound captions find their clips, a video without
sound is embedded from its frames, a broken file is skipped with its reason, bad models / data are refused."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, SAMPLES, run_cli

pytest.importorskip("av", reason="video with sound needs PyAV: pip install -e '.[video]'")


@pytest.fixture(scope="module")
def av_world(tmp_path_factory):
    """12 synthetic clips with sound (+ a silent fixture video, an image, a broken .mp4), an eao model trained on
    the clips with `xmr train-av`, and the folder indexed with it."""
    from xmr.cli import main
    from xmr.synth.sounds import generate_sound_videos

    root = tmp_path_factory.mktemp("av")
    manifest = generate_sound_videos(root / "sv", n=12, seed=0)
    assert main(["-q", "train-av", "--model", "eao", "--captions", str(manifest), "--out", str(root / "eao"),
                 "--epochs", "30"]) == 0
    vids = root / "sv" / "videos"
    shutil.copy(FIXTURES / "video" / "video9771.mp4", vids / "silent.mp4")  # MSR-VTT clip without an audio track
    shutil.copy(SAMPLES / "chelsea.png", vids / "chelsea.png")
    (vids / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    return root, manifest, [json.loads(x) for x in manifest.read_text().splitlines()]


def _index(root, capsys, model, name="idx"):
    code, out, err = run_cli(capsys, "index", str(root / "sv" / "videos"), "--index", str(root / name),
                             "--model", f"{model}:{root / model}")
    assert code == 0, err
    return root / name, out + err


def test_index_and_search_videos_with_sound_by_eao(av_world, capsys):
    from xmr.encoders import create_encoder
    from xmr.index.snapshot import open_reader
    from xmr.video.av import read_spans

    root, _, lines = av_world
    idx, printed = _index(root, capsys, "eao")
    assert "14 added" in printed and "1 skipped" in printed and "broken.mp4" in printed
    code, out, _ = run_cli(capsys, "info", "--index", str(idx))  # how the videos were read: frames + sound
    assert code == 0 and "videos: eao: 8 frames (64 px) + 8 audio chunks (16000 Hz" in out
    store, reader = open_reader(idx)
    try:
        assert reader.model_spec == f"eao:{root / 'eao'}"
        enc = create_encoder(reader.model_spec)
        by_name = {Path(r.path).name: r.id for r in store.items_under(str(root / "sv" / "videos")).values()}
        clip = root / "sv" / lines[0]["media"]
        (v, a), = read_spans(clip, enc.config)[2]
        assert a is not None  # the clip's sound track is read
        stored = reader.item_vectors([by_name[clip.name], by_name["silent.mp4"], by_name["chelsea.png"]])
        # the stored vector is the model's fused video+audio embedding of exactly these tokens
        np.testing.assert_allclose(stored[0], enc.encode_av(v[None], a[None])[0], atol=1e-5)
        assert float(stored[0] @ enc.encode_av(v[None], None)[0]) < 0.999  # and the sound changed it
        (sv, sa), = read_spans(root / "sv" / "videos" / "silent.mp4", enc.config)[2]
        assert sa is None  # no audio track: the frames alone, the model's video embedding
        np.testing.assert_allclose(stored[1], enc.encode_av(sv[None], None)[0], atol=1e-5)
        np.testing.assert_allclose(stored[2], enc.encode_images([SAMPLES / "chelsea.png"])[0], atol=1e-5)
    finally:
        store.close()
    # a sound caption finds a clip with that sound (its own model's text tower encodes the query)
    sounds = sorted({x["sound"] for x in lines})
    right = 0
    for q in sounds:
        code, out, err = run_cli(capsys, "search", q, "--index", str(idx), "--json", "-k", "1", "--type", "video")
        assert code == 0, err
        top = json.loads(out)["results"][0]
        right += any(x["sound"] == q and Path(x["media"]).name == Path(top["path"]).name for x in lines)
        assert top["end"] > top["start"] >= 0.0  # a video result: its best span (the whole 2 s clip for these)
    assert right / len(sounds) >= 0.75, (right, len(sounds))
    # an image query goes through the model's one-frame video embedding
    code, out, err = run_cli(capsys, "search", "--image", str(SAMPLES / "chelsea.png"), "--index", str(idx), "--json")
    assert code == 0 and Path(json.loads(out)["results"][0]["path"]).name == "chelsea.png", err


def test_serve_answers_on_an_eao_index(av_world, capsys):
    pytest.importorskip("fastapi", reason="xmr serve needs the serve extra")
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
    from fastapi.testclient import TestClient

    from xmr.serve import create_app

    root, _, lines = av_world
    idx = root / "idx" if (root / "idx").exists() else _index(root, capsys, "eao")[0]
    client = TestClient(create_app(idx), base_url="http://127.0.0.1")
    body = client.get("/api/search", params={"q": lines[0]["sound"], "k": 3, "type": "video"}).json()
    assert body["model"] == f"eao:{root / 'eao'}" and len(body["results"]) == 3


def test_eclipse_index_uses_the_sound(av_world, capsys):
    from xmr.encoders import create_encoder
    from xmr.index.snapshot import open_reader
    from xmr.video.av import read_spans

    root, manifest, lines = av_world
    code, _, err = run_cli(capsys, "-q", "train-av", "--model", "eclipse", "--captions", str(manifest), "--out",
                           str(root / "eclipse"), "--epochs", "3")
    assert code == 0, err
    idx, _ = _index(root, capsys, "eclipse", "idx-eclipse")
    store, reader = open_reader(idx)
    try:
        enc = create_encoder(reader.model_spec)
        assert (enc.config.frames, enc.config.chunks) == (4, 24)  # ECLIPSE: sparse frames, dense audio
        clip = root / "sv" / lines[1]["media"]
        item = next(r.id for p, r in store.items_under(str(root / "sv" / "videos")).items() if p.endswith(clip.name))
        (v, a), = read_spans(clip, enc.config)[2]
        assert v.shape[0] == 4 and a.shape[0] == 24
        np.testing.assert_allclose(reader.item_vectors([item])[0], enc.encode_av(v[None], a[None])[0], atol=1e-5)
    finally:
        store.close()


def test_av_models_refuse_what_they_cannot_use(av_world, capsys, tmp_path):
    root, manifest, _ = av_world
    vids = root / "sv" / "videos"
    for argv, why in ((["--model", "eao"], "eao: needs the folder of a trained model"),
                      (["--model", f"eao:{tmp_path / 'none'}"], "directory not found"),
                      (["--model", f"eclipse:{root / 'eao'}"], "is not a ECLIPSE model")):
        code, _, err = run_cli(capsys, "index", str(vids), "--index", str(tmp_path / "i"), *argv)
        assert code == 2 and why in err, (argv, err)
    silent = tmp_path / "silent.jsonl"  # a training clip without sound is named, not silently dropped
    silent.write_text(json.dumps({"media": str(vids / "silent.mp4"), "caption": "people"}) + "\n"
                      + manifest.read_text().replace('"videos/', f'"{root / "sv"}/videos/'))
    code, _, err = run_cli(capsys, "train-av", "--model", "eao", "--captions", str(silent), "--out",
                           str(tmp_path / "m"), "--epochs", "1")
    assert code == 2 and "silent.mp4: no audio track" in err
    code, _, err = run_cli(capsys, "train-av", "--model", "eao", "--captions", str(manifest), "--out",
                           str(root / "eao"))
    assert code == 2 and "not an empty folder" in err


def test_eval_reads_videos_with_sound_like_the_index(av_world, capsys):
    """`xmr eval` on the clips' manifest with an eao model: each clip through the same frames + sound tokens."""
    from xmr.encoders import create_encoder
    from xmr.eval.ranks import metrics_from_ranks, ranks_t2i
    from xmr.video.av import read_spans

    root, manifest, lines = av_world
    code, out, err = run_cli(capsys, "eval", "--dataset", f"manifest:{manifest}", "--model", f"eao:{root / 'eao'}",
                             "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["fingerprint"]["video"]["av"]["frames"] == 8  # the fingerprint says how clips were read
    enc = create_encoder(f"eao:{root / 'eao'}")
    toks = [read_spans(root / "sv" / x["media"], enc.config)[2][0] for x in lines]
    G = enc.encode_av(np.stack([v for v, _ in toks]), np.stack([a for _, a in toks]))
    caps = [c for x in lines for c in x["captions"]]
    owner = np.repeat(np.arange(len(lines)), [len(x["captions"]) for x in lines])
    want = metrics_from_ranks(ranks_t2i(enc.encode_text(caps) @ G.T, owner), ks=(1, 5, 10))
    assert got["t2i"]["R@1"] == pytest.approx(float(want["R@1"]), abs=1e-6)
    assert got["t2i"]["R@5"] == pytest.approx(float(want["R@5"]), abs=1e-6)
