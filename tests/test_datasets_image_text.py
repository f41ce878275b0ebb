"""CUB (Reed et al. captions), SBU Captions and Visual Genome region descriptions: fixtures in the releases'
layouts (tests/fixtures/{cub,sbu,vg}_tiny, made-up content), the order and splits each loader documents, and bad
input refused with a message naming the file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from xmr.data import load_dataset
from xmr.errors import ConfigError

FX = Path(__file__).parent / "fixtures"


def test_cub_reads_text_c10_with_reed_class_splits():
    ds = load_dataset(f"cub:{FX / 'cub_tiny'}", check_media=True)
    assert [Path(m).parent.name for m in ds.media] == ["001.Black_footed_Albatross", "002.Laysan_Albatross",
                                                        "200.Common_Yellowthroat"]
    assert ds.items[0].captions == ("this bird has a dark brown body and a long hooked bill.",
                                    "a large grey seabird with long narrow wings.")  # blank line skipped
    assert ds.items[0].id == "001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111"
    tv = load_dataset(f"cub:{FX / 'cub_tiny'}:trainval")
    test = load_dataset(f"cub:{FX / 'cub_tiny'}", split="test", captions="first")
    assert len(tv) == 2 and {i.split for i in tv.items} == {"trainval"}
    assert test.texts == ["a small bird with a yellow throat and a black mask."]
    assert len(load_dataset(f"cub:{FX / 'cub_tiny'}", split="trainval+test")) == 3


def test_cub_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="Available splits: test, trainval"):
        load_dataset(f"cub:{FX / 'cub_tiny'}", split="val")
    with pytest.raises(ConfigError, match="text_c10"):
        load_dataset(f"cub:{tmp_path}")
    d = tmp_path / "c"
    shutil.copytree(FX / "cub_tiny", d)
    (d / "testclasses.txt").write_text("201.Not_A_Bird\n")
    with pytest.raises(ConfigError, match="201.Not_A_Bird"):
        load_dataset(f"cub:{d}", split="test")


def test_sbu_keeps_the_downloaded_photos_in_line_order():
    ds = load_dataset(f"sbu:{FX / 'sbu_tiny'}", check_media=True)
    assert [i.id for i in ds.items] == ["4385058960_b0f291553e", "2743066421_62ca0cfe73", "1396234412_c6b4c40b9a"]
    assert ds.texts[1] == "my cat sleeping on the sofa in the afternoon"  # line 2 of the captions file
    assert len(ds.source_files) == 2


def test_sbu_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="no official split"):
        load_dataset(f"sbu:{FX / 'sbu_tiny'}", split="train")
    d = tmp_path / "s"
    shutil.copytree(FX / "sbu_tiny", d)
    caps = d / "SBU_captioned_photo_dataset_captions.txt"
    caps.write_text("\n".join(caps.read_text().splitlines()[:3]) + "\n")
    with pytest.raises(ConfigError, match="4 lines but .* 3"):
        load_dataset(f"sbu:{d}")
    caps.write_text("a\n\nc\nd\n")
    with pytest.raises(ConfigError, match="captions.txt:2: empty caption"):
        load_dataset(f"sbu:{d}")
    shutil.rmtree(d / "images")
    (d / "images").mkdir()
    with pytest.raises(ConfigError, match="none of the 4 SBU photos"):
        load_dataset(f"sbu:{d}")


def test_visual_genome_phrases_by_region_id_deduplicated():
    ds = load_dataset(f"vg:{FX / 'vg_tiny'}", check_media=True)
    assert [i.id for i in ds.items] == ["1", "2"]  # image 3 has only a blank phrase
    assert ds.items[1].captions == ("white saucer under the cup", "a cup of coffee")  # ids 12, 30 (31 repeats 30)
    assert [Path(m).parent.name for m in ds.media] == ["VG_100K_2", "VG_100K"]  # from image_data.json's URLs


def test_visual_genome_without_image_data_finds_the_folder_and_bad_input(tmp_path):
    d = tmp_path / "v"
    shutil.copytree(FX / "vg_tiny", d)
    (d / "image_data.json").unlink()
    ds = load_dataset(f"vg:{d}", check_media=True)
    assert [Path(m).parent.name for m in ds.media] == ["VG_100K_2", "VG_100K"]
    (d / "VG_100K" / "2.jpg").unlink()
    with pytest.raises(ConfigError, match="2.jpg is in neither"):
        load_dataset(f"vg:{d}")
    (d / "region_descriptions.json").write_text(json.dumps({"id": 1}))
    with pytest.raises(ConfigError, match="expected a list"):
        load_dataset(f"vg:{d}")
    (d / "region_descriptions.json").write_text(json.dumps([{"id": 1, "regions": [{"phrase": "x"}]}]))
    with pytest.raises(ConfigError, match="region_id"):
        load_dataset(f"vg:{d}")
    with pytest.raises(ConfigError, match="no official retrieval split"):
        load_dataset(f"vg:{FX / 'vg_tiny'}", split="test")
