"""Fault injection on a document index: nothing damaged, foreign or forged is served, one writer at a time.

Each case of issue 22 (1-4) is reproduced here: before the checks, every one of these indexes was opened and
served with exit status 0 (or failed with a traceback). Two kinds of damage are injected:

- *raw* damage (flipped bytes, truncation, a shard copied from another index, an edited metadata field, a
  manifest entry leading out of the folder): the checksums refuse it;
- *forged* damage (:func:`forge`): a shard rewritten with every digest recomputed, as a buggy or hostile writer
  would leave it, so that no checksum can catch it (NaN, infinities, shifted lengths, texts that are not the
  tokens' text, a duplicated id): the consistency checks refuse it.

Concurrent writers run as real processes; one is killed with SIGKILL and the build resumes.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save

import bilrp
from bilrp import cli
from bilrp._integrity import LOCK_NAME, FolderBusyError, file_digest, folder_lock
from bilrp.ranking import DamagedIndexError, IndexMismatchError
from bilrp.ranking import index_build as index_module
from bilrp.ranking.index_build import documents_digest
from bilrp.ranking.storage import content_digest, tensor_digest

DOCUMENTS = [
    "A man is playing a guitar.",
    "Someone plays music on a guitar.",
    "A woman slices an onion.",
    "The cat sleeps on the sofa.",
    "Children are playing football in the park.",
    "A dog runs along the beach.",
    "The chef is cutting vegetables in the kitchen.",
    "Two people are dancing to loud music.",
    "A violinist performs on a small stage.",
    "Rain falls on the quiet city streets.",
]
OTHERS = [f"Another corpus, sentence number {n} about the weather and trains." for n in range(len(DOCUMENTS))]
IDS = [f"doc-{i}" for i in range(len(DOCUMENTS))]
QUERY = "A person plays the guitar."
SHARD = "shard-00000004.safetensors"  # holds doc-4 .. doc-7
DAMAGED = r"build the index again into a new folder"


@pytest.fixture(scope="module")
def model(model_dir):
    return bilrp.SimilarityModel.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def index(model, model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("integrity") / "idx"
    return bilrp.DocumentIndex.build(model, DOCUMENTS, folder, ids=IDS, shard_size=4, progress=False, source=model_dir)


@pytest.fixture
def copy(index, tmp_path):
    """A fresh copy of the index folder, to damage."""
    return Path(shutil.copytree(index.path, tmp_path / "copy"))


def one_line(error) -> str:
    text = str(error.value)
    assert "\n" not in text and DAMAGED in text, text
    return text


def run_main(capsys, *args):
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_cli_refuses(capsys, folder, pattern):
    """``bilrp rank`` on ``folder`` exits 2 with one line matching ``pattern`` (it printed a nan score before)."""
    code, out, err = run_main(capsys, "rank", QUERY, "--index", folder, "--top", "10")
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert re.search(pattern, err), err
    assert "nan" not in out


def read(file: Path) -> tuple[dict, dict]:
    with safe_open(str(file), framework="pt") as handle:
        return dict(handle.metadata()), {key: handle.get_tensor(key).clone() for key in handle.keys()}  # noqa: SIM118


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def write_manifest(folder: Path, manifest: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest))


def forge(folder: Path, edit, name: str = SHARD) -> None:
    """Rewrite shard ``name`` with ``edit(records, tensors)`` applied and every digest recomputed.

    The result passes every checksum (the rows' digests, the shard's content checksum, the documents digest):
    only the consistency checks can refuse it.
    """
    metadata, tensors = read(folder / name)
    records = json.loads(metadata["documents"])
    edit(records, tensors)
    starts = [0, *torch.cumsum(tensors["lengths"], 0).tolist()]
    for row, record in enumerate(records):
        record["contributions_sha256"] = tensor_digest(tensors["contributions"][starts[row] : starts[row + 1]])
    metadata["documents"] = json.dumps(records)
    (folder / name).write_bytes(save(tensors, metadata=metadata))
    manifest = manifest_of(folder)
    (entry,) = [shard for shard in manifest["shards"] if shard["file"] == name]
    small = {key: tensors[key] for key in ("lengths", "phi", "bias")}
    rows = tensors["contributions"]
    entry["content_sha256"] = content_digest(metadata, small, (rows.dtype, tuple(rows.shape)))
    entry["digest"] = documents_digest([(record["id"], record["text"]) for record in records])
    write_manifest(folder, manifest)


def byte_range(file: Path, tensor: str) -> tuple[int, int]:
    """Where the bytes of ``tensor`` lie in a safetensors file."""
    data = file.read_bytes()
    size = int.from_bytes(data[:8], "little")
    begin, end = json.loads(data[8 : 8 + size])[tensor]["data_offsets"]
    return 8 + size + begin, 8 + size + end


def flip_byte(file: Path, position: int) -> None:
    data = bytearray(file.read_bytes())
    data[position] ^= 0x40
    file.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------ the shared primitives
def test_file_digest_streams_the_sha256_of_any_file(tmp_path):
    import hashlib

    data = os.urandom(3 * (1 << 20) + 17)  # more than one chunk
    (tmp_path / "f").write_bytes(data)
    assert file_digest(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_the_folder_lock_refuses_another_thread_nests_in_its_own_and_leaves_nothing(tmp_path):
    refused = []

    def other_writer():
        try:
            with folder_lock(tmp_path, "testing"):
                pass
        except FolderBusyError as error:
            refused.append(str(error))

    with folder_lock(tmp_path, "building a test"):
        with folder_lock(tmp_path, "nested"):  # the same thread may take it again
            assert (tmp_path / LOCK_NAME).is_file()
        thread = threading.Thread(target=other_writer)
        thread.start()
        thread.join()
    assert len(refused) == 1 and f"pid {os.getpid()}, building a test" in refused[0], refused
    assert "wait until it has finished, or write into another folder" in refused[0]
    assert not (tmp_path / LOCK_NAME).exists()  # released cleanly: no lock file left


# ------------------------------------------------------------------------------------ case 1: digests, paths, ids
def test_the_intact_index_opens_and_every_document_verifies(index, model):
    reopened = bilrp.DocumentIndex.open(index.path, model)
    assert reopened.ids == IDS and reopened.texts == DOCUMENTS
    assert all(len(reopened.factor(name)["tokens"]) == reopened.factor(name)["length"] for name in IDS)
    assert all(len(shard["content_sha256"]) == 64 for shard in reopened.manifest["shards"])


def test_a_shard_copied_from_another_index_with_the_same_count_is_refused(model, copy, tmp_path):
    other = bilrp.DocumentIndex.build(model, OTHERS, tmp_path / "other", ids=IDS, shard_size=4, progress=False)
    shutil.copyfile(other.path / SHARD, copy / SHARD)  # same count, same ids: served before
    with pytest.raises(DamagedIndexError, match=rf"{SHARD} differs from its checksum in the manifest") as error:
        bilrp.DocumentIndex.open(copy, model)
    one_line(error)


def test_a_shard_of_another_model_is_refused_even_with_its_own_manifest_entry(model, copy, tmp_path):
    from tiny_models import tiny_similarity_model

    stranger = tiny_similarity_model("bert", seed=1, dtype=torch.float32)
    other = bilrp.DocumentIndex.build(stranger, OTHERS, tmp_path / "other", ids=IDS, shard_size=4, progress=False)
    shutil.copyfile(other.path / SHARD, copy / SHARD)
    manifest = manifest_of(copy)
    manifest["shards"][1] = other.manifest["shards"][1]  # its checksum and documents digest too
    write_manifest(copy, manifest)
    with pytest.raises(DamagedIndexError, match=rf"{SHARD} belongs to another index") as error:
        bilrp.DocumentIndex.open(copy, model)
    one_line(error)


@pytest.mark.parametrize(
    "file", ["../../other/shard-00000004.safetensors", "/etc/passwd", "shard-00000000.safetensors"]
)
def test_a_manifest_entry_naming_another_file_is_refused(model, copy, tmp_path, file):
    (tmp_path / "other").mkdir()
    shutil.copyfile(copy / SHARD, tmp_path / "other" / SHARD)
    manifest = manifest_of(copy)
    manifest["shards"][1]["file"] = file
    write_manifest(copy, manifest)
    with pytest.raises(DamagedIndexError, match=r"field 'shards\[1\]\.file' is .*not 'shard-00000004.safetensors'"):
        bilrp.DocumentIndex.open(copy, model)


def test_a_shard_linking_out_of_the_folder_is_refused(model, copy, tmp_path):
    outside = tmp_path / "outside.safetensors"
    shutil.move(copy / SHARD, outside)
    (copy / SHARD).symlink_to(outside)
    with pytest.raises(DamagedIndexError, match=r"leads out of the index folder") as error:
        bilrp.DocumentIndex.open(copy, model)
    one_line(error)


@pytest.mark.parametrize("tensor", ["phi", "bias", "lengths"])
def test_a_flipped_byte_in_what_opening_reads_is_refused(model, copy, tensor):
    begin, end = byte_range(copy / SHARD, tensor)
    flip_byte(copy / SHARD, (begin + end) // 2)
    with pytest.raises(DamagedIndexError, match=rf"{SHARD} differs from its checksum") as error:
        bilrp.DocumentIndex.open(copy, model)
    one_line(error)


def test_a_flipped_byte_in_a_documents_contributions_is_refused_when_it_is_read(model, copy, capsys):
    begin, end = byte_range(copy / SHARD, "contributions")
    flip_byte(copy / SHARD, end - 3)  # in the last document of the shard: doc-7
    index = bilrp.DocumentIndex.open(copy, model)
    assert index.factor("doc-4")["length"] > 0  # the other documents of the shard are intact
    with pytest.raises(DamagedIndexError, match=rf"{SHARD}: the contributions of document 'doc-7' differ") as error:
        index.factor("doc-7")
    one_line(error)
    assert_cli_refuses(capsys, copy, r"the contributions of document 'doc-7' differ from their checksum")


@pytest.mark.parametrize("keep", [1, 100, -1])
def test_a_truncated_shard_is_refused(model, copy, keep):
    data = (copy / SHARD).read_bytes()
    (copy / SHARD).write_bytes(data[:keep] if keep > 0 else data[:keep])
    with pytest.raises(DamagedIndexError, match=rf"cannot read index shard .*{SHARD}") as error:
        bilrp.DocumentIndex.open(copy, model)
    one_line(error)


def test_edited_shard_metadata_is_refused(model, copy):
    metadata, tensors = read(copy / SHARD)
    metadata["documents"] = metadata["documents"].replace("A dog runs", "A cat runs")  # same length of tokens
    (copy / SHARD).write_bytes(save(tensors, metadata=metadata))
    with pytest.raises(DamagedIndexError, match=rf"{SHARD} differs from its checksum"):
        bilrp.DocumentIndex.open(copy, model)


def test_swapped_ids_are_refused(model, copy):
    def swap_ids(records, tensors):
        records[0]["id"], records[1]["id"] = records[1]["id"], records[0]["id"]

    forge(copy, swap_ids)
    manifest = manifest_of(copy)
    manifest["shards"][1]["digest"] = documents_digest(list(zip(IDS[4:8], DOCUMENTS[4:8], strict=True)))
    write_manifest(copy, manifest)  # the manifest names the original ids, as the build wrote them
    with pytest.raises(DamagedIndexError, match=rf"{SHARD} holds other document ids or texts than the manifest"):
        bilrp.DocumentIndex.open(copy, model)


def test_a_text_that_is_not_its_tokens_text_is_refused_even_when_forged(model, copy, capsys):
    def swap_texts(records, tensors):  # ids keep their place; the texts no longer match the stored tokens
        records[0]["text"], records[1]["text"] = records[1]["text"], records[0]["text"]

    forge(copy, swap_texts)
    index = bilrp.DocumentIndex.open(copy, model)
    with pytest.raises(DamagedIndexError, match=r"the stored tokens of document 'doc-4' are not the tokens of its"):
        index.factor("doc-4")
    with pytest.raises(DamagedIndexError, match=r"document 'doc-\d'"):
        bilrp.explain_ranking(model, QUERY, index, top_k=None)
    assert_cli_refuses(capsys, copy, r"the stored tokens of document 'doc-[45]' are not the tokens of its text")


def test_the_quick_token_check_gives_what_the_model_tokenizes(model):
    from bilrp.ranking.shard_checks import _model_tokens, _plain_tokens

    truncated = " ".join(DOCUMENTS * 5)  # longer than the maximum length
    for text in [*DOCUMENTS, truncated, "Ünïcödé  spaces\tand\nnew lines, (brackets) & co."]:
        assert _plain_tokens(model, text) == _model_tokens(model, text, None), text


def test_a_prompted_index_checks_tokens_with_its_prompt(tmp_path):
    from tiny_models import tiny_encoder, tokenizer

    prompted = bilrp.SimilarityModel(
        tiny_encoder("bert", 0, torch.float32), tokenizer(), prompts={"document": "passage: "}, max_length=64
    ).eval()
    folder = tmp_path / "idx"
    index = bilrp.DocumentIndex.build(
        prompted, DOCUMENTS, folder, ids=IDS, shard_size=4, prompt_name="document", progress=False
    )
    assert all(index.factor(name)["tokens"][1:3] == ["passage", ":"] for name in IDS)

    def swap_texts(records, tensors):
        records[0]["text"], records[1]["text"] = records[1]["text"], records[0]["text"]

    forge(folder, swap_texts)
    with pytest.raises(DamagedIndexError, match=r"the stored tokens of document 'doc-4' are not the tokens of its"):
        bilrp.DocumentIndex.open(folder, prompted).factor("doc-4")


def test_a_duplicated_id_is_refused_even_when_forged(model, copy):
    def duplicate(records, tensors):
        records[2]["id"] = "doc-1"  # doc-6 becomes a second doc-1 (doc-1 is in shard 0)

    forge(copy, duplicate)
    with pytest.raises(DamagedIndexError, match=rf"{SHARD} holds document id 'doc-1' again \(also in .*00000000"):
        bilrp.DocumentIndex.open(copy, model)


# ------------------------------------------------------------------------------------ case 2: values and lengths
def test_nan_in_stored_contributions_is_refused_naming_the_shard_and_document(model, copy, capsys):
    def poison(records, tensors):
        tensors["contributions"][-1, 0] = float("nan")  # the last token of doc-7

    forge(copy, poison)
    index = bilrp.DocumentIndex.open(copy, model)
    with pytest.raises(DamagedIndexError, match=rf"{SHARD}: the stored contributions of document 'doc-7' hold NaN"):
        index.factor("doc-7")
    assert_cli_refuses(capsys, copy, rf"{SHARD}: the stored contributions of document 'doc-7' hold NaN")


@pytest.mark.parametrize(("tensor", "value"), [("phi", float("inf")), ("bias", float("nan"))])
def test_non_finite_phi_or_bias_is_refused_when_the_index_opens(model, copy, capsys, tensor, value):
    def poison(records, tensors):
        tensors[tensor][2, 3] = value  # doc-6

    forge(copy, poison)
    with pytest.raises(DamagedIndexError, match=rf"{SHARD} stores a {tensor} with NaN or infinite values for .*doc-6"):
        bilrp.DocumentIndex.open(copy, model)
    assert_cli_refuses(capsys, copy, rf"{tensor} with NaN or infinite values for document 'doc-6'")


def test_shifted_lengths_are_refused(model, copy):
    def shift(records, tensors):
        tensors["lengths"][0] -= 1  # doc-4 loses its last row to doc-5: a (n-1) x m matrix for n tokens
        tensors["lengths"][1] += 1

    forge(copy, shift)
    with pytest.raises(DamagedIndexError, match=r"length \d+ for document 'doc-4', which has \d+ tokens") as error:
        bilrp.DocumentIndex.open(copy, model)
    one_line(error)


def test_contributions_of_another_dtype_or_width_are_refused(model, copy):
    def narrow(records, tensors):
        tensors["contributions"] = tensors["contributions"][:, :-1].contiguous()

    forge(copy, narrow)
    with pytest.raises(DamagedIndexError, match=rf"{SHARD} has contributions \(\d+, 31\)"):
        bilrp.DocumentIndex.open(copy, model)


def test_a_factor_with_nan_is_never_written(model, tmp_path, monkeypatch):
    real = index_module.FactorTexts.factors

    def poisoned(self, state, texts, progress=None):
        factors = real(self, state, texts, progress)
        if DOCUMENTS[5] in texts:
            factors[texts.index(DOCUMENTS[5])]["phi"][0] = float("nan")
        return factors

    monkeypatch.setattr(index_module.FactorTexts, "factors", poisoned)
    with pytest.raises(ValueError, match=r"the phi of document 'doc-5' hold NaN or infinite values, so its factor is"):
        bilrp.DocumentIndex.build(model, DOCUMENTS, tmp_path / "idx", ids=IDS, shard_size=4, progress=False)
    assert [shard["first"] for shard in manifest_of(tmp_path / "idx")["shards"]] == [0]  # shard 4 never written
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["manifest.json", "shard-00000000.safetensors"]


# ------------------------------------------------------------------------------------ case 3: the manifest schema
def _drop(key):
    return lambda m: m.pop(key)


def _set(key, value):
    return lambda m: m.__setitem__(key, value)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (_drop("fingerprint"), "fingerprint"),
        (lambda m: m["fingerprint"].pop("weights"), "fingerprint.weights"),
        (_set("shards", None), "shards"),
        (_set("shards", ["x"]), r"shards\[0\]"),
        (_set("shards", []), "shards"),
        (_set("shards", {"file": "x"}), "shards"),
        (lambda m: m["shards"].pop(1), r"shards\[1\]\.first"),
        (lambda m: m["shards"][2].__setitem__("count", "2"), r"shards\[2\]\.count"),
        (lambda m: m["shards"][0].pop("content_sha256"), r"shards\[0\]\.content_sha256"),
        (_set("documents", 11), "documents"),
        (_set("dtype", "int8"), "dtype"),
        (_set("rules", "no-such-rules"), "rules"),
        (_drop("model"), "model"),
        (_set("prompt", 3), "prompt"),
    ],
)
def test_a_bad_manifest_is_one_line_naming_the_field(model, copy, capsys, edit, field):
    manifest = manifest_of(copy)
    edit(manifest)
    write_manifest(copy, manifest)
    with pytest.raises(DamagedIndexError, match=rf"manifest.json: field '{field}' .*; {DAMAGED}") as error:
        bilrp.DocumentIndex.open(copy, model)
    one_line(error)
    assert_cli_refuses(capsys, copy, rf"field '{field}'")


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ({"kind": "bilrp-document-index", "format": 1}, r"written by an earlier bilrp, without shard checksums"),
        ([1, 2], r"is not the manifest of a bilrp document index"),
        ("[" * 100_000, r"cannot read .*manifest.json"),
    ],
)
def test_an_old_or_foreign_manifest_is_refused(model, copy, capsys, content, pattern):
    (copy / "manifest.json").write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(DamagedIndexError, match=pattern) as error:
        bilrp.DocumentIndex.open(copy, model)
    one_line(error)
    assert_cli_refuses(capsys, copy, pattern)


def test_building_into_a_folder_with_a_damaged_manifest_is_refused(model, copy):
    manifest = manifest_of(copy)
    manifest["shards"] = None
    write_manifest(copy, manifest)
    with pytest.raises(DamagedIndexError, match=r"field 'shards' is None"):
        bilrp.DocumentIndex.build(model, DOCUMENTS, copy, ids=IDS, shard_size=4, progress=False)


def test_continuing_from_a_damaged_shard_is_refused_before_computing(model, copy, monkeypatch):
    manifest = manifest_of(copy)
    manifest["shards"], manifest["documents"] = manifest["shards"][:2], 8  # as if interrupted after two shards
    write_manifest(copy, manifest)
    flip_byte(copy / SHARD, byte_range(copy / SHARD, "phi")[0])
    computed = []
    monkeypatch.setattr(index_module.FactorTexts, "factors", lambda *args: computed.append(args))
    with pytest.raises(DamagedIndexError, match=rf"{SHARD} differs from its checksum"):
        bilrp.DocumentIndex.build(model, DOCUMENTS, copy, ids=IDS, shard_size=4, progress=False)
    assert computed == []


# ------------------------------------------------------------------------------------ case 4: concurrent writers
WRITER = r"""
import sys, time
from pathlib import Path
import bilrp
from bilrp.ranking import index_build

