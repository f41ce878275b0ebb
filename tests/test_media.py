"""Safe image decoding: good images decode, every kind of bad file raises a MediaError subclass with a reason."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES, SAMPLES
from xmr.errors import CorruptMediaError, MediaError, MediaTooLargeError, UnreadableMediaError
from xmr.media.image import ImagePreprocess, load_image


def test_real_image_decodes_rgb():
    im = load_image(SAMPLES / "camera.png")  # greyscale PNG -> RGB
    assert im.mode == "RGB" and im.size == (512, 512)


def test_truncated_jpeg_is_corrupt():
    with pytest.raises(CorruptMediaError, match="truncated|corrupt"):
        load_image(FIXTURES / "truncated.jpg")


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(UnreadableMediaError, match="empty"):
        load_image(p)


def test_non_image_with_image_extension(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is not a picture\n" * 50)
    with pytest.raises(CorruptMediaError, match="not a recognised image"):
        load_image(p)


def test_missing_file(tmp_path):
    with pytest.raises(UnreadableMediaError):
        load_image(tmp_path / "nope.jpg")


def test_decompression_bomb(tmp_path):
    # a tiny PNG whose header declares 20000 x 20000 pixels
    p = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(p, optimize=True)
    assert p.stat().st_size < 200_000
    with pytest.raises(MediaTooLargeError, match="pixel"):
        load_image(p, max_pixels=50_000_000)


def test_errors_share_a_base_and_keep_path(tmp_path):
    p = tmp_path / "x.gif"
    p.write_bytes(b"GIF89a\x00")
    with pytest.raises(MediaError) as ei:
        load_image(p)
    assert ei.value.path == str(p) and ei.value.reason


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif)
    assert load_image(p).size == (20, 40)


def test_preprocess_matches_hand_computation():
    im = Image.fromarray(np.full((10, 20, 3), 128, np.uint8))
    pre = ImagePreprocess(size=8, crop=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x = pre(im)
    assert x.shape == (3, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x, (128 / 255 - 0.5) / 0.5, atol=1e-6)
