"""Issue 19, files and configs: hostile names, special files, huge images, broken JSON and checkpoint configs, bad
command-line numbers. Each test failed before the fix it names (see docs/serving.md "Limits" for the numbers)."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from xmr.errors import ConfigError, MediaTooLargeError, UnreadableMediaError
from xmr.index import IndexStore, index_folder
from xmr.index.indexer import file_sha256
from xmr.media.image import MAX_PIXELS, load_image
from xmr.retrieval import search_index


def _png(path: Path, seed: int = 0, size=(32, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


class Hung(BaseException):
    """Raised by _deadline: a BaseException, so no ``except OSError`` / ``except Exception`` in the code under test
    can swallow it (a TimeoutError is an OSError and would read as "unreadable file")."""


@contextmanager
def _deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block takes longer than ``seconds``."""

    def boom(*_):
        raise Hung(f"still running after {seconds} s: hung")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---- 1. names that are not UTF-8 ---------------------------------------------------------------------------------
def test_non_utf8_file_and_folder_names_are_indexed_and_rerun(tmp_path, tiny_encoder, capsys):
    root = tmp_path / "photos"
    _png(root / "good.png", 0)
    bad_file = os.fsdecode(os.fsencode(str(root)) + b"/bad\xffname.png")
    bad_dir = os.fsdecode(os.fsencode(str(root)) + b"/old\xe9disk")
    os.mkdir(bad_dir)
    _png(Path(bad_file), 1)
    _png(Path(bad_dir) / "inner.png", 2)
    idx = tmp_path / "idx"
    rep = index_folder(root, idx, tiny_encoder, show_progress=False)
    assert (rep.added, rep.skipped, rep.total) == (3, [], 3)
    again = index_folder(root, idx, tiny_encoder, show_progress=False)  # found again: nothing re-encoded, none lost
    assert (again.added, again.unchanged, again.removed, again.total) == (0, 3, 0, 3)
    with IndexStore(idx, readonly=True) as st:
        paths = {r.path for r in st.get_items(range(1, 10)).values()}
    assert bad_file in paths and os.path.join(bad_dir, "inner.png") in paths  # stored losslessly
    assert os.fsencode(bad_file).endswith(b"bad\xffname.png")
    with IndexStore(idx, readonly=True) as st:
        hits = search_index(st, tiny_encoder, text="anything", k=3)
    assert {h.path for h in hits} == paths
    # the CLI prints them (escaped on the terminal, \udcXX escapes in JSON) instead of a UnicodeEncodeError
    Path(bad_file).write_bytes(b"not an image")
    code, out, err = run_cli(capsys, "index", str(root), "--index", str(idx), "--model", "tiny")
    assert code == 0 and "bad\\xffname.png" in err and "Traceback" not in err
    code, out, _ = run_cli(capsys, "index", str(root), "--index", str(idx), "--model", "tiny", "--json")
    assert code == 0 and os.fsencode(json.loads(out)["skipped"][0]["path"]).endswith(b"bad\xffname.png")
    code, out, _ = run_cli(capsys, "info", "--index", str(idx))
    assert code == 0 and "bad\\xffname.png" in out


def test_paths_with_newlines_are_printed_escaped(tmp_path, tiny_encoder, capsys):
    root = tmp_path / "photos"
    _png(root / "ok.png")
    (root / "evil\nname.png").write_bytes(b"broken")
    code, out, err = run_cli(capsys, "index", str(root), "--index", str(tmp_path / "idx"), "--model", "tiny")
    assert code == 0
    line = next(x for x in err.splitlines() if "evil" in x)
    assert "evil\\nname.png" in line and "evil\nname" not in err


# ---- 2. special files --------------------------------------------------------------------------------------------
def test_fifo_device_socket_are_refused_before_reading(tmp_path, tiny_encoder):
    root = tmp_path / "photos"
    _png(root / "a.png", 0)
    _png(root / "z.png", 1)
    os.mkfifo(root / "pipe.jpg")
    os.symlink("/dev/zero", root / "zero.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock.png"))
    try:
        with _deadline(60):
            rep = index_folder(root, tmp_path / "idx", tiny_encoder, show_progress=False, batch_size=8)
    finally:
        sock.close()
    reasons = dict(rep.skipped)
    assert (rep.added, rep.total) == (2, 2)  # the good files of the same batch are kept
    assert "FIFO" in reasons[str(root / "pipe.jpg")]
    assert "character device" in reasons[str(root / "zero.jpg")]
    assert "socket" in reasons[str(root / "sock.png")]
    with _deadline(60):  # and again on a re-run
        assert index_folder(root, tmp_path / "idx", tiny_encoder, show_progress=False).total == 2


