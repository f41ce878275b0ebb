"""Side-text dataset loaders (Recipe1M, Product1M, Amazon metadata, LiveBot, HowTo100M, VGGSound) on the tiny
hand-written fixtures in tests/fixtures/side_text (see ATTRIBUTION.md), and their side-text manifests."""
import json
import os
from pathlib import Path

import pytest

from xmr.data import load_dataset
from xmr.data.side_text import side_text, write_side_manifest
from xmr.errors import ConfigError

F = Path(__file__).parent / "fixtures" / "side_text"


def test_recipe1m_items_images_and_splits():
    ds = load_dataset(f"recipe1m:{F / 'recipe1m'}")
    assert len(ds) == 3  # the recipe without an image in layer2 is left out
    assert ds.items[0].media == str(F / "recipe1m" / "test" / "3" / "e" / "2" / "3" / "3e233001e2.jpg")
    assert ds.texts[0] == ("Tomato Basil Pasta. Ingredients: 200 g penne; 3 tomatoes; fresh basil. "
                           "Boil the penne. Chop the tomatoes and basil. Toss together.")
    assert [it.split for it in ds.items] == ["test", "train", "val"]
    assert load_dataset(f"recipe1m:{F / 'recipe1m'}:val?text=title").texts == ["Green Salad"]
    side = side_text(f"recipe1m:{F / 'recipe1m'}:train")
    assert side == [{"media": ds.items[1].media, "title": "Lemon Cake",
                     "ingredients": ["2 lemons", "flour", "sugar", "3 eggs"],
                     "instructions": ["Mix the flour, sugar and eggs.", "Add lemon zest.", "Bake 40 minutes."]}]


def test_recipe1m_bad_partition(tmp_path):
    (tmp_path / "layer1.json").write_text(json.dumps([{"id": "a", "title": "t", "partition": "dev"}]))
    (tmp_path / "layer2.json").write_text(json.dumps([{"id": "a", "images": [{"id": "abcdef.jpg"}]}]))
    with pytest.raises(ConfigError, match="partition"):
        load_dataset(f"recipe1m:{tmp_path}")
    (tmp_path / "layer2.json").write_text(json.dumps([{"id": "a", "images": [{"id": "../../etc/passwd"}]}]))
    with pytest.raises(ConfigError, match="not a file name"):
        load_dataset(f"recipe1m:{tmp_path}")


def test_product1m_titles_and_instance_entities():
    ds = load_dataset(f"product1m:{F / 'product1m'}:test")
    assert list(ds.texts) == ["ahc gold cream set 24K essence", "AHC toner and lotion three piece set"]
    assert ds.items[0].media.endswith(os.path.join("images", "623174602918.jpg")) and ds.items[0].id == "623174602918"
    side = side_text(f"product1m:{F / 'product1m'}:test")
    assert side[0]["entities"] == {"instance": ["AHC gold cream", "AHC gold essence"]}  # duplicates once
    with pytest.raises(ConfigError, match="unknown Product1M split"):
        load_dataset(f"product1m:{F / 'product1m'}:val")


def test_product1m_bad_line(tmp_path):
    (tmp_path / "product1m_test_ossurl_v2.txt").write_text("not a product line\n")
    with pytest.raises(ConfigError, match="line 1"):
        load_dataset(f"product1m:{tmp_path}")


def test_amazon_three_release_formats():
    spec = f"amazon:{F / 'amazon' / 'meta_Tiny.jsonl'}"
    ds = load_dataset(spec)
    assert [it.id for it in ds.items] == ["B01CUPMQZE", "0000031852", "0001048791"]  # untitled product left out
    side = {Path(s["media"]).stem: s for s in side_text(spec)}
    assert side["B01CUPMQZE"]["entities"] == {"brand": ["Petal Co"], "category": ["All Beauty"]}  # 2023
    assert side["0000031852"]["entities"] == {"brand": ["Boutique Cutie"], "category": ["Skirts"]}  # 2018
    assert side["0001048791"]["entities"] == {"category": ["Drama"]}  # 2014 Python literal
    assert side["0001048791"]["description"] == ["An audio play."]


def test_amazon_refuses_code(tmp_path):
    p = tmp_path / "meta_X.json"
    p.write_text("__import__('os').system('echo hi')\n")
    with pytest.raises(ConfigError, match="neither JSON nor a Python dict literal"):
        load_dataset(f"amazon:{p}")


def test_livebot_frames_comments_and_context():
    ds = load_dataset(f"livebot:{F / 'livebot'}:train")
    assert [it.id for it in ds.items] == ["7_3", "7_5", "7_20", "9_1"]
    assert ds.items[0].captions == ("好可爱的猫", "猫猫")  # jieba tokens joined back
    assert ds.items[0].media == str(F / "livebot" / "img" / "7" / "3.bmp")
    side = {Path(s["media"]).parent.name + "_" + Path(s["media"]).stem: s for s in side_text(f"livebot:{F / 'livebot'}")}
    assert side["7_3"]["comments"] == ["好可爱的猫", "猫猫", "这是什么狗"]  # within 3 s
    assert side["7_20"]["comments"] == ["前方高能"]  # 15 s away from the others


def test_howto100m_segments_and_timed_side_text():
    ds = load_dataset(f"howto100m:{F / 'howto100m' / 'caption.json'}?root=/videos&ext=webm")
    assert [(it.id, it.start, it.end) for it in ds.items] == [("abcDEF12345_0", 0.0, 4.5), ("abcDEF12345_1", 4.5, 9.0),
                                                               ("zyx98765432_0", 1.0, 6.0)]  # blank text left out
    assert ds.items[0].media == os.path.abspath("/videos/abcDEF12345.webm")
    side = side_text(f"howto100m:{F / 'howto100m' / 'caption.json'}")
    assert side[1] == {"media": str(F / "howto100m" / "videos" / "zyx98765432.mp4"),
                       "asr": [{"start": 1.0, "end": 6.0, "text": "change the bike tire"}]}


def test_howto100m_mismatched_lists(tmp_path):
    p = tmp_path / "caption.json"
    p.write_text(json.dumps({"v": {"start": [0, 1], "end": [1], "text": ["a", "b"]}}))
    with pytest.raises(ConfigError, match="different lengths"):
        load_dataset(f"howto100m:{p}")


def test_vggsound_clips_labels_splits(tmp_path):
    ds = load_dataset(f"vggsound:{F / 'vggsound' / 'vggsound.csv'}:test")
    assert list(ds.texts) == ["people marching"]
    assert ds.items[0].media == str(F / "vggsound" / "video" / "---g-f_I2yQ_000001.mp4")
    out = tmp_path / "side.jsonl"
    assert write_side_manifest(f"vggsound:{F / 'vggsound' / 'vggsound.csv'}", str(out)) == 3
    assert json.loads(out.read_text().splitlines()[1])["label"] == ["waterfall burbling"]
    bad = tmp_path / "v.csv"
    bad.write_text("a,b,c\n")
    with pytest.raises(ConfigError, match="4 columns"):
        load_dataset(f"vggsound:{bad}")


def test_side_text_unknown_scheme():
    with pytest.raises(ConfigError, match="has no side text"):
        side_text(f"csv:{Path(__file__).parent / 'fixtures' / 'csv_tiny'}")
