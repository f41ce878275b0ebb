"""Side text: what people wrote about a photo or video, next to it or inside it.

Read, in this order, one row per field (identical texts kept once):

* sidecar files next to the media file ``photo.jpg``: ``photo.jpg.txt`` / ``photo.txt`` (the whole text, field
  ``text``), ``photo.jpg.json`` / ``photo.json`` (an object: ``title``, ``description``, ``caption``, ``tags``,
  ``keywords``, ``comments``, ``entities`` (a list, or an object whose values are lists), and any other key whose
  value is a string or a list of strings, each as a field named by its key);
* a manifest in the file's folder or the folder above: ``metadata.jsonl`` (Hugging Face ImageFolder's layout: one
  JSON object per line with ``file_name`` relative to the manifest's folder) or ``captions.jsonl`` (xmr's manifest
  layout, ``media``); every other key of the file's line (string or list of strings) is a row, field
  ``manifest:<key>`` (``id``, ``split`` and numbers are not text and are left out);
* manifests given on the command line (``xmr index --manifest FILE``, :attr:`SidecarExpert.Config.manifests`,
  recorded in the index): the same JSON lines anywhere on disk, the media file named by ``media`` or
  ``file_name`` (absolute, or relative to the manifest's folder). In every manifest, ``comments`` (VTC's user
  comments) are one row each (field ``manifest:comments``, the first ``max_comments``), ``entities`` given as an
  object of lists are one row per entity type (field ``entity:<type>``: EI-CLIP's entities as their own fields),
  a recipe's ``ingredients`` / ``instructions`` lists one row per item (fields ``manifest:ingredients`` /
  ``manifest:instructions``, in order, the first ``max_comments``: the per-item sentences the hierarchical recipe
  tower reads, ``xmr search --recipe-tower``), and ``asr`` / ``cues`` as a list of ``{"start", "end", "text"}`` are timed rows (a hit is a moment);
* for images, metadata embedded in the file (header only, no pixels decoded): EXIF ``ImageDescription``,
  ``XPTitle``, ``XPComment``, ``XPSubject``, ``XPKeywords``; XMP ``dc:title``, ``dc:description``, ``dc:subject``;
  IPTC caption (2:120), headline (2:105), object name (2:05), keywords (2:25).

Bad input: a sidecar that is not UTF-8, a JSON sidecar that is not a JSON object, a sidecar over
``max_bytes`` -> :class:`~xmr.errors.ExpertSkip` naming the file and what is wrong; the item keeps its visual
embedding and its other experts. Unparseable embedded XMP is reported the same way.
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from ..errors import ExpertSkip
from ..registries import EXPERTS
from .base import Expert, ExpertText, clean_text

_JSON_LIST_FIELDS = ("tags", "keywords", "comments", "entities")
_EXIF = {0x010E: "exif:ImageDescription", 0x9C9B: "exif:XPTitle", 0x9C9C: "exif:XPComment",
         0x9C9F: "exif:XPSubject", 0x9C9E: "exif:XPKeywords"}
_IPTC = {(2, 5): "iptc:ObjectName", (2, 105): "iptc:Headline", (2, 120): "iptc:Caption", (2, 25): "iptc:Keywords"}
_NS = {"dc": "http://purl.org/dc/elements/1.1/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#"}


MANIFESTS = {"metadata.jsonl": "file_name", "captions.jsonl": "media"}  # manifest file -> its path key
_NOT_TEXT = {"id", "split", "label", "true_label", "caption_source"}


def manifest_paths(path: str) -> list[str]:
    """Manifests that may describe ``path``: in its folder, then in the folder above."""
    d = os.path.dirname(os.path.abspath(path))
    return [os.path.join(folder, name) for folder in (d, os.path.dirname(d)) for name in MANIFESTS]


def sidecar_paths(path: str) -> list[str]:
    """The sidecar files :class:`SidecarExpert` looks for next to ``path`` (existing or not)."""
    stem = os.path.splitext(path)[0]
    return [path + ".txt", stem + ".txt", path + ".json", stem + ".json"]


def read_text_file(path: str, max_bytes: int, what: str) -> str:
    """A UTF-8 text file (a BOM is allowed), or ExpertSkip saying what is wrong with it."""
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise ExpertSkip(path, f"{what}: {name} is {size} bytes, over the {max_bytes}-byte limit")
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as e:
        raise ExpertSkip(path, f"{what}: cannot read {name} ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ExpertSkip(path, f"{what}: {name} is not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); "
                               f"save it as UTF-8 (e.g. iconv -f cp1252 -t utf-8)") from None


@EXPERTS.register("sidecar", help="side text: photo.txt / photo.json, EXIF, XMP and IPTC captions and keywords")
class SidecarExpert(Expert):
    name = "sidecar"
    version = "3"  # 3: recipe ingredients / instructions one row per item

    @dataclass
    class Config:
        max_bytes: int = 1_000_000  # a sidecar file larger than this is skipped
        embedded: bool = True  # also read EXIF / XMP / IPTC inside images
        manifests: list[str] = field(default_factory=list)  # absolute paths of manifests given on the command line
        max_comments: int = 100  # rows kept per item from a manifest's comments

    def __init__(self, config=None):
        super().__init__(config)
        self._manifests: dict[str, tuple[tuple, dict]] = {}  # manifest path -> ((size, mtime), {abs path: line})

    def inputs(self, path: str) -> list[str]:
        return [p for p in sidecar_paths(path) if p != path] + manifest_paths(path) + list(self.config.manifests)

    def _manifest(self, mpath: str) -> dict:
        """{absolute media path: its line} of one manifest, parsed once per (size, mtime)."""
        st = os.stat(mpath)
        key = (st.st_size, st.st_mtime_ns)
        cached = self._manifests.get(mpath)
        if cached is not None and cached[0] == key:
            return cached[1]
        text = read_text_file(mpath, 50 * self.config.max_bytes, "sidecar manifest")
        keys = (MANIFESTS[os.path.basename(mpath)],) if mpath not in self.config.manifests else ("media", "file_name")
        base = os.path.dirname(mpath)
        lines = {}
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ExpertSkip(mpath, f"sidecar: {os.path.basename(mpath)} line {n} is not valid JSON "
                                        f"({e.msg})") from None
            key = next((k for k in keys if isinstance(obj, dict) and isinstance(obj.get(k), str)), None)
            if key is not None:
                lines[os.path.normpath(os.path.join(base, os.path.expanduser(obj[key])))] = obj
        self._manifests[mpath] = (key, lines)
        return lines

    def _manifest_rows(self, path: str) -> list[ExpertText]:
        rows = []
        me = os.path.normpath(os.path.abspath(path))
        for m in list(dict.fromkeys(manifest_paths(path) + list(self.config.manifests))):
            if not os.path.isfile(m):
                if m in self.config.manifests:
                    raise ExpertSkip(path, f"sidecar: the manifest {m} given with --manifest is gone; index again "
                                           f"without it or put it back")
                continue
            line = self._manifest(m).get(me)
            if line is None:
                continue
            skip = set(MANIFESTS.values()) | _NOT_TEXT | {"media"}
            for key, v in line.items():
                if key in skip or isinstance(v, (int, float, bool)):
                    continue
                special = _special_rows(key, v, self.config.max_comments)
                if special is not None:
                    rows += special
                    continue
                vals = [clean_text(x) for x in _strings(v) if isinstance(x, str)] if isinstance(v, list) else \
                    [clean_text(v)] if isinstance(v, str) else []
                vals = [x for x in vals if x]
                if key in ("captions", "caption"):  # each caption its own row: they are alternatives
                    rows += [ExpertText(x, f"manifest:{key}") for x in vals]
                elif vals:
                    rows.append(ExpertText(clean_text(", ".join(vals)), f"manifest:{key}"))
        return rows

    def extract(self, path: str, media_type: str) -> list[ExpertText]:
        rows: list[ExpertText] = []
        seen_files = set()
        for p in [p for p in sidecar_paths(path) if p != path]:
            if p in seen_files or not os.path.isfile(p):
                continue
            seen_files.add(p)
            text = read_text_file(p, self.config.max_bytes, "sidecar")
            if p.endswith(".json"):
                rows += _json_rows(p, text)
            elif clean_text(text):
                rows.append(ExpertText(clean_text(text), "text"))
        rows += self._manifest_rows(path)
        if media_type == "image" and self.config.embedded:
            rows += embedded_rows(path)
        out, seen = [], set()
        for r in rows:
            if r.text and r.text.casefold() not in seen:
                seen.add(r.text.casefold())
                out.append(r)
        return out


def _special_rows(key: str, v, max_comments: int) -> list[ExpertText] | None:
    """Manifest keys with their own row layout (None for the others): comments, recipe ingredients and instructions
    one row each, entities one row per type, timed ASR / cue rows."""
    if key in ("comments", "ingredients", "instructions") and isinstance(v, list):  # one row per comment / step
        vals = [clean_text(x) for x in _strings(v)]
        return [ExpertText(x, f"manifest:{key}") for x in vals if x][:max_comments]
    if key == "entities" and isinstance(v, dict):
        rows = []
        for etype, ents in v.items():
            vals = list(dict.fromkeys(x for x in (clean_text(s) for s in _strings(ents)) if x))
            if vals:
                rows.append(ExpertText(clean_text(", ".join(vals)), f"entity:{clean_text(str(etype), 60)}"))
        return rows
    if key in ("asr", "cues") and isinstance(v, list) and all(isinstance(x, dict) for x in v):
        rows = []
        for x in v:
            t, a, b = clean_text(str(x.get("text", ""))), x.get("start"), x.get("end")
            if t and all(isinstance(y, (int, float)) and not isinstance(y, bool) for y in (a, b)) and 0 <= a < b:
                rows.append(ExpertText(t, f"manifest:{key}", float(a), float(b)))
        return rows
    return None


def _strings(v) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return [str(v)]
    if isinstance(v, list):
        return [s for x in v for s in _strings(x) if not isinstance(x, (list, dict))]
    if isinstance(v, dict):  # entities: {"person": ["Ada"], "place": ["Paris"]}
        return [s for x in v.values() for s in _strings(x)]
    return []


def _json_rows(path: str, text: str) -> list[ExpertText]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ExpertSkip(path, f"sidecar: {os.path.basename(path)} is not valid JSON ({e.msg} at line {e.lineno} "
                               f"column {e.colno})") from None
    if not isinstance(obj, dict):
        raise ExpertSkip(path, f"sidecar: {os.path.basename(path)} holds a JSON {type(obj).__name__}, expected an "
                               f"object such as {{\"title\": ..., \"tags\": [...]}}")
    rows = []
    for key, v in obj.items():
        vals = [clean_text(s) for s in _strings(v)]
        vals = [s for s in vals if s]
        if not vals:
            continue
        if key in _JSON_LIST_FIELDS or len(vals) > 1:
            rows.append(ExpertText(clean_text(", ".join(vals)), str(key)))
        else:
            rows.append(ExpertText(vals[0], str(key)))
    return rows


def embedded_rows(path: str) -> list[ExpertText]:
    """EXIF / XMP / IPTC text inside an image (its header only)."""
    from PIL import Image, IptcImagePlugin, UnidentifiedImageError

    rows: list[ExpertText] = []
    try:
        with Image.open(path) as im:
            exif = im.getexif()
            for tag, field in _EXIF.items():
                v = exif.get(tag)
                if isinstance(v, bytes):  # the XP* tags are UTF-16LE
                    v = v.decode("utf-16-le", errors="replace").rstrip("\x00")
                if isinstance(v, tuple):  # some writers store XP* as a tuple of byte values
                    v = bytes(v).decode("utf-16-le", errors="replace").rstrip("\x00")
                v = clean_text(v) if isinstance(v, str) else ""
                if v:
                    rows.append(ExpertText(v.replace(";", ", ") if field == "exif:XPKeywords" else v, field))
            xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
            if xmp:
                rows += xmp_rows(path, xmp)
            try:
                iptc = IptcImagePlugin.getiptcinfo(im) or {}
            except (SyntaxError, ValueError, IndexError, OSError):
                iptc = {}
            for key, field in _IPTC.items():
                v = iptc.get(key)
                vals = v if isinstance(v, list) else [v] if v is not None else []
                text = clean_text(", ".join(x.decode("utf-8", errors="replace") if isinstance(x, bytes) else str(x)
                                            for x in vals))
                if text:
                    rows.append(ExpertText(text, field))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise ExpertSkip(path, f"sidecar: cannot read the image's metadata ({e})") from None
    return rows


def xmp_rows(path: str, xmp: bytes | str) -> list[ExpertText]:
    """dc:title, dc:description (rdf:Alt, first entry) and dc:subject (rdf:Bag) from an XMP packet."""
    if isinstance(xmp, bytes):
        xmp = xmp.decode("utf-8", errors="replace")
    xmp = xmp.strip("\x00 \n")
    if "<!DOCTYPE" in xmp or "<!ENTITY" in xmp:  # entity expansion is never needed for XMP: refuse it
        raise ExpertSkip(path, "sidecar: the image's XMP declares a DTD or entities; refused")
    start = xmp.find("<x:xmpmeta")
    start = xmp.find("<rdf:RDF") if start < 0 else start
    end_tag = "</x:xmpmeta>" if xmp.startswith("<x:xmpmeta", start) else "</rdf:RDF>"
    end = xmp.find(end_tag)
    if start < 0 or end < 0:
        return []
    try:
        root = ET.fromstring(xmp[start : end + len(end_tag)])
    except ET.ParseError as e:
        raise ExpertSkip(path, f"sidecar: the image's XMP is not well-formed XML ({e})") from None
    rows = []
    for tag in ("title", "description", "subject"):
        for el in root.iter(f"{{{_NS['dc']}}}{tag}"):
            items = [clean_text(li.text or "") for li in el.iter(f"{{{_NS['rdf']}}}li")]
            items = [x for x in items if x]
            if tag != "subject":
                items = items[:1]
            if not items and el.text and clean_text(el.text):
                items = [clean_text(el.text)]
            if items:
                rows.append(ExpertText(clean_text(", ".join(items)), f"xmp:dc:{tag}"))
    return rows
