"""Loaded ``sentence_transformers.SentenceTransformer`` objects: recognising, checking and wrapping them.

sentence-transformers is optional and never imported here: objects are recognised through ``sys.modules``.
"""

from __future__ import annotations

import sys

from torch import nn

from .encode_options import sentence_transformers_output
from .errors import ModelLoadError, type_name
from .lengths import capped_max_length, check_max_length, check_seq_length
from .st_heads import object_head
from .st_pipeline import (
    check_include_prompt,
    check_pipeline,
    check_transformer_config,
    pooling_from_config,
    similarity_from_sentence_transformers,
    st_settings,
)
from .tokenizer_checks import check_tokenizer

__all__ = ["is_sentence_transformer", "st_name", "st_signature", "same_signature", "wrap_sentence_transformer"]

_UNLIMITED_SEQ_LENGTH = 1_000_000
"""A ``max_seq_length`` from this on means "no limit" (tokenizers' placeholder for a missing one)."""


def is_sentence_transformer(obj) -> bool:
    """True for a ``sentence_transformers.SentenceTransformer``; never imports sentence-transformers.

    Other sentence-transformers models (``CrossEncoder``, ``SparseEncoder``, ...) raise ``TypeError``.
    """
    package = sys.modules.get("sentence_transformers")
    if package is None or not isinstance(obj, nn.Module):
        return False
    kind = getattr(package, "SentenceTransformer", None)
    if isinstance(kind, type) and isinstance(obj, kind):
        return True
    if any(base.__module__.startswith("sentence_transformers.") for base in type(obj).__mro__):
        raise TypeError(
            f"bilrp explains sentence_transformers.SentenceTransformer bi-encoders, not a "
            f"{type(obj).__name__}: bilrp cannot explain this model yet"
        )
    return False


def st_name(model) -> str:
    """The name of a ``SentenceTransformer``: its model card's base model, or its encoder's checkpoint."""
    card = getattr(model, "model_card_data", None)
    name = getattr(card, "base_model", None)
    if not name:
        first = next(iter(model._modules.values()), None)
        name = getattr(getattr(getattr(first, "auto_model", None), "config", None), "_name_or_path", None)
    return str(name or "")


def st_signature(model) -> tuple:
    """What a wrapper of ``model`` depends on: its modules and settings (compare with :func:`same_signature`)."""
    return (
        tuple(model._modules.values()),
        getattr(model, "truncate_dim", None),
        getattr(model, "default_prompt_name", None),
        dict(getattr(model, "prompts", None) or {}),
        getattr(model, "similarity_fn_name", None),
        getattr(next(iter(model._modules.values()), None), "max_seq_length", None),
    )


def same_signature(old: tuple, new: tuple) -> bool:
    """True when two :func:`st_signature` hold the same module objects and equal settings."""
    return (
        len(old[0]) == len(new[0]) and all(a is b for a, b in zip(old[0], new[0], strict=True)) and old[1:] == new[1:]
    )