model_dir, folder, docs, signals = sys.argv[1:5]
real = index_build.write_shard


def write_then_wait(where, first, data):  # after the 2nd shard is written (the 1st listed), wait to be told
    name = real(where, first, data)
    if first == 2:
        (Path(signals) / "ready").touch()
        while not (Path(signals) / "go").exists():
            time.sleep(0.05)
    return name


index_build.write_shard = write_then_wait
model = bilrp.SimilarityModel.from_pretrained(model_dir)
texts = Path(docs).read_text().splitlines()
index = bilrp.DocumentIndex.build(model, texts, folder, shard_size=2, progress=False, source=model_dir)
print("built", len(index), flush=True)
"""


def start_writer(model_dir, folder: Path, docs: Path, signals: Path) -> subprocess.Popen:
    signals.mkdir(exist_ok=True)
    command = [sys.executable, "-c", WRITER, str(model_dir), str(folder), str(docs), str(signals)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the writer ended early: {process.communicate()[1][-2000:]}")
        assert time.monotonic() < deadline, "the writer did not get there in time"
        time.sleep(0.05)


def cli_index(model_dir, docs: Path, folder: Path) -> subprocess.CompletedProcess:
    argv = ["index", str(docs), "--out", str(folder), "--model", str(model_dir), "--shard-size", "2", "--no-progress"]
    code = "import sys; from bilrp.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)


def error_lines(stderr: str) -> list[str]:
    """The lines of a subprocess's stderr, less the notes transformers prints on offline loads."""
    return [line for line in stderr.splitlines() if not line.startswith("Skipping publisher trust check")]


