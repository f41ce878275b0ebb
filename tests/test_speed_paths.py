"""The fast paths against the reference paths: ONNX Runtime vs torch for the default model, prefetching indexer vs
plain encoding, JPEG draft decoding, a text search that imports no torch, the server's query cache."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLES

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["a cat lying on a sofa", "A RED CAR", "  an astronaut  ", "naïve café, 日本語",
         "a long caption " + "with many words " * 80]  # > 256 tokens: truncation as sentence-transformers does


@pytest.fixture(scope="module")
def torch_concept():
    from xmr.encoders.concept import ConceptEncoder, resolve_concept_config

    enc = ConceptEncoder(resolve_concept_config(None), runtime="torch")
    enc.spec = "concept"
    return enc


def _images():
    return sorted(str(p) for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg"))


# ---- ONNX Runtime == torch, within a stated tolerance -------------------------------------------------------------
def test_onnx_runtime_matches_torch(concept_encoder, torch_concept):
    """Default runtime (ONNX) against the torch reference: text embeddings, class probabilities and final image
    embeddings agree within 1e-4 absolute (measured: ~5e-7)."""
    assert concept_encoder.runtime == "onnx"
    for texts in (TEXTS, [f"{t} {i}" for i in range(4) for t in TEXTS]):  # few texts: one by one; > 16: batched
        np.testing.assert_allclose(concept_encoder._embed(texts), torch_concept._embed(texts), atol=1e-5)
    np.testing.assert_allclose(concept_encoder.encode_text(TEXTS), torch_concept.encode_text(TEXTS), atol=1e-4)
    imgs = _images()
    ims = [Image.open(p).convert("RGB") for p in imgs[:3]]
    pa, pb = concept_encoder.class_probabilities(ims), torch_concept.class_probabilities(ims)
    np.testing.assert_allclose(pa, pb, atol=1e-5)
    ea, eb = concept_encoder.encode_images(imgs), torch_concept.encode_images(imgs)
    np.testing.assert_allclose(ea, eb, atol=1e-4)
    assert np.array_equal(ea.argmax(1), eb.argmax(1))


def test_preprocessed_path_equals_encode_images(concept_encoder):
    imgs = _images()[:4]
    ims = [Image.open(p).convert("RGB") for p in imgs]
    items = [concept_encoder.preprocess_images([im])[0] for im in ims]  # one call per image, as the workers do
    np.testing.assert_allclose(concept_encoder.encode_preprocessed(items), concept_encoder.encode_images(ims),
                               atol=1e-6)


def _float_reference_probabilities(enc, ims) -> np.ndarray:
    """The pre-uint8 reference: the views normalised to float32 on the Python side (ImagePreprocess.to_array), the
    bare torch backbone, softmax in float64, averaged over views."""
    import torch

    from xmr.encoders.concept import _load_backbone

    x = np.stack([enc.pre.to_array(v) for im in ims for v in enc._views(im)])  # (B * V, 3, res, res) float32
    with torch.no_grad():
        z = _load_backbone(enc.cfg.backbone)(torch.from_numpy(x)).numpy().astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return p.reshape(len(ims), -1, p.shape[1]).mean(axis=1)


def test_uint8_graph_matches_float_reference(concept_encoder, torch_concept):
    """Normalisation inside the network (uint8 NHWC in, ORT and torch) against the float path it replaced: the
    same views, normalised in numpy, through the bare backbone. Probabilities within 1e-5 (measured: 2e-7 ORT,
    3e-7 torch), the same top class; and the uint8 views are exactly the PIL views' pixels."""
    ims = [Image.open(p).convert("RGB") for p in _images()[:4]]
    ref = _float_reference_probabilities(concept_encoder, ims)
    for enc in (concept_encoder, torch_concept):
        p = enc.class_probabilities(ims)
        np.testing.assert_allclose(p, ref, atol=1e-5)
        assert np.array_equal(p.argmax(1), ref.argmax(1))
    for im in ims:
        px = concept_encoder.pixels(im)
        assert px.dtype == np.uint8 and px.shape == (6, 224, 224, 3)
        assert np.array_equal(px, np.stack([np.asarray(v) for v in concept_encoder._views(im)]))
    with pytest.raises(TypeError, match="uint8"):
        concept_encoder.net(np.zeros((1, 224, 224, 3), np.float32))  # float pixels are refused, never misread