def wrap_sentence_transformer(
    cls, model, similarity: str | None = None, pooling: str | None = None, max_length: int | None = None
):
    """``cls`` wrapping a loaded ``SentenceTransformer``; see ``SimilarityModel.from_sentence_transformer``.

    Only the pipelines bilrp implements are accepted (Transformer -> Pooling -> Dense and Normalize modules,
    with ``truncate_dim`` and prompts); any other module or setting raises :class:`ModelLoadError` naming it.
    """
    if not is_sentence_transformer(model):
        raise TypeError(
            f"from_sentence_transformer needs a sentence_transformers.SentenceTransformer, got an object of "
            f"type {type_name(model)}: use SimilarityModel.from_pretrained for folders and hub names"
        )
    max_length = check_max_length(max_length)
    where = f"SentenceTransformer {st_name(model)!r}"
    modules, settings = _checked_modules(model, where, pooling_given=pooling is not None)
    if len(modules) > 1:
        pooling_where = f"{where}, module 1 (Pooling)"
        pooling_config = _as_object(modules[1].get_config_dict(), pooling_where)
        check_include_prompt(pooling_config, pooling_where)
        if pooling is None:
            pooling = pooling_from_config(pooling_config, pooling_where)
    tokenizer, encoder = modules[0].tokenizer, modules[0].auto_model
    head, normalized = object_head(modules[2:], _embedding_dimension(modules, encoder), settings["truncate_dim"], where)
    output = None
    if similarity is None:
        function = getattr(model, "similarity_fn_name", None)
        similarity = similarity_from_sentence_transformers(function, normalized)
        output = sentence_transformers_output(function, normalized)
    check_tokenizer(tokenizer, encoder, where)
    wrapper = cls(
        encoder,
        tokenizer,
        pooling=pooling,
        similarity=similarity,
        max_length=_max_length(modules[0], encoder, max_length, where),
        name=st_name(model) or None,
        head=head,
        prompts=settings["prompts"],
        default_prompt_name=settings["default_prompt_name"],
    )
    if output is not None:  # what st.encode returns and st.similarity applies (bilrp.models.encode_options)
        wrapper.encode_output = output
    return wrapper


def _checked_modules(model, where: str, pooling_given: bool) -> tuple[list[nn.Module], dict]:
    """The modules of ``model`` and its checked settings (:func:`~bilrp.models.st_pipeline.st_settings`)."""
    entries = [
        (
            f"{type(module).__module__}.{type(module).__qualname__}",
            f"{type(module).__module__}.{type(module).__qualname__}, name {name!r}",
        )
        for name, module in model._modules.items()
    ]
    modules = list(model._modules.values())
    check_pipeline(entries, where, pooling_given=pooling_given)
    transformer = modules[0]
    backend = getattr(transformer, "backend", "torch")
    if backend != "torch" or not isinstance(getattr(transformer, "auto_model", None), nn.Module):
        raise ModelLoadError(
            f"{where}: module 0 (Transformer) runs on the {backend!r} backend: bilrp cannot explain this module "
            "yet; load the model with backend='torch'"
        )
    config = transformer.get_config_dict() if hasattr(transformer, "get_config_dict") else {}
    check_transformer_config(config, f"{where}, module 0 (Transformer)")
    settings = st_settings(
        getattr(model, "truncate_dim", None),
        getattr(model, "default_prompt_name", None),
        dict(getattr(model, "prompts", None) or {}),
        where,
    )
    return modules, settings


def _embedding_dimension(modules: list[nn.Module], encoder: nn.Module) -> int:
    """Size of the pooled embedding: the encoder's hidden size (else the Pooling module's own)."""
    size = getattr(getattr(encoder, "config", None), "hidden_size", None)
    if size is None and len(modules) > 1 and hasattr(modules[1], "get_embedding_dimension"):
        size = modules[1].get_embedding_dimension()
    return int(size)


def _max_length(transformer: nn.Module, encoder: nn.Module, max_length: int | None, where: str) -> int | None:
    """``max_length`` if given, else the Transformer module's ``max_seq_length``; capped to the positions."""
    if max_length is not None:
        return capped_max_length(max_length, encoder, "max_length=", stacklevel=5)
    seq_length = getattr(transformer, "max_seq_length", None)
    if seq_length is None or (isinstance(seq_length, int) and seq_length >= _UNLIMITED_SEQ_LENGTH):
        return None
    seq_length = check_seq_length(
        seq_length, f"{where}: module 0 (Transformer) max_seq_length", "set it or pass max_length="
    )
    return capped_max_length(seq_length, encoder, f"{where}: max_seq_length", stacklevel=5)


def _as_object(config, where: str) -> dict:
    if not isinstance(config, dict):
        raise ModelLoadError(f"{where}: its config is a {type(config).__name__}, not a mapping")
    return config
