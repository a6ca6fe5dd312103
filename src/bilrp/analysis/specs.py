"""Which model an analysis runs: a checkpoint name or folder, optionally with another pooling or similarity."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..models import DEFAULT_MODEL, SimilarityModel

__all__ = ["ModelSpec", "slug", "describe"]


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` (a path keeps its last two parts plus a short hash)."""
    if "/" in text and Path(text).expanduser().exists():
        parts = Path(text).expanduser().resolve().parts[-2:]
        digest = hashlib.sha1(str(Path(text).expanduser().resolve()).encode()).hexdigest()[:6]
        text = "-".join(parts) + "-" + digest
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


@dataclass(frozen=True)
class ModelSpec:
    """A model to analyse.

    Parameters
    ----------
    name
        Checkpoint name or local folder, as for :meth:`bilrp.SimilarityModel.from_pretrained`.
    pooling
        Pooling override (``"mean"``, ``"cls"``, ...); ``None`` keeps the checkpoint's own.
    similarity
        Similarity override (``"cosine"`` or ``"dot"``); ``None`` keeps the checkpoint's own.

    """

    name: str = DEFAULT_MODEL
    pooling: str | None = None
    similarity: str | None = None

    def load(self) -> SimilarityModel:
        """Load the model quietly (offline unless ``HF_HUB_OFFLINE=0`` is set)."""
        from ..models import load_quietly

        return load_quietly(self.name, self.pooling, self.similarity)


def describe(model: SimilarityModel) -> str:
    """Short display name of a loaded model: its checkpoint's last part, pooling and similarity."""
    base = str(model.name).rstrip("/").split("/")[-1]
    return f"{base} ({model.pooling_name}, {model.similarity})"
