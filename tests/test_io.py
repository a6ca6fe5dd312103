"""bilrp._io: the one writer behind the CLI, the evaluation suite and the analyses."""

import errno
import json
import os

import pytest

from bilrp._io import atomic_paths, check_name, csv_text, json_text, markdown_table, write_json, write_text


def test_list_and_dict_rows_give_the_same_table():
    rows = [{"method": "BiLRP", "AUPC": 1.07234, "note": None}, {"method": "a|b", "AUPC": float("nan"), "note": 3}]
    as_lists = [[row["method"], row["AUPC"], row["note"]] for row in rows]
    table = markdown_table(rows)
    assert table == markdown_table(as_lists, ["method", "AUPC", "note"])
    assert table.splitlines() == [
        "| method | AUPC | note |",
        "|---|---|---|",
        "| BiLRP | 1.072 |  |",
        "| a\\|b | nan | 3 |",
    ]
    assert markdown_table([]) == "(no rows)\n"
    assert csv_text(rows).splitlines()[1] == "BiLRP,1.07234,"  # CSV keeps full precision
    with pytest.raises(ValueError, match="need their column names"):
        markdown_table(as_lists)


def test_json_writes_non_finite_numbers_as_null(tmp_path):
    write_json(tmp_path / "x.json", {"a": [1.5, float("nan")], "b": float("inf")})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": [1.5, None], "b": None}
    assert json_text({"x": 1}) == '{\n  "x": 1\n}\n'
    one_line = json_text({"t": (1, float("-inf")), "s": "Mädchen"}, indent=None)
    assert one_line == '{"t": [1, null], "s": "Mädchen"}\n'  # one JSON-lines record, strict, UTF-8 text
    with pytest.raises(TypeError):
        json_text({"x": object()})


def test_all_or_nothing_and_ordinary_file_mode(tmp_path):
    (tmp_path / "b.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_paths([tmp_path / "a.txt", tmp_path / "b.txt"]) as (a, b):
        a.write_text("new")
        raise RuntimeError("failed while writing b")
    assert sorted(os.listdir(tmp_path)) == ["b.txt"] and (tmp_path / "b.txt").read_text() == "old"
    with atomic_paths([tmp_path / "a.txt", tmp_path / "b.txt"]) as (a, b):
        a.write_text("A")
        b.write_text("B")
    assert (tmp_path / "a.txt").read_text() + (tmp_path / "b.txt").read_text() == "AB"
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def umask_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_overwriting_keeps_the_file_mode_and_new_files_get_the_umask_mode(tmp_path):
    kept = tmp_path / "kept.json"
    kept.write_text("old")
    os.chmod(kept, 0o640)
    write_json(kept, {"new": True})
    assert json.loads(kept.read_text()) == {"new": True}
    assert kept.stat().st_mode & 0o777 == 0o640
    write_text(tmp_path / "new.txt", "x")
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == umask_mode()


def test_long_names_fit_their_temporary_file_and_too_long_names_are_refused(tmp_path):
    longest = tmp_path / ("a" * (os.pathconf(tmp_path, "PC_NAME_MAX") - 5) + ".json")
    check_name(longest)
    write_text(longest, "fits")  # the temporary file's name is shortened, so the longest name works
    assert longest.read_text() == "fits" and os.listdir(tmp_path) == [longest.name]
    with pytest.raises(OSError) as error:
        check_name(tmp_path / ("a" * 300 + ".json"))
    assert error.value.errno == errno.ENAMETOOLONG
    assert error.value.strerror.startswith("the file name is too long (305 bytes, at most ")
