"""``sbu:DIR`` — SBU Captioned Photo Dataset (Ordonez et al., NeurIPS 2011) in its official release layout: two
line-aligned text files, one Flickr photo URL and its caption per line, plus the photos you downloaded::

    DIR/SBU_captioned_photo_dataset_urls.txt       http://static.flickr.com/2723/4385058960_b0f291553e.jpg
    DIR/SBU_captioned_photo_dataset_captions.txt   Man sits in a rusted car buried in the sand on Waitarere beach
    DIR/images/4385058960_b0f291553e.jpg          (the URL's file name; the ``root`` option for another folder)

- Many of the million URLs are dead, so a local copy holds a subset: items are the lines whose photo is in the
  image folder (one directory listing, no per-file stat); the rest are left out and counted in a log line. No photo
  at all is an error. One caption per photo; order: line order.
- SBU has no official split: a split is refused (use ``?limit=N`` or a manifest for subsets).
- The two files must have as many lines; a blank caption is an error naming its line. A file that is not UTF-8 is
  read as Latin-1, with a warning.
"""
from __future__ import annotations

import logging
import os
from typing import Mapping
from urllib.parse import urlparse

from ..errors import ConfigError
from .base import DATASETS, Item, RetrievalDataset, require_file, take_options

log = logging.getLogger(__name__)

URLS = "SBU_captioned_photo_dataset_urls.txt"
CAPTIONS = "SBU_captioned_photo_dataset_captions.txt"


def _lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig", errors="strict") as f:
            return f.read().splitlines()
    except UnicodeDecodeError:
        log.warning("sbu: %s is not UTF-8; reading it as Latin-1", path)
        with open(path, encoding="latin-1") as f:  # every byte decodes: old Flickr text may be Latin-1
            return f.read().splitlines()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None


@DATASETS.register("sbu", help="SBU Captioned Photos: sbu:DIR (the release's urls + captions .txt, DIR/images/)")
def load_sbu(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    opts = take_options("sbu", options, ("root",))
    if split is not None:
        raise ConfigError(f"sbu: has no official split (got {split!r}); take a subset with ?limit=N or a manifest")
    folder = os.path.abspath(os.path.expanduser(arg))
    urls_p = require_file(os.path.join(folder, URLS), "SBU URL list")
    caps_p = require_file(os.path.join(folder, CAPTIONS), "SBU caption list")
    urls, caps = _lines(urls_p), _lines(caps_p)
    while urls and not urls[-1].strip():
        urls.pop()
    while caps and not caps[-1].strip():
        caps.pop()
    if len(urls) != len(caps):
        raise ConfigError(f"{folder}: {URLS} has {len(urls)} lines but {CAPTIONS} {len(caps)}; they must be line-aligned")
    images = os.path.abspath(os.path.expanduser(opts.get("root", os.path.join(folder, "images"))))
    if not os.path.isdir(images):
        raise ConfigError(f"SBU photo folder not found: {images}. Download the photos of {URLS} there under their URL "
                          "file names (or set ?root=DIR)")
    present = set(os.listdir(images))
    items = []
    for i, (u, c) in enumerate(zip(urls, caps), 1):
        name = os.path.basename(urlparse(u.strip()).path)
        if not name:
            raise ConfigError(f"{urls_p}:{i}: not a photo URL: {u[:80]!r}")
        if name not in present:
            continue
        if not c.strip():
            raise ConfigError(f"{caps_p}:{i}: empty caption for {name}")
        items.append(Item(media=os.path.join(images, name), captions=(c.strip(),), id=os.path.splitext(name)[0]))
    if not items:
        raise ConfigError(f"none of the {len(urls)} SBU photos is in {images} (file names as in the URLs)")
    if len(items) < len(urls):
        log.info("sbu: %d of %d photos present in %s; the others are left out", len(items), len(urls), images)
    return RetrievalDataset.from_items(f"sbu:{os.path.basename(folder)}", items, caption_policy=caption_policy,
                                       source_files=[urls_p, caps_p])


__all__ = ["CAPTIONS", "URLS", "load_sbu"]
