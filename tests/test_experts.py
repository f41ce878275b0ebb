"""Experts (xmr.experts): subtitle / sidecar / OCR readers on hand-made inputs, the experts' pass of the indexer
(incremental, skips with reasons), the experts search stage (fusion, phrase, moments) and the CLI."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import FIXTURES, SAMPLES, run_cli

from xmr.errors import ConfigError, ExpertSkip

SRT = """1
00:00:01,000 --> 00:00:02,500
<i>Hello</i> there

2
00:00:03,000 --> 00:00:04,000 X1:10
The EXIT is
on the left
"""

VTT = """WEBVTT

NOTE a comment
that spans lines

intro
00:01.000 --> 00:02.000 align:start
{\\an8}first cue

01:00:00.500 --> 01:00:01.250
second <c.yellow>cue</c>
"""


# ---- subtitles --------------------------------------------------------------------------------------------------
def test_parse_srt_and_vtt_hand_cases():
    from xmr.experts.subtitles import Cue, parse_subtitles

    assert parse_subtitles(SRT) == [Cue(1.0, 2.5, "Hello there"), Cue(3.0, 4.0, "The EXIT is on the left")]
    assert parse_subtitles(VTT) == [Cue(1.0, 2.0, "first cue"), Cue(3600.5, 3601.25, "second cue")]
    assert parse_subtitles("\ufeff" + SRT.replace("\n", "\r\n"))[1].text == "The EXIT is on the left"


@pytest.mark.parametrize("bad, why", [
    ("1\n00:00:01,000 --> 00:00:0x,000\nhi\n", "malformed time line"),
    ("1\n00:00:05,000 --> 00:00:01,000\nhi\n", r"ends \(1.000 s\) before it starts"),
    ("1\n00:00:75,000 --> 00:01:01,000\nhi\n", "over 59"),
    ("1\nhello\n", "expected a time line"),
])
def test_parse_subtitles_refuses_bad_timestamps(bad, why):
    from xmr.experts.subtitles import parse_subtitles

    with pytest.raises(ValueError, match=why):
        parse_subtitles(bad, "x.srt")


def test_subtitle_expert_skips_bad_encoding_and_bad_times(tmp_path):
    from xmr.experts.subtitles import SubtitleExpert

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")  # the expert reads only the subtitle file
    (tmp_path / "clip.srt").write_bytes(SRT.replace("Hello", "H\xe9llo").encode("cp1252"))
    with pytest.raises(ExpertSkip, match=r"clip.srt is not UTF-8 \(byte 0xe9"):
        SubtitleExpert().extract(str(video), "video")
    (tmp_path / "clip.srt").write_text("1\n00:00:05,000 --> 00:00:01,000\nhi\n")
    with pytest.raises(ExpertSkip, match="before it starts"):
        SubtitleExpert().extract(str(video), "video")
    (tmp_path / "clip.srt").write_text(SRT)
    rows = SubtitleExpert().extract(str(video), "video")
    assert [(r.start, r.end, r.field) for r in rows] == [(1.0, 2.5, "cue"), (3.0, 4.0, "cue")]


# ---- sidecar ----------------------------------------------------------------------------------------------------
def _exif_png(path, description=None, keywords=None, xmp=None):
    from PIL import Image, PngImagePlugin

    im = Image.open(SAMPLES / "horse.png").convert("RGB").resize((64, 64))
    exif = Image.Exif()
    if description:
        exif[0x010E] = description
    if keywords:
        exif[0x9C9E] = keywords.encode("utf-16-le") + b"\x00\x00"
    info = PngImagePlugin.PngInfo()
    if xmp:
        info.add_itxt("XML:com.adobe.xmp", xmp)
    im.save(path, exif=exif, pnginfo=info)


XMP = """<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:description><rdf:Alt><rdf:li xml:lang="x-default">A brown horse in a field</rdf:li></rdf:Alt></dc:description>
<dc:subject><rdf:Bag><rdf:li>horse</rdf:li><rdf:li>pasture</rdf:li></rdf:Bag></dc:subject>
</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>"""


def test_sidecar_reads_txt_json_exif_xmp(tmp_path):
    from xmr.experts.sidecar import SidecarExpert

    p = tmp_path / "horse.png"
    _exif_png(p, description="Bella at the farm", keywords="horse;farm", xmp=XMP)
    (tmp_path / "horse.png.txt").write_text("Taken in  May\n2021")
    (tmp_path / "horse.json").write_text(json.dumps({"title": "Bella", "tags": ["mare", "brown"], "rating": 5,
                                                     "entities": {"person": ["Ada"], "place": ["Ohio"]}}))
    rows = {r.field: r.text for r in SidecarExpert().extract(str(p), "image")}
    assert rows == {"text": "Taken in May 2021", "title": "Bella", "tags": "mare, brown", "rating": "5",
                    "entities": "Ada, Ohio", "exif:ImageDescription": "Bella at the farm",
                    "exif:XPKeywords": "horse, farm", "xmp:dc:description": "A brown horse in a field",
                    "xmp:dc:subject": "horse, pasture"}


@pytest.mark.parametrize("content, why", [
    (b"{not json", "horse.json is not valid JSON"),
    (b'["a list"]', "holds a JSON list, expected an object"),
    (b'{"title": "caf\xe9"}', "horse.json is not UTF-8"),
])
def test_sidecar_bad_json_is_a_skip_with_reason(tmp_path, content, why):
    from xmr.experts.sidecar import SidecarExpert

    p = tmp_path / "horse.png"
    shutil.copy(SAMPLES / "horse.png", p)
    (tmp_path / "horse.json").write_bytes(content)
    with pytest.raises(ExpertSkip, match=why):
        SidecarExpert().extract(str(p), "image")


def test_sidecar_refuses_xmp_with_entities(tmp_path):
    from xmr.experts.sidecar import xmp_rows

    bomb = '<!DOCTYPE x [<!ENTITY a "aaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/">&a;</x:xmpmeta>'
    with pytest.raises(ExpertSkip, match="DTD or entities"):
        xmp_rows("p.png", bomb)


# ---- ocr ---------------------------------------------------------------------------------------------------------
def test_ocr_reads_the_sample_page_and_skips_huge_or_broken_images(tmp_path):
    pytest.importorskip("rapidocr_onnxruntime", reason="the ocr expert needs xmr[ocr] (rapidocr-onnxruntime)")
    from xmr.experts.ocr import OcrExpert

    rows = OcrExpert().extract(str(SAMPLES / "page.png"), "image")
    assert len(rows) == 1 and rows[0].field == "ocr" and rows[0].start is None
    assert "markers" in rows[0].text and "background" in rows[0].text and rows[0].confidence > 0.8
    small = OcrExpert(OcrExpert.Config(max_pixels=10_000))
    with pytest.raises(ExpertSkip, match="ocr: .*pixels"):
        small.extract(str(SAMPLES / "page.png"), "image")
    with pytest.raises(ExpertSkip, match="ocr: "):
        OcrExpert().extract(str(FIXTURES / "truncated.jpg"), "image")


def test_ocr_on_a_synthetic_text_image(tmp_path):
    pytest.importorskip("rapidocr_onnxruntime", reason="the ocr expert needs xmr[ocr] (rapidocr-onnxruntime)")
    from xmr.experts.ocr import OcrExpert
    from xmr.synth.text_images import generate_text_images

    m = generate_text_images(tmp_path / "t", n=2, seed=3, max_angle=5.0)
    for line in map(json.loads, m.read_text().splitlines()):
        rows = OcrExpert().extract(str(m.parent / line["media"]), "image")
        assert rows and line["words"][0] in rows[0].text.upper().replace(" ", "")


# ---- synth -------------------------------------------------------------------------------------------------------
def test_synth_text_images_distinct_words_and_manifest(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "synth", "text-images", "--out", str(tmp_path / "s"), "--n", "5", "--words", "2")
    assert code == 0 and "wrote 5 text images" in out
    lines = [json.loads(x) for x in (tmp_path / "s" / "captions.jsonl").read_text().splitlines()]
    words = [w for x in lines for w in x["words"]]
    assert len(lines) == 5 and len(set(words)) == 10
    assert all(" ".join(x["words"]) in x["captions"][0] for x in lines)
    from PIL import Image

    assert Image.open(tmp_path / "s" / lines[0]["media"]).size == (320, 320)
    from xmr.data import load_dataset

    assert len(load_dataset(f"manifest:{tmp_path / 's' / 'captions.jsonl'}").items) == 5
    with pytest.raises(ConfigError, match="distinct words"):
        from xmr.synth.text_images import TextImageConfig

        TextImageConfig(n=500)


# ---- the indexer's experts pass + search -------------------------------------------------------------------------
@pytest.fixture
def side_dir(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for n in ("horse.png", "coffee.png", "rocket.jpg", "camera.png"):
        shutil.copy(SAMPLES / n, d / n)
    (d / "horse.json").write_text(json.dumps({"title": "Bella the mare", "tags": ["farm"]}))
    (d / "coffee.png.txt").write_text("breakfast at the EXIT cafe")
    (d / "rocket.json").write_text("{broken")
    return d


def _states(index):
    from xmr.index import IndexStore

    with IndexStore(index, readonly=True) as st:
        return st.expert_states(), st.expert_names()


def test_index_experts_incremental_with_skips(side_dir, tmp_path, tiny_encoder, capsys):
    from xmr.index import IndexStore, index_folder

    idx = tmp_path / "idx"
    rep = index_folder(side_dir, idx, tiny_encoder, show_progress=False, experts=["sidecar"])
    assert rep.added == 4 and rep.experts["ran"] == {"sidecar": 4} and rep.experts["rows"] == {"sidecar": 3}
    assert [(s["path"].endswith("rocket.jpg"), s["expert"]) for s in rep.experts["skipped"]] == [(True, "sidecar")]
    with IndexStore(idx, readonly=True) as st:
        assert st.count() == 4  # the item with the broken sidecar keeps its visual embedding
        ids, items, names, vecs = st.expert_matrix()
        texts = sorted(r.text for r in st.expert_rows(ids.tolist()).values())
        assert texts == ["Bella the mare", "breakfast at the EXIT cafe", "farm"]
        assert np.allclose(vecs, tiny_encoder.encode_text(  # the index model's text tower
            [st.expert_rows([int(i)])[int(i)].text for i in ids]), atol=1e-5)
    # a re-run keeps the experts (no --experts) and re-runs nothing
    rep = index_folder(side_dir, idx, tiny_encoder, show_progress=False)
    assert rep.experts["ran"] == {"sidecar": 0} and rep.experts["unchanged"] == {"sidecar": 4}
    # a changed / fixed sidecar re-indexes its item only
    (side_dir / "rocket.json").write_text(json.dumps({"description": "a toy rocket"}))
    rep = index_folder(side_dir, idx, tiny_encoder, show_progress=False)
    assert rep.experts["ran"] == {"sidecar": 1} and rep.experts["skipped"] == []
    states, names = _states(idx)
    assert names == ["sidecar"] and all(v[2] is None for v in states.values())
    # xmr info lists the expert
    code, out, _ = run_cli(capsys, "info", "--index", str(idx), "--json")
    assert json.loads(out)["experts"]["sidecar"] == {"items": 4, "with_text": 3, "rows": 4, "skipped": []}
    # a deleted file takes its expert rows with it
    (side_dir / "coffee.png").unlink()
    index_folder(side_dir, idx, tiny_encoder, show_progress=False)
    with IndexStore(idx, readonly=True) as st:
        assert "breakfast at the EXIT cafe" not in [r.text for r in st.expert_rows(st.expert_matrix()[0]).values()]
        assert len(st.expert_states()) == 3


def test_default_index_has_no_experts_and_searches_as_before(side_dir, tmp_path, capsys):
    idx = tmp_path / "idx"
    assert run_cli(capsys, "-q", "index", str(side_dir), "--index", str(idx), "--model", "tiny")[0] == 0
    states, names = _states(idx)
    assert states == {} and names == []
    code, out, _ = run_cli(capsys, "search", "a horse", "--index", str(idx), "--json")
    d = json.loads(out)
    assert [s["stage"] for s in d["stages"]] == ["first-stage", "moments"]
    assert all("match" not in r and "experts" not in r for r in d["results"])
    code, _, err = run_cli(capsys, "search", "--phrase", "EXIT", "--index", str(idx))
    assert code == 2 and "carries none" in err


def test_search_fuses_experts_and_phrase_filters(side_dir, tmp_path, tiny_encoder, capsys):
    idx = tmp_path / "idx"
    assert run_cli(capsys, "-q", "index", str(side_dir), "--index", str(idx), "--model", "tiny",
                   "--experts", "sidecar")[0] == 0
    code, out, _ = run_cli(capsys, "search", "Bella the mare", "--index", str(idx), "--json", "-k", "4")
    d = json.loads(out)
    assert code == 0 and d["stages"][-1]["stage"] == "experts" and d["stages"][-1]["fusion"] == "vista"
    top = d["results"][0]
    assert top["path"].endswith("horse.png") and top["match"] == "sidecar"
    assert top["experts"]["sidecar"]["text"] == "Bella the mare" and top["experts"]["sidecar"]["score"] > 0.99
    # vista score: cosine to v + t, recomputed here from the model
    from xmr.index import IndexStore

    with IndexStore(idx, readonly=True) as st:
        v = st.item_vectors([top["id"]])[0]
    q, t = tiny_encoder.encode_text(["Bella the mare"])[0], tiny_encoder.encode_text(["Bella the mare"])[0]
    assert top["score"] == pytest.approx(float(q @ (v + t) / np.linalg.norm(v + t)), abs=1e-4)
    # max rule: the expert score itself wins
    code, out, _ = run_cli(capsys, "search", "Bella the mare", "--index", str(idx), "--json", "--expert-fusion",
                           "max")
    assert json.loads(out)["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    # phrase: only the item whose text holds the whole word, any case; a quoted part of the query does the same
    for argv in (["a photo", "--phrase", "exit"], ['"Exit" a photo']):
        code, out, _ = run_cli(capsys, "search", *argv, "--index", str(idx), "--json")
        res = json.loads(out)["results"]
        assert [r["path"].rsplit("/", 1)[-1] for r in res] == ["coffee.png"] and res[0]["experts"]["sidecar"]["phrase"]
    code, out, _ = run_cli(capsys, "search", "--phrase", "exi", "--index", str(idx), "--json")
    assert json.loads(out)["results"] == []  # whole words only
    # --experts none: the visual score alone, as on an index without experts
    code, out, _ = run_cli(capsys, "search", "Bella the mare", "--index", str(idx), "--json", "--experts", "none")
    assert [s["stage"] for s in json.loads(out)["stages"]] == ["first-stage", "moments"]
    code, _, err = run_cli(capsys, "search", "x", "--index", str(idx), "--experts", "ocr")
    assert code == 2 and "carries no ocr expert" in err
    code, _, err = run_cli(capsys, "search", "x", "--index", str(idx), "--expert-weight", "sidecar")
    assert code == 2 and "NAME=NUMBER" in err
    # the plain printout names the matched expert and its text
    code, out, _ = run_cli(capsys, "search", "Bella the mare", "--index", str(idx), "-k", "1")
    assert "sidecar (title" in out and "Bella the mare" in out


def test_subtitle_hit_is_a_moment(tmp_path, tiny_encoder, capsys):
    pytest.importorskip("av", reason="video indexing needs PyAV (xmr[video])")
    from xmr.synth.videos import generate_videos

    m = generate_videos(tmp_path / "synth", n=1, seed=1, frames=48, fps=8)
    vids = sorted((m.parent).rglob("*.mp4"))
    (vids[0].with_suffix(".srt")).write_text(SRT)
    (tmp_path / "synth" / "broken.srt").write_text("x")  # no video of that name: ignored
    idx = tmp_path / "idx"
    assert run_cli(capsys, "-q", "index", str(m.parent), "--index", str(idx), "--model", "tiny", "--experts",
                   "subtitles")[0] == 0
    code, out, _ = run_cli(capsys, "search", "The EXIT is on the left", "--index", str(idx), "--json", "-k", "1")
    r = json.loads(out)["results"][0]
    assert r["match"] == "subtitles" and (r["start"], r["end"]) == (3.0, 4.0)
    assert r["experts"]["subtitles"]["text"] == "The EXIT is on the left"


def test_parse_experts_names_the_available_ones():
    from xmr.experts import parse_experts

    assert parse_experts("ocr, sidecar,ocr") == ["ocr", "sidecar"]
    with pytest.raises(ConfigError, match="Available: audio, ocr, sidecar, subtitles"):
        parse_experts("smell")


def test_serve_api_results_name_the_expert_and_take_a_phrase(side_dir, tmp_path, tiny_encoder):
    pytest.importorskip("fastapi", reason="xmr serve needs the serve extra")
    from fastapi.testclient import TestClient

    from xmr.index import index_folder
    from xmr.serve import create_app

    index_folder(side_dir, tmp_path / "idx", tiny_encoder, show_progress=False, experts=["sidecar"])
    with TestClient(create_app(tmp_path / "idx", encoder=tiny_encoder), base_url="http://127.0.0.1:8000") as c:
        r = c.get("/api/search", params={"q": "Bella the mare", "k": 2}).json()
        assert r["stages"][-1]["stage"] == "experts" and r["results"][0]["path"] == "horse.png"
        assert r["results"][0]["match"] == "sidecar"
        assert r["results"][0]["experts"]["sidecar"]["text"] == "Bella the mare"
        r = c.get("/api/search", params={"q": "a photo", "phrase": "EXIT"}).json()
        assert [x["path"] for x in r["results"]] == ["coffee.png"]
        assert c.get("/api/search", params={"q": '"exit" a photo'}).json()["results"][0]["path"] == "coffee.png"


def test_ocr_reads_a_video_frame_with_its_time(tmp_path):
    pytest.importorskip("rapidocr_onnxruntime", reason="the ocr expert needs xmr[ocr] (rapidocr-onnxruntime)")
    pytest.importorskip("av", reason="video frames need PyAV (xmr[video])")
    from xmr.experts.ocr import OcrExpert
    from xmr.synth.text_images import render_text_image
    from xmr.synth.videos import write_clip

    im = render_text_image(["HARBOR"], size=256, font="default", font_size=40, angle=0.0, colour="red",
                           shape="circle", rng=np.random.default_rng(0))
    frames = np.stack([np.asarray(im)] * 16)  # 4 s at 4 fps
    write_clip(tmp_path / "sign.mp4", frames, fps=4)
    rows = OcrExpert(OcrExpert.Config(video_fps=0.5, video_max_frames=2)).extract(str(tmp_path / "sign.mp4"), "video")
    assert rows and all("HARBOR" in r.text.upper() for r in rows)
    assert all(r.start is not None and r.start == r.end and 0 <= r.start < 4 for r in rows)


def test_sidecar_reads_fields_from_a_manifest(tmp_path):
    from xmr.experts.sidecar import SidecarExpert

    (tmp_path / "imgs").mkdir()
    for n in ("horse.png", "coffee.png"):
        shutil.copy(SAMPLES / n, tmp_path / "imgs" / n)
    (tmp_path / "imgs" / "metadata.jsonl").write_text(
        json.dumps({"file_name": "horse.png", "text": "a horse grazing", "tags": ["farm", "animal"], "year": 2020})
        + "\n\n" + json.dumps({"file_name": "other.png", "text": "not this one"}) + "\n")
    (tmp_path / "captions.jsonl").write_text(json.dumps({"media": "imgs/coffee.png", "captions": ["a cup", "coffee"],
                                                         "split": "test", "id": "7"}) + "\n")
    ex = SidecarExpert()
    got = {r.field: r.text for r in ex.extract(str(tmp_path / "imgs" / "horse.png"), "image")}
    assert got == {"manifest:text": "a horse grazing", "manifest:tags": "farm, animal"}
    got = [(r.field, r.text) for r in ex.extract(str(tmp_path / "imgs" / "coffee.png"), "image")]
    assert got == [("manifest:captions", "a cup"), ("manifest:captions", "coffee")]
    sig = ex.signature(str(tmp_path / "imgs" / "coffee.png"), "h")
    (tmp_path / "captions.jsonl").write_text("{broken\n")
    assert ex.signature(str(tmp_path / "imgs" / "coffee.png"), "h") != sig  # an edited manifest re-indexes
    with pytest.raises(ExpertSkip, match="captions.jsonl line 1 is not valid JSON"):
        ex.extract(str(tmp_path / "imgs" / "coffee.png"), "image")


def test_ocr_skip_is_recorded_and_the_item_kept(tmp_path, tiny_encoder, monkeypatch, capsys):
    """An image over the OCR pixel limit: skipped by the ocr expert with the reason (xmr index prints it, xmr info
    lists it), its visual embedding indexed. The limit is lowered so that no OCR runs at all."""
    import xmr.experts
    from xmr.experts.ocr import OcrExpert

    real = xmr.experts.create_expert
    monkeypatch.setattr(xmr.experts, "create_expert", lambda n: OcrExpert(OcrExpert.Config(max_pixels=10_000))
                        if n == "ocr" else real(n))
    d = tmp_path / "imgs"
    d.mkdir()
    shutil.copy(SAMPLES / "page.png", d / "page.png")
    code, out, err = run_cli(capsys, "index", str(d), "--index", str(tmp_path / "idx"), "--model", "tiny",
                             "--experts", "ocr")
    assert code == 0 and "1 added" in out and "expert ocr: ran on 1 items (0 texts" in out
    assert "expert ocr skipped" in err and "over the 10000-pixel limit" in err
    code, out, _ = run_cli(capsys, "info", "--index", str(tmp_path / "idx"))
    assert "expert ocr: ran on 1 items, text in 0 (0 rows), 1 skipped" in out and "10000-pixel limit" in out
    code, out, _ = run_cli(capsys, "search", "a page", "--index", str(tmp_path / "idx"), "--json")
    assert [r["path"].rsplit("/", 1)[-1] for r in json.loads(out)["results"]] == ["page.png"]
