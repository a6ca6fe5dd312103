"""bilrp.datasets: row counts and hand-checked rows of every dataset, and one-line errors.

The hand-checked rows are read from the full datasets when BILRP_DATA_DIR names them, else from the few rows
of tests/fixtures/data (the same files and formats); the full row counts need the full datasets.
"""

import pytest

from bilrp import datasets
from bilrp.datasets import DatasetError, SimilarityPair

ROW_COUNTS = [
    ("stsb", "test", 1379),
    ("stsb", "dev", 1500),
    ("sick", "test", 4906),
    ("sick", "train", 4439),
    ("sick", "trial", 495),
    ("biosses", "test", 100),
    ("biosses", "all", 100),
    ("mstsb-en", "test", 1379),
    ("mstsb-de", "test", 1379),
    ("mstsb-es", "test", 1379),
    ("mstsb-fr", "test", 1379),
    ("mstsb-en-de", "test", 1379),
    ("mstsb-fr-es", "test", 1379),
]


FIXTURE_ROW_COUNTS = {
    ("stsb", "test"): 13,
    ("stsb", "dev"): 14,
    ("sick", "test"): 5,
    ("sick", "train"): 5,
    ("sick", "trial"): 3,
    ("biosses", "test"): 8,
    ("biosses", "all"): 8,
    **{(f"mstsb-{language}", "test"): 13 for language in ("en", "de", "es", "fr", "en-de", "fr-es")},
}


def first_with(pairs, text_a):
    return next(pair for pair in pairs if pair.text_a == text_a)


@pytest.mark.parametrize(("name", "split", "rows"), ROW_COUNTS)
def test_row_counts(full_data_dir, name, split, rows):
    pairs = datasets.load(name, split, data_dir=full_data_dir)
    assert len(pairs) == rows
    assert all(isinstance(p, SimilarityPair) and p.text_a and p.text_b for p in pairs)


@pytest.mark.parametrize(("name", "split"), list(FIXTURE_ROW_COUNTS))
def test_the_fixture_rows_load_in_every_format(fixture_data_dir, name, split):
    pairs = datasets.load(name, split, data_dir=fixture_data_dir)
    assert len(pairs) == FIXTURE_ROW_COUNTS[name, split]
    assert all(isinstance(p, SimilarityPair) and p.text_a and p.text_b for p in pairs)


@pytest.mark.parametrize(("name", "split"), list(FIXTURE_ROW_COUNTS))
def test_the_fixture_rows_are_rows_of_the_full_datasets(full_data_dir, fixture_data_dir, name, split):
    full = datasets.load(name, split, data_dir=full_data_dir)
    assert set(datasets.load(name, split, data_dir=fixture_data_dir)) <= set(full)


def test_stsb_rows_and_raw_quotes(data_dir):
    pairs = datasets.load("stsb", data_dir=data_dir)
    assert pairs[0] == SimilarityPair("A girl is styling her hair.", "A girl is brushing her hair.", 2.5)
    # line 408 holds raw '"' characters that CSV quoting would swallow together with the following rows
    quoted = first_with(pairs, 'A young boy jumping into a pool that says "no diving".')
    assert quoted.score == pytest.approx(3.2)
    # line 643 has two extra attribution fields after sentence2: they are not part of the text
    attributed = first_with(pairs, "Unfortunately the answer to your question is we simply do not know.")
    assert attributed.text_b == 'My answer to your question is "Probably Not".'
    assert min(p.score for p in pairs) == 0.0 and max(p.score for p in pairs) == 5.0


