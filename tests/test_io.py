"""bilrp._io: the one writer behind the CLI, the evaluation suite and the analyses."""

import json
import os

import pytest

from bilrp._io import atomic_paths, csv_text, json_text, markdown_table, write_json


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
