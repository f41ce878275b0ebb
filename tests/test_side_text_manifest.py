"""Side text given on the command line: ``xmr index --manifest FILE`` feeds the sidecar expert comments (one row
each), entities (one field per type), ASR rows with times; recorded in the index; bad manifests."""
from __future__ import annotations

import json
import shutil

import pytest
from conftest import SAMPLES, run_cli


@pytest.fixture
def photos(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for n in ("horse.png", "coffee.png", "rocket.jpg"):
        shutil.copy(SAMPLES / n, d / n)
    return d


def _manifest(path, media_dir, rel=False):
    lines = [
        {"media": "horse.png" if rel else str(media_dir / "horse.png"), "title": "Bella",
         "comments": ["what a lovely mare", "first!", "what a lovely mare"],
         "entities": {"brand": ["Acme Stables"], "place": ["Ohio", "Ohio"]}, "id": "7", "year": 2020},
        {"file_name": "coffee.png" if rel else str(media_dir / "coffee.png"),
         "asr": [{"start": 1.0, "end": 2.5, "text": "pour the espresso"}, {"start": 3, "end": 2, "text": "bad"}]},
        {"media": "nothere.png", "title": "no such file"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def test_sidecar_rows_from_a_given_manifest(photos, tmp_path):
    from xmr.experts import create_expert

    m = _manifest(tmp_path / "side.jsonl", photos)
    ex = create_expert("sidecar", {"manifests": [str(m)], "max_comments": 5})
    rows = [(r.field, r.text, r.start, r.end) for r in ex.extract(str(photos / "horse.png"), "image")]
    assert rows == [("manifest:title", "Bella", None, None),
                    ("manifest:comments", "what a lovely mare", None, None),  # each comment its own row, once
                    ("manifest:comments", "first!", None, None),
                    ("entity:brand", "Acme Stables", None, None), ("entity:place", "Ohio", None, None)]
    rows = [(r.field, r.text, r.start, r.end) for r in ex.extract(str(photos / "coffee.png"), "image")]
    assert rows == [("manifest:asr", "pour the espresso", 1.0, 2.5)]  # the cue that ends before it starts: dropped
    assert ex.extract(str(photos / "rocket.jpg"), "image") == []
    sig = ex.signature(str(photos / "rocket.jpg"), "h")
    m.write_text(m.read_text() + json.dumps({"media": str(photos / "rocket.jpg"), "title": "a rocket"}) + "\n")
    assert ex.signature(str(photos / "rocket.jpg"), "h") != sig  # an edited manifest re-runs the expert
    # relative paths resolve against the manifest's folder
    rel = _manifest(photos / "rel.jsonl", photos, rel=True)
    ex = create_expert("sidecar", {"manifests": [str(rel)]})
    assert [r.text for r in ex.extract(str(photos / "coffee.png"), "image")] == ["pour the espresso"]


def test_index_manifest_cli_recorded_and_searchable(photos, tmp_path, capsys):
    m = _manifest(tmp_path / "side.jsonl", photos)
    idx = tmp_path / "idx"
    code, out, err = run_cli(capsys, "index", str(photos), "--index", str(idx), "--model", "tiny",
                             "--manifest", str(m), "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["experts"]["ran"] == {"sidecar": 3} and rep["experts"]["rows"] == {"sidecar": 6}
    from xmr.index import IndexStore

    with IndexStore(idx, readonly=True) as st:
        assert st.expert_names() == ["sidecar"]
        assert st.expert_settings() == {"sidecar": {"manifests": [str(m)]}}
    code, out, _ = run_cli(capsys, "search", "pour the espresso", "--index", str(idx), "--json", "-k", "1")
    r = json.loads(out)["results"][0]
    assert r["path"].endswith("coffee.png") and r["match"] == "sidecar"
    assert (r["experts"]["sidecar"]["start"], r["experts"]["sidecar"]["end"]) == (1.0, 2.5)  # a video's would be its span
    code, out, _ = run_cli(capsys, "search", "Acme Stables", "--index", str(idx), "--json", "-k", "1")
    r = json.loads(out)["results"][0]
    assert r["path"].endswith("horse.png") and r["experts"]["sidecar"]["field"] == "entity:brand"
    # a later run without --manifest keeps reading it: an edit re-indexes that item only
    m.write_text(m.read_text().replace("Bella", "Stella"))
    code, out, _ = run_cli(capsys, "index", str(photos), "--index", str(idx), "--model", "tiny", "--json")
    assert json.loads(out)["experts"]["ran"] == {"sidecar": 3}  # the manifest is an input of every item it may hold
    code, out, _ = run_cli(capsys, "search", "Stella", "--index", str(idx), "--json", "-k", "1")
    assert json.loads(out)["results"][0]["experts"]["sidecar"]["text"] == "Stella"


def test_index_manifest_bad_input(photos, tmp_path, capsys):
    idx = tmp_path / "idx"
    code, _, err = run_cli(capsys, "index", str(photos), "--index", str(idx), "--model", "tiny",
                           "--manifest", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "no such file" in err and not idx.exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"media": "horse.png"}\n{oops\n')
    code, out, err = run_cli(capsys, "index", str(photos), "--index", str(idx), "--model", "tiny",
                             "--manifest", str(bad), "--json")
    assert code == 0
    skipped = json.loads(out)["experts"]["skipped"]
    assert len(skipped) == 3 and all("bad.jsonl line 2 is not valid JSON" in s["reason"] for s in skipped)
    from xmr.index import IndexStore

    with IndexStore(idx, readonly=True) as st:
        assert st.count() == 3  # the items keep their visual embeddings
    cp = tmp_path / "latin1.jsonl"
    cp.write_bytes(b'{"media": "horse.png", "title": "caf\xe9"}\n')
    from xmr.experts import create_expert
    from xmr.errors import ExpertSkip

    with pytest.raises(ExpertSkip, match="not UTF-8"):
        create_expert("sidecar", {"manifests": [str(cp)]}).extract(str(photos / "horse.png"), "image")
    from xmr.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown field"):
        create_expert("sidecar", {"manifest": [str(cp)]})


def test_side_text_command_writes_an_indexable_manifest(tmp_path, capsys):
    from pathlib import Path

    fx = Path(__file__).parent / "fixtures" / "side_text" / "product1m"
    out = tmp_path / "side.jsonl"
    code, stdout, _ = run_cli(capsys, "side-text", f"product1m:{fx}:test", "--out", str(out))
    assert code == 0 and "2 media files" in stdout
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["entities"] == {"instance": ["AHC gold cream", "AHC gold essence"]}
    from xmr.experts import create_expert

    ex = create_expert("sidecar", {"manifests": [str(out)]})
    rows = ex._manifest_rows(lines[0]["media"])
    assert [(r.field, r.text) for r in rows] == [("manifest:title", "ahc gold cream set 24K essence"),
                                                ("entity:instance", "AHC gold cream, AHC gold essence")]
    code, _, err = run_cli(capsys, "side-text", f"csv:{fx}", "--out", str(out))
    assert code == 2 and "has no side text" in err