def docs_file(folder: Path, name: str, texts: list[str]) -> Path:
    (folder / name).write_text("\n".join(texts) + "\n")
    return folder / name


def test_a_second_writer_is_refused_and_a_killed_writer_resumes(model, model_dir, index, tmp_path, monkeypatch):
    folder, mine, theirs = (
        tmp_path / "idx",
        docs_file(tmp_path, "a.txt", DOCUMENTS),
        docs_file(tmp_path, "b.txt", OTHERS),
    )
    writer = start_writer(model_dir, folder, mine, tmp_path / "signals")
    try:
        wait_for(lambda: (tmp_path / "signals" / "ready").exists(), writer)
        second = cli_index(model_dir, theirs, folder)  # a real second process, while the first holds the folder
        assert second.returncode == 2 and len(error_lines(second.stderr)) == 1, second.stderr
        assert f"is being written by another bilrp writer (pid {writer.pid}, building a document index" in second.stderr
        writer.send_signal(signal.SIGKILL)  # killed mid-build: its lock file stays behind, its lock does not
        writer.wait(timeout=60)
    finally:
        writer.kill()
    assert (folder / LOCK_NAME).exists() and [s["first"] for s in manifest_of(folder)["shards"]] == [0]
    written, real_write = [], index_module.write_shard
    monkeypatch.setattr(index_module, "write_shard", lambda *a: written.append(a[1]) or real_write(*a))
    resumed = bilrp.DocumentIndex.build(model, DOCUMENTS, folder, shard_size=2, progress=False, source=model_dir)
    assert written == [2, 4, 6, 8]  # nothing computed twice; the unlisted shard 2 of the killed writer rewritten
    assert resumed.texts == DOCUMENTS and sorted(p.name for p in folder.iterdir()) == [
        "manifest.json",
        *(f"shard-{n:08d}.safetensors" for n in (0, 2, 4, 6, 8)),
    ]  # no lock file, no temporary file left
    for position, name in enumerate(resumed.ids):  # equal to the index built in one go
        assert torch.equal(resumed.factor(name)["contributions"], index.factor(IDS[position])["contributions"])
    assert torch.equal(resumed.phi, index.phi)
    with pytest.raises(IndexMismatchError, match=r"holds other documents at positions 0-1"):
        bilrp.DocumentIndex.build(model, OTHERS, folder, shard_size=2, progress=False)  # the other corpus, later


def test_two_writers_started_together_never_both_succeed(model, model_dir, tmp_path):
    """Issue 22 case 4: both reported "built" and the index held one corpus (or a mix of both)."""
    folder = tmp_path / "idx"
    argv = ["--out", str(folder), "--model", str(model_dir), "--shard-size", "2", "--no-progress"]
    code = "import sys; from bilrp.cli import main; sys.exit(main(sys.argv[1:]))"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, "index", str(docs), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for docs in (docs_file(tmp_path, "a.txt", DOCUMENTS), docs_file(tmp_path, "b.txt", OTHERS))
    ]
    results = [(process.wait(timeout=300), *process.communicate()) for process in processes]
    assert sorted(code for code, _, _ in results) == [0, 2], results
    (winner,) = [texts for texts, (code, _, _) in zip([DOCUMENTS, OTHERS], results, strict=True) if code == 0]
    (refusal,) = [err for code, _, err in results if code == 2]
    assert len(error_lines(refusal)) == 1, refusal
    assert re.search(r"being written by another bilrp writer|holds other documents at positions 0-1", refusal)
    assert bilrp.DocumentIndex.open(folder, model).texts == winner  # one whole corpus, nothing mixed
