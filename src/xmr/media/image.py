"""Safe image loading and numpy/PIL preprocessing (no torchvision).

:func:`load_image` either returns a fully decoded RGB ``PIL.Image`` or raises a :class:`~xmr.errors.MediaError`
subclass with a reason. It never returns a placeholder.
"""
from __future__ import annotations

import logging
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image, ImageOps

from ..errors import CorruptMediaError, MediaError, MediaTooLargeError, UnreadableMediaError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".jfif"}
)

log = logging.getLogger(__name__)

#: Images with more pixels than this are refused (decompression-bomb guard). 100 MP ~ 10,000 x 10,000. This is the
#: limit really applied: Pillow's own warning threshold (``Image.MAX_IMAGE_PIXELS``, 89.5 MP) is ignored here, and
#: its hard error (twice that, 179 MP) lies above it.
MAX_PIXELS = 100_000_000
#: Files larger than this many bytes are refused before decoding.
MAX_FILE_BYTES = 512 * 1024 * 1024

ImageLike = Union[str, os.PathLike, Image.Image]


def open_regular(path: Union[str, os.PathLike]):
    """Open ``path`` for binary reading only if it is a regular file: ``O_NONBLOCK`` so that a FIFO swapped in
    after the folder was walked cannot block the open, then ``fstat`` on the open descriptor (no race). Raises
    UnreadableMediaError otherwise (and for OSErrors)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except PermissionError as e:
        raise UnreadableMediaError(path, f"permission denied ({e.strerror})") from None
    except IsADirectoryError:
        raise UnreadableMediaError(path, "is a directory") from None
    except OSError as e:
        raise UnreadableMediaError(path, f"cannot open ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise UnreadableMediaError(path, "is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableMediaError(path, "not a regular file (a FIFO, device, socket or folder): not read")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def header_pixels(path: Union[str, os.PathLike]) -> int | None:
    """Width x height read from the image's header (nothing decoded), or None when it cannot be read (then
    :func:`load_image` says why)."""
    try:
        with open_regular(path) as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(fh) as im:
                return im.width * im.height
    except Exception:  # noqa: BLE001 - any failure is reported by load_image, which runs next
        return None


def load_image(src: ImageLike, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES,
               draft: int | None = None) -> Image.Image:
    """Decode ``src`` (path or PIL image) to an RGB image, honouring EXIF orientation.

    ``draft``: let JPEGs decode at a reduced scale (libjpeg DCT scaling, 1/2 to 1/8) keeping at least ``draft``
    pixels per side (previews; indexing at the size the model needs, ``Encoder.image_draft_size``); a no-op for
    other formats. The returned image's ``info["full_size"]`` is the (width, height) of the full-size decode, after
    EXIF orientation, either way.

    Raises:
        UnreadableMediaError: missing, unreadable, or empty (0-byte) file.
        MediaTooLargeError: file over ``max_bytes`` or image over ``max_pixels`` (decompression bomb).
        CorruptMediaError: not an image, truncated or corrupt data.
    """
    if isinstance(src, Image.Image):
        return src.convert("RGB") if src.mode != "RGB" else src
    path = Path(src)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise UnreadableMediaError(path, f"cannot stat file ({e.strerror or e})") from None
    if size == 0:
        raise UnreadableMediaError(path, "empty file (0 bytes)")
    if size > max_bytes:
        raise MediaTooLargeError(path, f"file is {size} bytes, over the {max_bytes}-byte limit")
    with open_regular(path) as fh:  # a FIFO / device swapped in after the walk is refused, never read
        return _decode(fh, path, max_pixels, draft)


def load_image_bytes(data: bytes, name: str, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES,
                     draft: int | None = None) -> Image.Image:
    """:func:`load_image` for an image held in memory (a webdataset tar member, a parquet cell); ``name`` labels
    it in errors (e.g. ``shard.tar#key.jpg``). Same checks, same :class:`~xmr.errors.MediaError` family."""
    import io

    if not data:
        raise UnreadableMediaError(name, "empty file (0 bytes)")
    if len(data) > max_bytes:
        raise MediaTooLargeError(name, f"file is {len(data)} bytes, over the {max_bytes}-byte limit")
    return _decode(io.BytesIO(data), name, max_pixels, draft)


def _decode(fh, path, max_pixels: int, draft: int | None) -> Image.Image:
    """Fully decode the open binary stream ``fh`` (labelled ``path`` in errors) to RGB, EXIF orientation applied.
    Pillow's warnings (corrupt EXIF...) become INFO log lines naming the file: ``xmr -q`` hides them."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # recorded, logged below, never printed
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # max_pixels is the limit applied
            with Image.open(fh) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise MediaTooLargeError(path, f"{w}x{h} pixels is over the {max_pixels}-pixel limit")
                if draft:
                    im.draft("RGB", (draft, draft))
                decoded = im.size
                im.load()  # full decode: truncated data raises here (LOAD_TRUNCATED_IMAGES stays False)
                # in place and no RGB -> RGB convert: two full-image copies less (~1.5 ms of a 640x480 JPEG's ~5)
                ImageOps.exif_transpose(im, in_place=True)
                out = im if im.mode == "RGB" else im.convert("RGB")
                out.info["full_size"] = (h, w) if im.size != decoded else (w, h)  # EXIF rotation swaps the sides
        for w in caught:  # shown at INFO: `xmr -q` shows warnings only, and a bad EXIF block is not one
            log.info("%s: %s", _shown(path), w.message)
        return out
    except MediaError:
        raise
    except Image.DecompressionBombError as e:
        raise MediaTooLargeError(path, f"decompression bomb guard: {e}") from None
    except Image.UnidentifiedImageError:
        raise CorruptMediaError(path, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # PIL reports truncated/corrupt streams as OSError ("image file is truncated", "broken data stream"...)
        raise CorruptMediaError(path, f"corrupt or truncated image ({e})") from None
    except MemoryError:
        raise MediaTooLargeError(path, "ran out of memory while decoding") from None


def _shown(path) -> str:
    from ..paths import display_path

    return display_path(os.fspath(path))


@dataclass
class ImagePreprocess:
    """Resize-shorter-side + centre-crop + normalise, done with PIL and numpy.

    Matches the usual ``Resize(size, bicubic) -> CenterCrop(crop) -> ToTensor -> Normalize(mean, std)`` pipeline.
    """

    size: int = 224  # shorter side after resize
    crop: int = 224  # square centre crop
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    resample: str = "bicubic"  # PIL resampling filter name
    rescale: float = 1.0 / 255.0

    def resize_crop(self, im: Image.Image) -> Image.Image:
        w, h = im.size
        # shorter side -> exactly `size`, longer side truncated (as transformers / torchvision compute it)
        if w <= h:
            nw, nh = self.size, int(self.size * h / w)
        else:
            nw, nh = int(self.size * w / h), self.size
        nw, nh = max(self.crop, nw), max(self.crop, nh)
        im = im.resize((nw, nh), getattr(Image.Resampling, self.resample.upper()))
        left, top = (nw - self.crop) // 2, (nh - self.crop) // 2
        return im.crop((left, top, left + self.crop, top + self.crop))

    def to_array(self, im: Image.Image) -> np.ndarray:
        """(crop, crop, 3) RGB image -> (3, crop, crop) float32 normalised array."""
        x = np.asarray(im, dtype=np.float32) * self.rescale
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def __call__(self, im: Image.Image) -> np.ndarray:
        return self.to_array(self.resize_crop(im))


def preprocess_images(images: Sequence[ImageLike], pre: ImagePreprocess) -> np.ndarray:
    """Load and preprocess a batch -> (B, 3, crop, crop) float32. Raises MediaError on the first bad item."""
    return np.stack([pre(load_image(x)) for x in images]) if images else np.zeros((0, 3, pre.crop, pre.crop), np.float32)
