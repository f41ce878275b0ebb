"""xmr embed / xmr export without Ray: the clip-retrieval shard layout, sources (folder, manifest, webdataset and
parquet shards in img2dataset's layout), resume shard by shard, bad input, and the wds / parquet dataset loaders."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import FIXTURES, SAMPLES, run_cli

from xmr.embed import embed_source, export_index, iter_shards, read_info
from xmr.errors import ConfigError, XmrIndexError

WDS = FIXTURES / "wds_tiny"
PARQUET = FIXTURES / "parquet_tiny"


def _all(out):
    """(vectors float32 (N, d), metadata rows) of every shard of ``out``, in shard order."""
    vecs, meta = [], []
    for _, v, m in iter_shards(out):
        vecs.append(v.astype(np.float32))
        meta.extend(m)
    return np.concatenate(vecs), meta


def _photos_with_bad(tmp_path) -> Path:
    d = tmp_path / "photos"
    shutil.copytree(SAMPLES, d, ignore=shutil.ignore_patterns("*.json", "*.md"))
    shutil.copy(FIXTURES / "truncated.jpg", d / "zz_truncated.jpg")
    (d / "sub").mkdir()
    shutil.copy(SAMPLES / "horse.png", d / "sub" / "horse_copy.png")
    return d


def test_embed_folder_writes_clip_retrieval_layout(tmp_path, tiny_encoder):
    src = _photos_with_bad(tmp_path)
    out = tmp_path / "emb"
    rep = embed_source(str(src), str(out), "tiny", shard_size=4, dtype="float16")
    files = sorted(str(p) for p in src.rglob("*.*"))
    good = [f for f in files if not f.endswith("zz_truncated.jpg")]
    assert (rep.shards, rep.encoded, rep.total, rep.resumed) == (3, 9, 9, 0)  # 10 files, 4 per shard
    assert [s["path"] for s in rep.skipped] == [str(src / "zz_truncated.jpg")]
    assert "truncated" in rep.skipped[0]["reason"]
    for n in range(3):
        assert (out / "img_emb" / f"img_emb_{n}.npy").is_file() and (out / "metadata" / f"metadata_{n}.parquet").is_file()
    assert np.load(out / "img_emb" / "img_emb_0.npy").dtype == np.float16
    vecs, meta = _all(out)
    assert [m["image_path"] for m in meta] == good  # sorted paths, bad one left out (no placeholder row)
    ref = tiny_encoder.encode_images(good)
    np.testing.assert_allclose(vecs, ref, atol=2e-3)  # float16 storage
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=2e-3)
    info = json.loads((out / "embed_info.json").read_text())
    assert info["model"] == "tiny" and info["dim"] == tiny_encoder.dim and info["dtype"] == "float16"
    assert info["count"] == 9 and info["num_skipped"] == 1 and info["done"] is True
    assert [s["count"] for s in info["shards"]] == [4, 4, 1]
    assert info["shards"][2]["skipped"][0]["path"].endswith("zz_truncated.jpg")


def test_embed_resumes_shard_by_shard(tmp_path, monkeypatch):
    from xmr.embed.worker import ShardEncoder

    src = tmp_path / "photos"
    shutil.copytree(SAMPLES, src, ignore=shutil.ignore_patterns("*.json", "*.md"))
    out = tmp_path / "emb"
    calls = []
    real = ShardEncoder.encode_unit

    def crash_after_first(self, unit):
        calls.append(unit.n)
        if len(calls) > 1:
            raise KeyboardInterrupt  # the run is killed while shard 1 is in flight
        return real(self, unit)

    monkeypatch.setattr(ShardEncoder, "encode_unit", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        embed_source(str(src), str(out), "tiny", shard_size=3, dtype="float32")
    info = read_info(out)
    assert [s.done for s in info.shards] == [True, False, False]
    first = out / "img_emb" / "img_emb_0.npy"
    stamp = first.stat().st_mtime_ns
    calls.clear()
    monkeypatch.setattr(ShardEncoder, "encode_unit", lambda self, unit: (calls.append(unit.n), real(self, unit))[1])
    rep = embed_source(str(src), str(out), "tiny", shard_size=3, dtype="float32")
    assert calls == [1, 2] and rep.resumed == 1 and rep.encoded == 5 and rep.total == 8
    assert first.stat().st_mtime_ns == stamp  # the finished shard was not rewritten
    calls.clear()
    rep = embed_source(str(src), str(out), "tiny", shard_size=3, dtype="float32")
    assert calls == [] and rep.resumed == 3 and rep.total == 8
    # a fresh run gives the same vectors as the resumed one
    rep2 = embed_source(str(src), str(tmp_path / "again"), "tiny", shard_size=3, dtype="float32")
    a, ma = _all(out)
    b, mb = _all(tmp_path / "again")
    assert ma == mb and rep2.total == 8
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_embed_refuses_to_mix_runs(tmp_path):
    src = tmp_path / "photos"
    shutil.copytree(SAMPLES, src, ignore=shutil.ignore_patterns("*.json", "*.md"))
    out = tmp_path / "emb"
    embed_source(str(src), str(out), "tiny", shard_size=4, dtype="float16")
    with pytest.raises(ConfigError, match="dtype 'float16', not 'float32'"):
        embed_source(str(src), str(out), "tiny", shard_size=4, dtype="float32")
    with pytest.raises(ConfigError, match="model 'tiny', not 'concept'"):
        embed_source(str(src), str(out), "concept", shard_size=4, dtype="float16")
    shutil.copy(SAMPLES / "rocket.jpg", src / "another.jpg")
    with pytest.raises(ConfigError, match="changed since"):
        embed_source(str(src), str(out), "tiny", shard_size=4, dtype="float16")
    with pytest.raises(ConfigError, match="unknown encoder|not a known|Available"):
        embed_source(str(src), str(tmp_path / "x"), "no-such-model")
    with pytest.raises(ConfigError, match="no such file"):
        embed_source(str(tmp_path / "missing"), str(tmp_path / "y"), "tiny")


def _decode(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


def test_embed_webdataset_shards(tmp_path, tiny_encoder):
    out = tmp_path / "emb"
    rep = embed_source(str(WDS), str(out), "tiny", dtype="float32")
    assert rep.kind == "wds" and rep.shards == 2 and rep.total == 5
    assert len(rep.skipped) == 1 and rep.skipped[0]["path"].endswith("00000.tar#000000003.jpg")
    assert "corrupt or truncated" in rep.skipped[0]["reason"]
    vecs, meta = _all(out)
    assert [m["key"] for m in meta] == ["000000000", "000000001", "000000002", "000010000", "000010001"]
    caps = json.loads((SAMPLES / "captions.json").read_text())
    assert meta[0]["caption"] == caps["astronaut.png"] and meta[0]["url"].endswith("astronaut.png")
    assert meta[3]["image_path"] == f"{WDS / '00001.tar'}#000010000.jpg"
    with tarfile.open(WDS / "00000.tar") as tf:
        img = _decode(tf.extractfile("000000001.jpg").read())
    np.testing.assert_allclose(vecs[1], tiny_encoder.encode_images([img])[0], atol=1e-5)


def test_embed_parquet_shards(tmp_path, tiny_encoder):
    out = tmp_path / "emb"
    rep = embed_source(str(PARQUET), str(out), "tiny", dtype="float32")
    assert rep.kind == "parquet" and rep.total == 3
    assert rep.skipped == [{"path": f"{PARQUET / '00000.parquet'}#000000002",
                            "reason": "no image (status failed_to_download: HTTP Error 404: Not Found)"}]
    vecs, meta = _all(out)
    assert [m["key"] for m in meta] == ["000000000", "000000001", "000000003"]
    rows = pq.read_table(PARQUET / "00000.parquet").to_pylist()
    np.testing.assert_allclose(vecs[2], tiny_encoder.encode_images([_decode(rows[3]["jpg"])])[0], atol=1e-5)
    assert meta[2]["caption"] == rows[3]["caption"] and meta[2]["status"] == "success"


def test_embed_manifest_source_cli(tmp_path, capsys):
    caps = json.loads((SAMPLES / "captions.json").read_text())
    man = tmp_path / "m.jsonl"
    man.write_text("".join(json.dumps({"image": str(SAMPLES / n), "caption": c, "id": n.split(".")[0]}) + "\n"
                           for n, c in sorted(caps.items())[:3]))
    code, out, err = run_cli(capsys, "-q", "embed", str(man), "--model", "tiny", "--out", str(tmp_path / "e"),
                             "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["kind"] == "manifest" and rep["total"] == 3 and rep["failed"] == []
    _, meta = _all(tmp_path / "e")
    assert [m["caption"] for m in meta] == [c for _, c in sorted(caps.items())[:3]]
    assert [m["key"] for m in meta] == [n.split(".")[0] for n, _ in sorted(caps.items())[:3]]


def test_embed_broken_tar_fails_that_shard_only(tmp_path, capsys):
    src = tmp_path / "wds"
    src.mkdir()
    shutil.copy(WDS / "00001.tar", src / "00001.tar")
    data = (WDS / "00000.tar").read_bytes()
    (src / "00000.tar").write_bytes(data[: len(data) // 2 + 100])  # cut in the middle of a member
    code, out, err = run_cli(capsys, "-q", "embed", str(src), "--model", "tiny", "--out", str(tmp_path / "e"))
    assert code == 1
    assert f"{src / '00000.tar'}: cannot read the tar shard" in err and "re-run" in err
    info = read_info(tmp_path / "e")
    assert [(s.done, s.count) for s in info.shards] == [(False, 0), (True, 2)]
    assert not (tmp_path / "e" / "img_emb" / "img_emb_0.npy").exists()  # nothing half-written


def test_url_only_parquet_is_refused_with_the_fix(tmp_path):
    src = tmp_path / "urls.parquet"
    pq.write_table(pa.table({"url": ["https://example.invalid/a.jpg"], "caption": ["a"]}), src)
    with pytest.raises(ConfigError, match="only URLs: download the images first"):
        embed_source(str(src), str(tmp_path / "e"), "tiny")


def test_export_roundtrip(tmp_path, tiny_encoder):
    from xmr.index import IndexStore, index_folder

    photos = _photos_with_bad(tmp_path)
    idx = tmp_path / "idx"
    index_folder(photos, idx, tiny_encoder, show_progress=False)
    info = export_index(str(idx), str(tmp_path / "exp"), shard_size=4)
    assert (info.count, len(info.shards), info.dim, info.model) == (9, 3, tiny_encoder.dim, "tiny")
    vecs, meta = _all(tmp_path / "exp")
    with IndexStore(idx, readonly=True) as st:
        ids, ref = zip(*st.iter_vectors())
        ids, ref = np.concatenate(ids), np.concatenate(ref)
        paths = [st.get_items([int(i)])[int(i)].path for i in ids]
    np.testing.assert_array_equal(vecs, ref)  # float32 export is exact
    assert [m["image_path"] for m in meta] == paths and [m["key"] for m in meta] == [str(i) for i in ids]
    assert {m["media_type"] for m in meta} == {"image"}
    with pytest.raises(ConfigError, match="already holds embedding shards"):
        export_index(str(idx), str(tmp_path / "exp"))
    with pytest.raises(XmrIndexError, match="no index"):
        export_index(str(tmp_path / "nothing"), str(tmp_path / "exp2"))
    half = export_index(str(idx), str(tmp_path / "exp16"), dtype="float16")
    v16, _ = _all(tmp_path / "exp16")
    assert half.dtype == "float16" and np.abs(v16 - ref).max() < 1e-3


def test_export_cli(tmp_path, capsys, tiny_encoder):
    from xmr.index import index_folder

    idx = tmp_path / "idx"
    index_folder(SAMPLES, idx, tiny_encoder, show_progress=False)
    code, out, err = run_cli(capsys, "export", "--index", str(idx), "--out", str(tmp_path / "exp"), "--json")
    assert code == 0, err
    assert json.loads(out)["count"] == 8
    code, out, err = run_cli(capsys, "export", "--index", str(idx), "--out", str(tmp_path / "exp"))
    assert code == 2 and err.startswith("xmr: error:") and "already holds" in err


def test_wds_and_parquet_datasets(tmp_path, monkeypatch):
    from PIL import Image

    from xmr.data import load_dataset

    monkeypatch.setenv("XMR_CACHE", str(tmp_path / "cache"))
    caps = json.loads((SAMPLES / "captions.json").read_text())
    ds = load_dataset(f"wds:{WDS}")
    assert len(ds) == 6 and [it.id for it in ds.items][:2] == ["000000000", "000000001"]
    assert ds.items[0].captions == (caps["astronaut.png"],)
    assert Path(ds.items[0].media).is_relative_to(tmp_path / "cache")
    assert Image.open(ds.items[0].media).size[0] <= 96
    assert ds.source_files == (str(WDS / "00000.tar"), str(WDS / "00001.tar"))
    pds = load_dataset(f"parquet:{PARQUET}")
    assert [it.id for it in pds.items] == ["000000000", "000000001", "000000003"]  # the failed download is left out
    assert pds.items[2].captions == (caps["coffee.png"],)
    with pytest.raises(ConfigError, match="no splits"):
        load_dataset(f"wds:{WDS}:train")
    with pytest.raises(ConfigError, match="only URLs"):  # img2dataset's metadata parquet beside the tars
        load_dataset(f"parquet:{WDS / '00000.parquet'}")


def test_embed_videos_from_folder_and_tar(tmp_path, tiny_encoder):
    """A folder with a video and a video2dataset-style tar (KEY.mp4 / KEY.txt): one row per video, the vector
    ``xmr index`` gives the same file (default sampling, meanP)."""
    from xmr.video import VideoIndexConfig, embed_video

    clip = FIXTURES / "video" / "video9771.mp4"
    src = tmp_path / "media"
    src.mkdir()
    shutil.copy(clip, src / "a_clip.mp4")
    shutil.copy(SAMPLES / "horse.png", src / "b_horse.png")
    (src / "c_broken.mp4").write_bytes(b"not a video at all")
    rep = embed_source(str(src), str(tmp_path / "e"), "tiny", dtype="float32")
    vecs, meta = _all(tmp_path / "e")
    assert [(Path(m["image_path"]).name, m["media_type"]) for m in meta] == [("a_clip.mp4", "video"),
                                                                          ("b_horse.png", "image")]
    assert [Path(s["path"]).name for s in rep.skipped] == ["c_broken.mp4"]
    ref = embed_video(clip, tiny_encoder, VideoIndexConfig()).vector
    np.testing.assert_allclose(vecs[0], ref, atol=1e-5)
    np.testing.assert_allclose(vecs[1], tiny_encoder.encode_images([SAMPLES / "horse.png"])[0], atol=1e-5)

    shards = tmp_path / "webvid"
    shards.mkdir()
    with tarfile.open(shards / "00000.tar", "w") as tf:
        for name, data in (("000000000.mp4", clip.read_bytes()), ("000000000.txt", b"a person talks"),
                           ("000000000.json", json.dumps({"url": "https://example.invalid/v.mp4",
                                                          "duration": 14.0}).encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    rep = embed_source(str(shards), str(tmp_path / "ev"), "tiny", dtype="float32")
    v, m = _all(tmp_path / "ev")
    assert rep.total == 1 and m[0]["caption"] == "a person talks" and m[0]["media_type"] == "video"
    assert m[0]["image_path"].endswith("00000.tar#000000000.mp4") and m[0]["duration"] == 14.0
    np.testing.assert_allclose(v[0], ref, atol=1e-5)


def test_non_finite_vectors_are_skipped_not_written(tmp_path, monkeypatch, tiny_encoder):
    import xmr.encoders

    class NanOnSecond:
        """tiny, except that the second image of every call comes out NaN (a model that breaks on one input)."""

        spec, dim, capabilities = tiny_encoder.spec, tiny_encoder.dim, tiny_encoder.capabilities

        def encode_images(self, images, **kw):
            v = tiny_encoder.encode_images(images, **kw)
            if len(v) > 1:
                v[1] = np.nan
            return v

    monkeypatch.setattr(xmr.encoders, "create_encoder", lambda spec, device=None: NanOnSecond())
    src = tmp_path / "photos"
    src.mkdir()
    for n in ("chelsea.png", "coffee.png", "horse.png"):
        shutil.copy(SAMPLES / n, src / n)
    rep = embed_source(str(src), str(tmp_path / "e"), "tiny", dtype="float32")
    vecs, meta = _all(tmp_path / "e")
    assert [Path(m["image_path"]).name for m in meta] == ["chelsea.png", "horse.png"] and np.isfinite(vecs).all()
    assert rep.skipped == [{"path": str(src / "coffee.png"), "reason": "the model gave a non-finite vector"}]


def test_worker_errors_are_unwrapped_from_ray_exceptions():
    """A model that cannot load on the Ray workers reaches the CLI as its own one-line XmrError: Ray wraps it
    (RayTaskError, ActorDiedError with ``.cause``, Ray Data's exceptions raised ``from`` it); xmr_cause finds it."""
    from xmr.embed.ray_backend import xmr_cause
    from xmr.errors import ModelUnavailableError

    inner = ModelUnavailableError("hf:/nowhere: directory not found")

    class ActorDied(Exception):  # the shape of ray.exceptions.ActorDiedError: the creation error in .cause
        def __init__(self, cause):
            super().__init__("the actor died")
            self.cause = cause

    try:
        try:
            raise ActorDied(RuntimeError("task failed", inner))
        except ActorDied as e:
            raise ValueError("internal") from e
    except ValueError as outer:
        assert xmr_cause(outer) is inner
    assert xmr_cause(RuntimeError("no xmr error here")) is None


def test_unreachable_ray_address_fails_in_seconds(tmp_path, capsys):
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    code, _, err = run_cli(capsys, "-q", "embed", str(SAMPLES), "--model", "tiny", "--out", str(tmp_path / "e"),
                           "--ray", f"127.0.0.1:{port}")
    assert code == 2 and f"cannot reach Ray at 127.0.0.1:{port}" in err and time.monotonic() - t0 < 30
    code, _, err = run_cli(capsys, "-q", "embed", str(SAMPLES), "--model", "tiny", "--out", str(tmp_path / "e"),
                           "--ray", "not-an-address")
    assert code == 2 and "give HOST:PORT" in err
