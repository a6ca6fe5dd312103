"""Checks of a loaded tokenizer against its encoder, and lowercasing as sentence-transformers does it."""

from __future__ import annotations

from torch import nn

from .errors import ModelLoadError

__all__ = ["TOKENIZER_FILES_WORDING", "check_tokenizer", "lowercase_tokenizer"]

TOKENIZER_FILES_WORDING = (
    "tokenizer.json, vocab.txt, vocab.json + merges.txt, or a sentencepiece model such as "
    "spiece.model, sentencepiece.bpe.model or tokenizer.model"
)
"""The files that hold a tokenizer's vocabulary, for messages (transformers' VOCAB_FILES_NAMES conventions)."""
_MIN_VOCABULARY = 100


def check_tokenizer(tokenizer, encoder: nn.Module, where: str) -> None:
    """Second line of defence against a missing or mismatched tokenizer."""
    if tokenizer is None:
        raise ModelLoadError(f"{where} has no tokenizer: bilrp explains text models with a tokenizer")
    size = len(tokenizer)
    if size < _MIN_VOCABULARY:
        raise ModelLoadError(
            f"the tokenizer of {where} has only {size} tokens, so every word would be unknown: its tokenizer "
            f"files ({TOKENIZER_FILES_WORDING}) are missing or broken"
        )
    embeddings = encoder.get_input_embeddings() if hasattr(encoder, "get_input_embeddings") else None
    rows = getattr(embeddings, "num_embeddings", None)
    if isinstance(rows, int) and size > rows:
        raise ModelLoadError(
            f"the tokenizer of {where} has {size} tokens but the model embeds only {rows}: the tokenizer "
            "files belong to another model; use the model's own tokenizer"
        )


def lowercase_tokenizer(tokenizer, where: str) -> None:
    """Make ``tokenizer`` lowercase its input, as sentence-transformers does for ``do_lower_case``."""
    if _lowercases(tokenizer):
        return
    try:
        if getattr(tokenizer, "is_fast", False):
            from tokenizers.normalizers import Lowercase, Sequence

            backend = tokenizer.backend_tokenizer
            normalizer = backend.normalizer
            backend.normalizer = Sequence([Lowercase()] + ([normalizer] if normalizer is not None else []))
        else:
            tokenizer.do_lower_case = True
    except Exception:  # checked below
        pass
    if not _lowercases(tokenizer):
        raise ModelLoadError(f"{where}: cannot make this tokenizer lowercase its input: bilrp cannot explain it yet")


def _lowercases(tokenizer) -> bool:
    return tokenizer.tokenize("Hello WORLD Ab") == tokenizer.tokenize("hello world ab")