def test_a_fifo_swapped_in_after_the_walk_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "late.jpg")  # what hashing / decoding meet when the file changed after the walk
    with _deadline(20):
        with pytest.raises(UnreadableMediaError, match="not a regular file"):
            file_sha256(str(tmp_path / "late.jpg"))
        with pytest.raises(UnreadableMediaError):
            load_image(tmp_path / "late.jpg")


def test_oversized_image_file_is_refused_from_stat(tmp_path, tiny_encoder, monkeypatch):
    import xmr.index.indexer as indexer

    root = tmp_path / "photos"
    _png(root / "a.png")
    with open(root / "huge.png", "wb") as f:  # sparse: 2 GB that are never read
        f.truncate(2 * 1024**3)
    hashed = []
    real = indexer.file_sha256
    monkeypatch.setattr(indexer, "file_sha256", lambda p, *a: hashed.append(p) or real(p, *a))
    rep = index_folder(root, tmp_path / "idx", tiny_encoder, show_progress=False)
    assert rep.added == 1 and "over the" in dict(rep.skipped)[str(root / "huge.png")]
    assert hashed == [str(root / "a.png")]


# ---- 4. bounded memory per indexing batch ------------------------------------------------------------------------
class _Recording:
    """The tiny encoder, recording the decoded pixels of every batch it is given."""

    def __init__(self, enc):
        self._enc, self.batches = enc, []

    def __getattr__(self, name):
        return getattr(self._enc, name)

    def encode_images(self, images, **kw):
        self.batches.append([im.width * im.height for im in images])
        return self._enc.encode_images(images, **kw)


def test_index_batches_keep_to_the_pixel_budget(tmp_path, tiny_encoder):
    root = tmp_path / "photos"
    for i in range(5):
        _png(root / f"s{i}.png", i, (100, 100))  # 10,000 px each
    _png(root / "t_big.png", 9, (300, 200))  # 60,000 px: over the budget on its own
    rec = _Recording(tiny_encoder)
    rep = index_folder(root, tmp_path / "idx", rec, show_progress=False, batch_size=8, max_batch_pixels=25_000)
    assert rep.added == 6
    assert rec.batches == [[10_000, 10_000], [10_000, 10_000], [10_000], [60_000]]
    assert all(sum(b) <= 25_000 or len(b) == 1 for b in rec.batches)


# ---- pixel limit: the documented one is the one applied ---------------------------------------------------------
def test_pixel_limit_is_max_pixels_not_pillows(tmp_path, caplog):
    assert Image.MAX_IMAGE_PIXELS < 95_000_000 < MAX_PIXELS  # Pillow would warn (and we used to refuse) here
    p = tmp_path / "95mp.png"
    Image.new("1", (10_000, 9_500)).save(p)  # a few KB on disk
    im = load_image(p)
    assert im.size == (10_000, 9_500)
    del im
    Image.new("1", (10_001, 10_000)).save(tmp_path / "big.png")
    with pytest.raises(MediaTooLargeError, match=f"{MAX_PIXELS}-pixel limit"):
        load_image(tmp_path / "big.png")


def test_exif_warnings_are_log_lines_hidden_by_quiet(tmp_path, capsys, caplog):
    import struct

    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x0112, 3, 1000, 0xFFFF) + struct.pack("<I", 0)
    root = tmp_path / "photos"
    root.mkdir()
    Image.new("RGB", (16, 16), "red").save(root / "exif.jpg", exif=b"Exif\x00\x00" + tiff)
    code, out, err = run_cli(capsys, "-q", "index", str(root), "--index", str(tmp_path / "idx"), "--model", "tiny")
    assert code == 0 and "Tag data" not in err and "UserWarning" not in err
    assert not [r for r in caplog.records if "Tag data" in r.getMessage()]  # not even logged under -q
    code, out, err = run_cli(capsys, "index", str(root), "--index", str(tmp_path / "idx2"), "--model", "tiny")
    assert code == 0 and "UserWarning" not in err
    shown = [r for r in caplog.records if "Tag data larger than file" in r.getMessage()]
    assert [(r.name, r.levelno) for r in shown] == [("xmr.media.image", logging.INFO)]
    assert "exif.jpg" in shown[0].getMessage()


