"""Where the pair attributions take their inputs: the embedding output, or HuggingFace's ``inputs_embeds``.

Captum's ``Layer*`` attributions name the layer they attribute to; bilrp's pair attributions name their input
point with ``attribute_to=`` (one of :data:`INPUT_POINTS`):

- ``"embedding_output"`` (default): the output of the encoder's embedding layer, after the position embeddings and
  the embedding LayerNorm: the input of the first Transformer layer, what :meth:`SimilarityModel.embed` returns.
- ``"inputs_embeds"``: what HuggingFace encoders take as ``inputs_embeds``, the word embeddings
  ``encoder.get_input_embeddings()(input_ids)``. The explained function is the encoder run from there,
  ``encoder(inputs_embeds=x, attention_mask=mask)`` (positions, token types and the embedding LayerNorm included,
  whose rules the conservation certificate checks like every other module's), then the model's pooling, head and
  similarity: the function a Captum user writes around ``model(inputs_embeds=...)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..explaining import exclusive
from .encoder_parts import accepts_keyword, last_hidden_state, word_embedding_module
from .similarity_model import SimilarityModel

__all__ = ["INPUT_POINTS", "InputPoint", "InputsEmbedsModel", "check_input_point", "at_input_point", "input_point_of"]

InputPoint = Literal["embedding_output", "inputs_embeds"]
INPUT_POINTS: tuple[str, ...] = ("embedding_output", "inputs_embeds")
"""The input points of the pair attributions (``attribute_to=``)."""


def check_input_point(value) -> str:
    """``value`` when it is one of :data:`INPUT_POINTS`, else a one-line ``ValueError``."""
    if isinstance(value, str) and value in INPUT_POINTS:
        return value
    raise ValueError(
        f"attribute_to={value!r}: choose 'embedding_output' (inputs from model.embed(input_ids, attention_mask)) "
        "or 'inputs_embeds' (HuggingFace's inputs_embeds, encoder.get_input_embeddings()(input_ids))"
    )


def at_input_point(model, attribute_to: str):
    """The model whose ``represent`` and ``forward`` start at ``attribute_to``: ``model`` or its
    :class:`InputsEmbedsModel` (an :class:`InputsEmbedsModel` given as ``model`` starts at ``inputs_embeds``).
    """
    attribute_to = check_input_point(attribute_to)
    if attribute_to == "embedding_output" or isinstance(model, InputsEmbedsModel):
        return model
    if not isinstance(model, SimilarityModel):
        raise TypeError(
            f"attribute_to='inputs_embeds' needs a bilrp.SimilarityModel (its encoder runs from inputs_embeds), "
            f"not {type(model).__name__}: build one as SimilarityModel(encoder, tokenizer)"
        )
    return InputsEmbedsModel(model)


def input_point_of(model) -> str:
    """The input point ``model``'s ``represent`` starts at."""
    return "inputs_embeds" if isinstance(model, InputsEmbedsModel) else "embedding_output"


class InputsEmbedsModel(nn.Module):
    """A :class:`~bilrp.SimilarityModel` run from HuggingFace's ``inputs_embeds`` (the word embeddings).

    ``represent(x, mask)`` is ``head(pooling(encoder(inputs_embeds=x, attention_mask=mask)))``; ``embed(input_ids)``
    gives the word embeddings (``encoder.get_input_embeddings()(input_ids)``, so Captum's layer hooks on that module
    apply); ``forward(x_a, x_b, mask_a, mask_b)`` is the similarity. The wrapped model is :attr:`model`; its
    modules are shared, not copied.

    Raises
    ------
    TypeError
        When the encoder's ``forward`` takes no ``inputs_embeds`` argument, or it has no
        ``get_input_embeddings()``.

    """

    def __init__(self, model: SimilarityModel) -> None:
        super().__init__()
        encoder = model.encoder
        if not accepts_keyword(encoder.forward, "inputs_embeds"):
            raise TypeError(
                f"the encoder {type(encoder).__name__} takes no inputs_embeds argument, so it cannot be explained "
                "from inputs_embeds: pass attribute_to='embedding_output' and inputs from "
                "model.embed(input_ids, attention_mask)"
            )
        if word_embedding_module(encoder) is None:
            raise TypeError(
                f"the encoder {type(encoder).__name__} has no get_input_embeddings(), so its inputs_embeds are not "
                "defined (HuggingFace's convention): pass attribute_to='embedding_output'"
            )
        self.model = model

    # the steps and settings of the wrapped model
    encoder = property(lambda self: self.model.encoder)
    tokenizer = property(lambda self: self.model.tokenizer)
    pooling = property(lambda self: self.model.pooling)
    head = property(lambda self: self.model.head)
    similarity = property(lambda self: self.model.similarity)
    name = property(lambda self: self.model.name)
    device = property(lambda self: self.model.device)

    @property
    def word_embeddings(self) -> nn.Module:
        """The module that makes ``inputs_embeds`` from ids (``encoder.get_input_embeddings()``)."""
        return word_embedding_module(self.model.encoder)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The word embeddings of ``input_ids``: the ``inputs_embeds`` the encoder would make from them."""
        return self.word_embeddings(input_ids)

    def hidden_states(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``last_hidden_state`` of ``encoder(inputs_embeds=embeddings, attention_mask=attention_mask)``."""
        calls = []
        with exclusive():
            handle = self.word_embeddings.register_forward_pre_hook(lambda *_: calls.append(1))
            try:
                output = self.model.encoder(inputs_embeds=embeddings, attention_mask=attention_mask)
            finally:
                handle.remove()
        if calls:  # it made its own word embeddings: the given ones are not what it ran from
            raise ValueError(
                f"the encoder {type(self.model.encoder).__name__} called its word embeddings although given "
                "inputs_embeds, so it cannot be explained from them: pass attribute_to='embedding_output'"
            )
        return last_hidden_state(output)

    def represent(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence embedding ``(batch, dim)`` from ``inputs_embeds``: encoder, pooling, then the head."""
        return self.model.head(self.model.pooling(self.hidden_states(embeddings, attention_mask), attention_mask))

    def compare(self, phi_a: torch.Tensor, phi_b: torch.Tensor) -> torch.Tensor:
        """Similarity ``(batch,)`` of two batches of sentence embeddings (the wrapped model's)."""
        return self.model.compare(phi_a, phi_b)

    def forward(
        self,
        inputs_embeds_a: torch.Tensor,
        inputs_embeds_b: torch.Tensor,
        mask_a: torch.Tensor | None = None,
        mask_b: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Similarity of two batches of ``inputs_embeds`` (the function the attributions explain)."""
        mask_a = _full_mask(inputs_embeds_a) if mask_a is None else mask_a
        mask_b = _full_mask(inputs_embeds_b) if mask_b is None else mask_b
        return self.compare(self.represent(inputs_embeds_a, mask_a), self.represent(inputs_embeds_b, mask_b))


def _full_mask(embeddings: torch.Tensor) -> torch.Tensor:
    return torch.ones(embeddings.shape[:2], dtype=torch.long, device=embeddings.device)