def test_sick_biosses_and_crosslingual_rows(data_dir):
    sick = datasets.load("sick", "train", data_dir=data_dir)
    assert sick[0].text_a == "A group of kids is playing in a yard and an old man is standing in the background"
    assert sick[0].score == 4.5
    assert all(1.0 <= p.score <= 5.0 for p in datasets.load("sick", data_dir=data_dir))
    biosses = datasets.load("biosses", data_dir=data_dir)
    assert biosses[0].text_a == "It has recently been shown that Craf is essential for Kras G12D-induced NSCLC."
    assert biosses[0].score == pytest.approx(4.0)
    assert biosses[6].score == pytest.approx(1.6)  # pair 7: annotators 1, 1, 3, 2, 1 (data README)
    en, de = datasets.load("mstsb-en", data_dir=data_dir), datasets.load("mstsb-de", data_dir=data_dir)
    en_de = datasets.load("mstsb-en-de", data_dir=data_dir)
    assert de[0] == SimilarityPair("Ein Mädchen frisiert ihr Haar.", "Ein Mädchen bürstet sich die Haare.", 2.5)
    assert en_de[0] == SimilarityPair(en[0].text_a, de[0].text_b, en[0].score)
    assert [p.text_a for p in en] == [p.text_a for p in datasets.load("stsb", data_dir=data_dir)]


def test_environment_variable_names_the_folder(data_dir, monkeypatch):
    monkeypatch.setenv("BILRP_DATA_DIR", str(data_dir))
    assert datasets.load("biosses") == datasets.load("biosses", data_dir=data_dir) != []
    monkeypatch.delenv("BILRP_DATA_DIR")
    with pytest.raises(DatasetError, match="set BILRP_DATA_DIR"):
        datasets.load("biosses")


@pytest.mark.parametrize(
    ("name", "split", "message"),
    [
        ("nope", "test", "unknown dataset 'nope': choose one of stsb, sick"),
        ("stsb", "train", "dataset 'stsb' has no split 'train': choose one of test, dev"),
        ("mstsb-it", "test", "mSTSb has no language 'it'"),
        ("mstsb-en-xx", "test", "mSTSb has no language 'xx'"),
        ("mstsb-en", "dev", "mSTSb has only the 'test' split"),
    ],
)
def test_bad_names_and_splits(data_dir, name, split, message):
    with pytest.raises(DatasetError, match=message) as error:
        datasets.load(name, split, data_dir=data_dir)
    assert "\n" not in str(error.value)


def test_missing_folder_and_file_say_what_is_expected_where(tmp_path):
    with pytest.raises(DatasetError, match="does not exist: set BILRP_DATA_DIR"):
        datasets.load("stsb", data_dir=tmp_path / "absent")
    expected = {
        "stsb": tmp_path / "stsb" / "sts-test.csv",
        "sick": tmp_path / "sick" / "SICK.txt",
        "biosses": tmp_path / "biosses" / "biosses.tsv",
        "mstsb-de": tmp_path / "mstsb" / "stsb-de-test.csv",
    }
    for name, file in expected.items():
        with pytest.raises(DatasetError, match=f"dataset '{name}' expects the file '{file}', which does not exist"):
            datasets.load(name, data_dir=tmp_path)


def test_malformed_files_give_the_line(tmp_path):
    (tmp_path / "stsb").mkdir()
    (tmp_path / "stsb" / "sts-test.csv").write_text("g\tf\t2012\t1\t2.5\tonly one sentence\n")
    with pytest.raises(DatasetError, match="line 1 of .* has 6 TAB-separated fields, expected at least 7"):
        datasets.load("stsb", data_dir=tmp_path)
    (tmp_path / "stsb" / "sts-test.csv").write_text("g\tf\t2012\t1\thigh\ta\tb\n")
    with pytest.raises(DatasetError, match="line 1 of .* has the score 'high', which is not a number"):
        datasets.load("stsb", data_dir=tmp_path)
    (tmp_path / "biosses").mkdir()
    (tmp_path / "biosses" / "biosses.tsv").write_text("pair_id\tsentence1\tsentence2\n1\ta\tb\n")
    with pytest.raises(DatasetError, match="lacks the column.*score"):
        datasets.load("biosses", data_dir=tmp_path)
    (tmp_path / "mstsb").mkdir()
    (tmp_path / "mstsb" / "stsb-en-test.csv").write_text("a,b,1.0\nc,d\n")
    with pytest.raises(DatasetError, match="row 2 of .* has 2 fields, expected 3"):
        datasets.load("mstsb-en", data_dir=tmp_path)
