"""Tokenizing texts for a similarity model: prompts, truncation, and the per-token bookkeeping of the analyses.

A prompt (sentence-transformers' ``prompts`` / ``default_prompt_name``) is prepended to every text before
tokenizing, exactly as sentence-transformers does (``prompt + text``), so the model sees what it sees
there. Its tokens stay in the token list; ``prompt_lengths`` counts them per text.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

__all__ = ["TextTooLongError", "check_prompts", "resolve_prompt", "tokenize_texts"]


class TextTooLongError(ValueError):
    """A text longer than the model's maximum length, with truncation switched off."""


def check_prompts(prompts: Mapping[str, str] | None, default_prompt_name: str | None) -> dict[str, str]:
    """``prompts`` as a dict, after checking that it maps names to texts and holds ``default_prompt_name``."""
    prompts = dict(prompts or {})
    if any(not isinstance(name, str) or not isinstance(text, str) for name, text in prompts.items()):
        raise ValueError(f"prompts must map prompt names to prompt texts, got {prompts!r}")
    if default_prompt_name is not None and default_prompt_name not in prompts:
        raise ValueError(f"default_prompt_name {default_prompt_name!r} is not one of the prompts {sorted(prompts)}")
    return prompts


def resolve_prompt(prompts: Mapping[str, str], default_prompt_name: str | None, prompt_name: str | None) -> str:
    """The prompt text for ``prompt_name`` (``None``: the default prompt, if any); ``""`` for no prompt."""
    if prompt_name is None:
        return prompts.get(default_prompt_name, "") if default_prompt_name is not None else ""
    if prompt_name not in prompts:
        known = f"one of {sorted(prompts)}" if prompts else "none: this model has no prompts"
        raise ValueError(f"unknown prompt_name {prompt_name!r}: the model's prompts are {known}")
    return prompts[prompt_name]


def tokenize_texts(
    tokenizer, texts: Sequence[str], max_length: int, truncate: bool, prompt: str, device, stacklevel: int = 2
) -> dict:
    """The batch of ``SimilarityModel.tokenize`` (see there) for ``prompt + text`` of every text."""
    texts = list(texts)
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"empty text {text!r}: every text must contain at least one non-space character")
    prompted = [prompt + text for text in texts]
    _check_lengths(tokenizer, prompted, max_length, truncate, stacklevel + 1)
    fast = bool(getattr(tokenizer, "is_fast", False))
    encoded = tokenizer(
        prompted,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
        return_offsets_mapping=fast,
    )
    mask = encoded["attention_mask"]
    batch: dict = {"input_ids": encoded["input_ids"].to(device), "attention_mask": mask.to(device)}
    keep = [row.nonzero().flatten().tolist() for row in mask]
    ids = encoded["input_ids"].tolist()
    batch["tokens"] = [tokenizer.convert_ids_to_tokens([ids[b][i] for i in k]) for b, k in enumerate(keep)]
    if fast:
        batch["word_ids"] = [[encoded.word_ids(b)[i] for i in k] for b, k in enumerate(keep)]
        offsets = encoded["offset_mapping"].tolist()
        batch["offsets"] = [[tuple(offsets[b][i]) for i in k] for b, k in enumerate(keep)]
        batch["prompt_lengths"] = [
            _prompt_tokens(word_ids, spans, len(prompt))
            for word_ids, spans in zip(batch["word_ids"], batch["offsets"], strict=True)
        ]
    else:
        length = _prompt_length_alone(tokenizer, prompt)
        batch["prompt_lengths"] = [min(length, len(k)) for k in keep]
    return batch


def _check_lengths(tokenizer, texts: list[str], max_length: int, truncate: bool, stacklevel: int) -> None:
    """Warn about (or, without ``truncate``, refuse) texts longer than ``max_length`` tokens."""
    full_lengths = [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]
    for text, length in zip(texts, full_lengths, strict=True):
        if length <= max_length:
            continue
        if not truncate:
            raise TextTooLongError(
                f"text of {length} tokens exceeds the model maximum of {max_length} "
                f"({text[:30]!r}...): shorten it or allow truncation"
            )
        warnings.warn(
            f"text of {length} tokens truncated to the model maximum of {max_length}: "
            f"{length - max_length} tokens dropped: {_quoted(_dropped_text(tokenizer, text, max_length))}",
            stacklevel=stacklevel + 1,
        )


def _prompt_tokens(word_ids: list, spans: list[tuple[int, int]], prompt_chars: int) -> int:
    """How many leading tokens hold the prompt (the special tokens before it included); 0 without a prompt."""
    count = 0
    if prompt_chars == 0:
        return count
    for index, (word, (_, end)) in enumerate(zip(word_ids, spans, strict=True)):
        if word is None:  # a special token
            continue
        if end > prompt_chars:
            break
        count = index + 1
    return count


def _prompt_length_alone(tokenizer, prompt: str) -> int:
    """The prompt's tokens as sentence-transformers counts them: the prompt alone, less a final special token."""
    if not prompt:
        return 0
    ids = tokenizer(prompt)["input_ids"]
    special = set(getattr(tokenizer, "all_special_ids", ()))
    return len(ids) - (1 if ids and ids[-1] in special else 0)


def _dropped_text(tokenizer, text: str, max_length: int) -> str:
    """The end of ``text`` that truncation to ``max_length`` drops (its tokens' characters)."""
    if not getattr(tokenizer, "is_fast", False):
        return ""
    kept = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
    ends = [end for start, end in kept["offset_mapping"] if end > start]
    return text[max(ends) :].strip() if ends else text


def _quoted(dropped: str, limit: int = 40) -> str:
    """``dropped`` quoted for a message, shortened to its first ``limit`` characters."""
    if not dropped:
        return "the end of the text"
    return f"{dropped[:limit]!r}" + ("..." if len(dropped) > limit else "")