def test_runtime_choice_and_refusals(monkeypatch):
    from xmr.encoders._runtime import resolve_runtime
    from xmr.errors import ConfigError

    monkeypatch.delenv("XMR_RUNTIME", raising=False)
    assert resolve_runtime(None, None) == ("onnx", "cpu")
    assert resolve_runtime(None, "cpu") == ("onnx", "cpu")
    rt, dev = resolve_runtime("torch", "cpu")
    assert rt == "torch" and str(dev) == "cpu"
    monkeypatch.setenv("XMR_RUNTIME", "torch")
    assert resolve_runtime(None, None)[0] == "torch"
    monkeypatch.setenv("XMR_RUNTIME", "tensorrt")
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt'"):
        resolve_runtime(None, None)
    with pytest.raises(ConfigError, match="runs on the CPU"):
        resolve_runtime("onnx", "cuda")


def test_ort_threads(monkeypatch):
    from xmr.encoders._onnx import cpu_threads
    from xmr.errors import ConfigError

    monkeypatch.delenv("XMR_ORT_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads() == 1
    monkeypatch.setenv("XMR_ORT_THREADS", "3")
    assert cpu_threads() == 3
    for bad in ("0", "two"):
        monkeypatch.setenv("XMR_ORT_THREADS", bad)
        with pytest.raises(ConfigError, match="XMR_ORT_THREADS must be a positive integer"):
            cpu_threads()


# ---- the export cache ------------------------------------------------------------------------------------------------
def _tiny_net():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 5))


def test_export_cached_keyed_by_weights_and_atomic(tmp_path, monkeypatch):
    import torch

    from xmr.encoders._onnx import OnnxImageNet, cached_export

    monkeypatch.setenv("XMR_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"v1")
    builds = []

    def build():
        builds.append(1)
        return _tiny_net()

    net = OnnxImageNet("toy", build, [weights], size=16)
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        ref = _tiny_net()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net(x), ref, atol=1e-5)
    files = sorted((tmp_path / "cache" / "onnx").iterdir())
    assert [f.name.startswith("toy-") and f.suffix == ".onnx" for f in files] == [True]
    OnnxImageNet("toy", build, [weights], size=16)
    assert len(builds) == 1  # second load: the cached file, no export
    weights.write_bytes(b"v2: other weights")
    OnnxImageNet("toy", build, [weights], size=16)
    assert len(builds) == 2 and len(list((tmp_path / "cache" / "onnx").iterdir())) == 2  # new fingerprint

    # a damaged cached file is exported again, not used and not fallen back from
    newest = max((tmp_path / "cache" / "onnx").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    newest.write_bytes(b"not an onnx model")
    np.testing.assert_allclose(OnnxImageNet("toy", build, [weights], size=16)(x), ref, atol=1e-5)
    assert len(builds) == 3

    # an export that fails leaves neither the file nor a temp file behind
    def broken(path):
        Path(path).write_bytes(b"half")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError, match="exporter crashed"):
        cached_export("broken", "0123", broken)
    assert not [p for p in (tmp_path / "cache" / "onnx").iterdir() if "broken" in p.name]


def test_uint8_export_keyed_by_normalisation(tmp_path, monkeypatch):
    """A uint8-input export runs the normalisation in the graph, equals torch on the same module, and its cache
    file is keyed by the baked-in constants: other mean / std -> another file, never the old graph."""
    import torch

    from xmr.encoders._onnx import OnnxImageNet
    from xmr.encoders._runtime import uint8_input

    monkeypatch.setenv("XMR_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"v1")
    x = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    outs = {}
    for mean, std in (((0.5,) * 3, (0.5,) * 3), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))):
        module = uint8_input(_tiny_net(), mean, std)
        net = OnnxImageNet("toy", lambda m=module: m, [weights], size=16, pixels="uint8", key=f"{mean}|{std}")
        with torch.no_grad():
            ref = module(torch.from_numpy(x)).numpy()
            flat = (x.astype(np.float32) * np.float32(1 / 255) - np.float32(mean)) / np.float32(std)
            ref_float = _tiny_net()(torch.from_numpy(np.ascontiguousarray(flat.transpose(0, 3, 1, 2)))).numpy()
        outs[mean] = net(x)
        np.testing.assert_allclose(outs[mean], ref, atol=1e-5)
        np.testing.assert_allclose(outs[mean], ref_float, atol=1e-5)
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 2
    assert not np.allclose(*outs.values())  # the two graphs really differ
    OnnxImageNet("toy", _tiny_net, [weights], size=16)  # a float-input export of the same weights: its own file
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 3


