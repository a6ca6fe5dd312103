"""The parts of an encoder bilrp uses, and how it calls it: ``forward(input_ids=..., attention_mask=...)``.

:func:`check_encoder_call` refuses, when a :class:`~bilrp.SimilarityModel` is built, an encoder that cannot be
called the way bilrp calls it (HuggingFace's convention), in one line naming its ``forward`` signature.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from ..architectures import architecture_of

__all__ = [
    "accepts_keyword",
    "check_encoder_call",
    "find_embedding_layer",
    "word_embedding_module",
    "last_hidden_state",
]

ENCODER_CALL = "forward(input_ids=..., attention_mask=...)"
"""How bilrp calls an encoder (HuggingFace's convention)."""


def accepts_keyword(function, name: str) -> bool:
    """Whether ``function`` takes ``name`` as a keyword argument (``**kwargs`` counts; unknown signatures do)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin or C function: only the call can tell
        return True
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return True
    parameter = parameters.get(name)
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return parameter is not None and parameter.kind in keyword_kinds


def _signature(function) -> str:
    try:
        return str(inspect.signature(function))
    except (TypeError, ValueError):
        return "(...)"


def check_encoder_call(encoder: nn.Module) -> None:
    """A one-line ``TypeError`` when ``encoder.forward`` takes no ``input_ids=`` or ``attention_mask=`` keyword."""
    missing = [name for name in ("input_ids", "attention_mask") if not accepts_keyword(encoder.forward, name)]
    if missing:
        raise TypeError(
            f"the encoder {type(encoder).__name__} has forward{_signature(encoder.forward)}, without "
            f"{' or '.join(missing)}: bilrp calls encoders as {ENCODER_CALL} (HuggingFace's convention); rename "
            "its arguments, or wrap it in a module whose forward(input_ids, attention_mask) calls it"
        )


def find_embedding_layer(encoder: nn.Module) -> nn.Module:
    """The module whose output is the embedding output (the input of the first Transformer layer).

    The registry entry of the encoder's family says where it is (``embeddings``, ``embed_tokens``, GPT-Neo's
    ``drop``, ...); an encoder of no registered family is looked up at ``embeddings``.
    """
    family = architecture_of(encoder)
    path = family.embedding if family is not None else None
    try:
        module = encoder.get_submodule(path if path is not None else "embeddings")
    except AttributeError:
        module = None
    if isinstance(module, nn.Module) and module is not encoder:
        return module
    raise ValueError(
        f"cannot find the embedding layer of {type(encoder).__name__}: pass embedding_layer= to SimilarityModel "
        "(the module whose output the first Transformer layer reads)"
    )


def word_embedding_module(encoder: nn.Module) -> nn.Module | None:
    """The module that makes HuggingFace's ``inputs_embeds`` from ids (``get_input_embeddings()``), if any."""
    getter = getattr(encoder, "get_input_embeddings", None)
    if not callable(getter):
        return None
    try:
        module = getter()
    except (NotImplementedError, AttributeError):
        return None
    return module if isinstance(module, nn.Module) else None


def last_hidden_state(output) -> torch.Tensor:
    """The token states of an encoder's output: a tensor, ``.last_hidden_state`` or the first item."""
    if isinstance(output, torch.Tensor):
        return output
    return output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
