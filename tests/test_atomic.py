"""snnedge.atomic: a file or folder is replaced whole or not at all, and nothing is left behind."""
import doctest

import pytest

from snnedge import atomic


def test_docstring_example_runs():
    result = doctest.testmod(atomic, verbose=False)
    assert result.failed == 0 and result.attempted > 0


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="midway"):
        with atomic.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("midway")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_file_is_written_into_folders_that_do_not_exist_yet(tmp_path):
    path = tmp_path / "x" / "y" / "a.txt"
    with atomic.atomic_path(path) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]


def test_a_folder_is_replaced_as_a_whole(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "stale.png").write_text("old")
    with atomic.atomic_folder(out) as tmp:
        (tmp / "report.md").write_text("# new")
    assert sorted(p.name for p in out.iterdir()) == ["report.md"]
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_folder(out) as tmp:
            (tmp / "half.md").write_text("")
            raise KeyboardInterrupt
    assert sorted(p.name for p in out.iterdir()) == ["report.md"]
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporaries beside it