# ---- text search imports only what it uses ---------------------------------------------------------------------------
PROBE = """
import io, contextlib, sys
from xmr.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    code = main(sys.argv[1:])
print(code, buf.getvalue().splitlines()[0] if buf.getvalue() else "")
print(" ".join(sorted(m for m in sys.modules)))
"""


def test_text_search_does_not_import_torch(concept_encoder, sample_dir, tmp_path):
    """``xmr search "text"`` on a concept index in a fresh process: ONNX text tower, index, FAISS; never torch,
    transformers, sentence-transformers, sklearn or the video stack (the ONNX files exist: the fixture built them)."""
    from xmr.index import index_folder

    concept_encoder.encode_text(["warm the text tower's cache"])
    index_folder(sample_dir, tmp_path / "idx", concept_encoder, show_progress=False)
    out = subprocess.run([sys.executable, "-c", PROBE, "search", "a cat lying on a sofa", "--index",
                          str(tmp_path / "idx"), "-k", "3"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert out.returncode == 0, out.stderr
    first, mods = out.stdout.strip().splitlines()[-2:]
    assert first.startswith("0 ") and "chelsea" in first  # it did search: the cat is first
    loaded = set(mods.split())
    for heavy in ("torch", "transformers", "sentence_transformers", "sklearn", "scipy", "av", "xmr.encoders.hf",
                  "xmr.encoders.tiny", "xmr.index.indexer", "xmr.video.features"):
        assert heavy not in loaded, f"a text search imported {heavy}"
    for needed in ("onnxruntime", "faiss", "tokenizers"):
        assert needed in loaded


# ---- indexer: prefetch and draft decoding ----------------------------------------------------------------------------
def test_prefetching_indexer_equals_direct_encoding(concept_encoder, sample_dir, tmp_path):
    import sqlite3

    from xmr.index import index_folder

    (sample_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    # a pixel budget below two images: the workers decode one image at a time
    rep = index_folder(sample_dir, tmp_path / "idx", concept_encoder, batch_size=3, show_progress=False,
                       max_batch_pixels=300_000)
    assert rep.added == 8 and [Path(p).name for p, _ in rep.skipped] == ["broken.jpg"]
    db = sqlite3.connect(tmp_path / "idx" / "meta.sqlite")
    rows = {Path(p).name: (np.frombuffer(v, np.float32), (w, h))
            for p, v, w, h in db.execute("SELECT path, vector, width, height FROM items")}
    db.close()
    names = sorted(rows)
    direct = concept_encoder.encode_images([str(sample_dir / n) for n in names])
    np.testing.assert_allclose(np.stack([rows[n][0] for n in names]), direct, atol=1e-5)
    assert all(rows[n][1] == Image.open(sample_dir / n).size for n in names)


def test_pixel_budget_bounds_what_workers_hold():
    import time
    from concurrent.futures import ThreadPoolExecutor

    from xmr.index.prefetch import PixelBudget

    b = PixelBudget(100)

    def hold(n):
        got = b.acquire(n)
        time.sleep(0.01)
        b.release(got)
        return got

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(hold, [60, 60, 30, 500, 10, 60]))
    assert got == [60, 60, 30, 100, 10, 60]  # an image over the budget takes all of it, alone
    assert b.peak <= 100 and b.used == 0


def test_draft_decoding_keeps_full_size_and_embedding(concept_encoder, tmp_path):
    from xmr.media.image import load_image

    big = Image.open(SAMPLES / "chelsea.png").convert("RGB").resize((2400, 1800), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    big.save(tmp_path / "big.jpg", quality=92, exif=exif)
    full = load_image(tmp_path / "big.jpg")
    draft = load_image(tmp_path / "big.jpg", draft=concept_encoder.image_draft_size)
    assert full.size == (1800, 2400) and full.info["full_size"] == (1800, 2400)  # EXIF rotation applied
    assert draft.info["full_size"] == (1800, 2400)
    assert min(draft.size) >= concept_encoder.image_draft_size and draft.size[0] < 1800  # decoded smaller
    a, b = concept_encoder.encode_images([full, draft])
    assert float(a @ b) > 0.99  # same concepts at a fraction of the decode work


# ---- server: query cache ---------------------------------------------------------------------------------------------
class _CountingEncoder:
    spec, dim = "count", 4

    def __init__(self):
        self.seen: list[list[str]] = []
        self.gate = threading.Event()

    def encode_text(self, texts, batch_size=32, show_progress=False):
        self.gate.wait(5)
        self.seen.append(list(texts))
        return np.stack([np.full(4, len(t), np.float32) for t in texts])


def test_query_cache_lru_and_batch_dedup():
    from concurrent.futures import ThreadPoolExecutor

    from xmr.serve.batcher import QueryEncoder
    from xmr.serve.query_cache import QueryCache

    c = QueryCache(2)
    c.put("m", "a", np.ones(2))
    c.put("m", "b", np.ones(2))
    assert c.get("m", "a") is not None  # "a" now most recent
    c.put("m", "c", np.ones(2))
    assert c.get("m", "b") is None and c.get("m", "a") is not None and c.get("other", "a") is None
    with pytest.raises(ValueError, match="read-only"):
        c.get("m", "a")[0] = 5  # read-only: a caller cannot corrupt the cache

    enc = _CountingEncoder()
    q = QueryEncoder(enc, max_batch=32, cache_size=16)
    with ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(q.encode_text, t) for t in ["x", "yy", "x", "x", "yy", "zzz", "x", "x"]]
        enc.gate.set()
        vecs = [f.result() for f in futs]
    assert [float(v[0]) for v in vecs] == [1, 2, 1, 1, 2, 3, 1, 1]
    encoded = [t for batch in enc.seen for t in batch]
    assert len(encoded) == len(set(encoded))  # within a batch each text once; later ones from the cache
    before = q.batches
    assert float(q.encode_text("zzz")[0]) == 3 and q.batches == before  # cached: no forward pass
    assert q.cache.hits >= 1
    q.close()
    off = QueryEncoder(enc, cache_size=0)
    off.encode_text("x")
    off.encode_text("x")
    assert off.batches == 2 and len(off.cache) == 0
    off.close()


# ---- xmr search --server: the warm process answers ---------------------------------------------------------------
def _serve_in_thread(app):
    import socket
    import time

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    return srv, thread, sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_search_through_running_server(tiny_encoder, sample_dir, tmp_path, capsys, monkeypatch):
    from conftest import run_cli
    from xmr.index import index_folder
    from xmr.serve import create_app

    idx = tmp_path / "idx"
    index_folder(sample_dir, idx, tiny_encoder, show_progress=False)
    code, local, _ = run_cli(capsys, "search", "a cat", "a sofa", "--not", "a car", "--index", str(idx), "-k", "4")
    assert code == 0
    srv, thread, sock, url = _serve_in_thread(create_app(idx, encoder=tiny_encoder))
    try:
        code, remote, err = run_cli(capsys, "search", "a cat", "a sofa", "--not", "a car", "--server", url, "-k", "4")
        assert code == 0, err
        names = lambda out: [Path(line.split()[-1]).name for line in out.splitlines()]  # noqa: E731
        assert names(remote) == names(local) and len(names(local)) == 4
        assert [line.split()[1] for line in remote.splitlines()] == [line.split()[1] for line in local.splitlines()]
        monkeypatch.setenv("XMR_SERVER", url)
        code, env_out, _ = run_cli(capsys, "search", "a cat", "a sofa", "--not", "a car", "-k", "4")
        assert code == 0 and env_out == remote
        code, _, err = run_cli(capsys, "search", "a cat", "--rescore", "qbnorm", "--bank", "x.txt")
        assert code == 2 and "--rescore, --bank cannot be used with --server" in err
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        sock.close()
    code, _, err = run_cli(capsys, "search", "a cat")  # XMR_SERVER still set, nothing listening: an error
    assert code == 2 and "cannot reach xmr serve" in err