# ---- 5. broken JSON ----------------------------------------------------------------------------------------------
def test_manifest_invalid_utf8_and_deep_nesting(tmp_path):
    from xmr.data.manifest import read_manifest

    m = tmp_path / "m.jsonl"
    m.write_bytes(b'{"media": "a.jpg", "caption": "ok"}\n{"media": "b.jpg", "caption": "caf\xe9"}\n')
    with pytest.raises(ConfigError, match=r"m\.jsonl, line 2: not UTF-8"):
        read_manifest(m)
    m.write_text('{"media": "a.jpg", "caption": "x", "deep": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(ConfigError, match=r"m\.jsonl, line 1: JSON nested too deeply"):
        read_manifest(m)


def test_coco_invalid_utf8_and_deep_nesting(tmp_path, capsys):
    from xmr.data.coco import read_coco_captions

    f = tmp_path / "captions_val.json"
    f.write_bytes(b'{"images": [], "annotations": [], "info": "\xff"}')
    with pytest.raises(ConfigError, match=r"captions_val\.json: not UTF-8"):
        read_coco_captions(str(f), "val", str(tmp_path))
    f.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match=r"captions_val\.json: JSON nested too deeply"):
        read_coco_captions(str(f), "val", str(tmp_path))
    ann = tmp_path / "coco" / "annotations"
    ann.mkdir(parents=True)
    (ann / "captions_val.json").write_text('{"a":' * 50_000 + "1" + "}" * 50_000)
    code, _, err = run_cli(capsys, "eval", "--model", "tiny", "--dataset", f"coco:{tmp_path / 'coco'}")
    assert code == 2 and err.startswith("xmr: error: ") and "nested too deeply" in err and "Traceback" not in err


@pytest.fixture
def tiny_ckpt(tmp_path, tiny_encoder):
    from xmr.encoders.tiny import TinyDualEncoder, TinyConfig

    d = tmp_path / "tiny_ckpt"
    TinyDualEncoder(TinyConfig()).save(d)
    return d


def _edit_config(d: Path, **changes) -> None:
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("changes, message", [
    ({"width": "64"}, "width must be an integer"),
    ({"layers": 2.5}, "layers must be an integer"),
    ({"dim": None}, "dim must be an integer"),
    ({"heads": True}, "heads must be an integer"),
    ({"mlp_ratio": "4"}, "mlp_ratio must be a number"),
    ({"mean": [0.5, 0.5]}, "mean must have 3 values"),
    ({"std": "abc"}, "std must be a list"),
    ({"width": 131072, "heads": 4}, "outside the allowed range 1..2048"),
    ({"width": 2048, "layers": 48, "heads": 4}, "parameters, over the"),
])
def test_tiny_checkpoint_config_types_and_limits(tiny_ckpt, changes, message):
    from xmr.encoders.tiny import TinyDualEncoder

    _edit_config(tiny_ckpt, **changes)
    with pytest.raises(ConfigError, match=message):
        TinyDualEncoder.load(tiny_ckpt)


def test_checkpoint_config_json_unreadable_forms(tiny_ckpt):
    from xmr.encoders.tiny import TinyDualEncoder

    (tiny_ckpt / "config.json").write_text('{"model": "xmr-tiny", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ConfigError, match="nested too deeply"):
        TinyDualEncoder.load(tiny_ckpt)
    (tiny_ckpt / "config.json").write_bytes(b'{"model": "xmr-tiny", "seed": "\xff"}')
    with pytest.raises(ConfigError, match="not UTF-8"):
        TinyDualEncoder.load(tiny_ckpt)


@pytest.mark.parametrize("changes, message", [
    ({"head": ["seqtransf"]}, "must be a head name"),
    ({"num_frames": "12"}, "num_frames must be an integer"),
    ({"dim": 131072}, "outside the allowed range"),
    ({"layers": 2.5}, "layers must be an integer"),
])
def test_video_head_config_types(tmp_path, changes, message):
    from xmr.heads import create_head, load_head

    d = tmp_path / "head"
    create_head("seqtransf", dim=64).save(d)
    _edit_config(d, **changes)
    with pytest.raises(ConfigError, match=message):
        load_head(d)


def test_unknown_video_head_is_named_unknown(capsys):
    from xmr.encoders import create_encoder

    with pytest.raises(ConfigError, match="unknown video head 'nosuchhead'; known: .*seqtransf") as e:
        create_encoder("video:tiny+nosuchhead")
    assert "trained weights" not in str(e.value)
    with pytest.raises(ConfigError, match="has trained weights"):  # a real head without its weights keeps its hint
        create_encoder("video:tiny+seqtransf")


# ---- 7. --batch-size ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-5", "x"])
@pytest.mark.parametrize("command", ["index", "eval", "train-head", "embed"])
def test_batch_size_must_be_positive(value, command, capsys, tmp_path):
    argv = {"index": ["index", str(tmp_path)], "eval": ["eval", "--dataset", "manifest:x.jsonl"],
            "train-head": ["train-head"], "embed": ["embed", str(tmp_path), "--out", str(tmp_path / "o")]}[command]
    with pytest.raises(SystemExit) as e:
        run_cli(capsys, *argv, "--batch-size", value)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --batch-size" in err and "Traceback" not in err
