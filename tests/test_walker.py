"""Folder walking: recursion, hidden files, symlink loops, unreadable folders never stop the walk."""
from __future__ import annotations

import os


from xmr.index.walker import Found, Skip, walk_media


def _touch(p, data=b"x"):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def test_walk_finds_images_recursively_and_ignores_others(tmp_path):
    _touch(tmp_path / "a.jpg")
    _touch(tmp_path / "sub" / "deep" / "b.PNG")
    _touch(tmp_path / "notes.txt")
    _touch(tmp_path / ".hidden" / "c.jpg")
    found = [e for e in walk_media(tmp_path) if isinstance(e, Found)]
    assert sorted(os.path.relpath(f.path, tmp_path) for f in found) == ["a.jpg", os.path.join("sub", "deep", "b.PNG")]
    assert len([e for e in walk_media(tmp_path, include_hidden=True) if isinstance(e, Found)]) == 3


def test_symlink_loop_terminates(tmp_path):
    _touch(tmp_path / "d" / "a.jpg")
    os.symlink(tmp_path, tmp_path / "d" / "loop")
    ents = list(walk_media(tmp_path))
    assert sum(isinstance(e, Found) for e in ents) == 1
    assert any(isinstance(e, Skip) and "loop" in e.reason for e in ents)


def test_broken_symlink_is_reported(tmp_path):
    os.symlink(tmp_path / "missing.jpg", tmp_path / "dangling.jpg")
    ents = list(walk_media(tmp_path))
    assert ents == [Skip(str(tmp_path / "dangling.jpg"), "broken symlink")]


def test_unreadable_folder_is_reported_not_raised(tmp_path, monkeypatch):
    _touch(tmp_path / "ok" / "a.jpg")
    _touch(tmp_path / "locked" / "b.jpg")
    real = os.scandir

    def fake_scandir(path):  # root ignores permission bits, so simulate the error
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", fake_scandir)
    ents = list(walk_media(tmp_path))
    assert [os.path.basename(e.path) for e in ents if isinstance(e, Found)] == ["a.jpg"]
    skips = [e for e in ents if isinstance(e, Skip)]
    assert len(skips) == 1 and "unreadable folder" in skips[0].reason


def test_excluded_folder_not_entered(tmp_path):
    _touch(tmp_path / "idx" / "x.png")
    _touch(tmp_path / "y.png")
    found = [e for e in walk_media(tmp_path, exclude=(str(tmp_path / "idx"),)) if isinstance(e, Found)]
    assert [os.path.basename(f.path) for f in found] == ["y.png"]
