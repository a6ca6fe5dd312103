"""The head of a sentence-transformers pipeline (its modules after Pooling, and ``truncate_dim``) as bilrp modules.

sentence-transformers applies ``Dense`` and ``Normalize`` modules in order after the Pooling module, then
``truncate_dim`` to the output of the whole pipeline (after any ``Normalize``). bilrp builds the same
sequence from :mod:`bilrp.models.heads`; a ``Normalize`` that ends the pipeline is folded into the
similarity instead (the cosine of the embeddings before it equals the model's cosine or dot product of
the normalised ones), so that a ``similarity=`` override keeps its meaning.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import torch
from torch import nn

from .errors import ModelLoadError, first_line
from .folders import read_json
from .heads import DenseLayer, L2Normalize, TruncateDim
from .st_pipeline import check_head_config

__all__ = ["object_head", "folder_head"]

_DEFAULT_ACTIVATION = "torch.nn.modules.activation.Tanh"
"""sentence-transformers' default ``Dense`` activation."""


def object_head(modules: list[nn.Module], dim: int, truncate_dim: int | None, where: str):
    """``(head modules, normalized)`` for the modules after Pooling of a loaded ``SentenceTransformer``.

    The ``Dense`` modules' linear layers and activations are shared, not copied. ``normalized``: a final
    ``Normalize`` was folded into the similarity.
    """
    head: list[nn.Module] = []
    for index, module in enumerate(modules, start=2):
        kind = type(module).__name__
        at = f"{where}, module {index} ({kind})"
        check_head_config({key: getattr(module, key, None) for key in ("module_input_name", "module_output_name")}, at)
        if kind == "Dense":
            layer = DenseLayer(
                module.linear,
                module.activation_function,
                use_residual=getattr(module, "use_residual", False),
                residual=getattr(module, "residual", None),
            )
            dim = _checked_input(layer, dim, at)
            head.append(layer)
        else:
            head.append(L2Normalize(dim))
    return _finish(head, dim, truncate_dim)


def folder_head(entries: list[tuple[str, Path, str]], dim: int, truncate_dim: int | None):
    """``(head modules, normalized)`` for the modules after Pooling of a sentence-transformers folder.

    ``entries`` are ``(class name, module folder, where)``; a ``Dense`` module's weights are read from its
    ``model.safetensors`` (or ``pytorch_model.bin``).
    """
    head: list[nn.Module] = []
    for kind, folder, where in entries:
        config_file = folder / "config.json"
        config = read_json(config_file) if config_file.is_file() else {}
        check_head_config(config, f"{where} ({config_file})")
        if kind == "Dense":
            if not config_file.is_file():
                raise ModelLoadError(f"{where}: the Dense module has no {config_file}: restore the file")
            layer = _dense_from_folder(config, folder, f"{where} ({config_file})")
            dim = _checked_input(layer, dim, where)
            head.append(layer)
        else:
            head.append(L2Normalize(dim))
    return _finish(head, dim, truncate_dim)


def _finish(head: list[nn.Module], dim: int, truncate_dim: int | None):
    """Append the truncation (when it cuts anything) and fold a final ``Normalize`` into the similarity."""
    if truncate_dim is not None and truncate_dim < dim:
        head.append(TruncateDim(truncate_dim))
    normalized = bool(head) and isinstance(head[-1], L2Normalize)
    return (head[:-1] if normalized else head), normalized


def _checked_input(layer: DenseLayer, dim: int, where: str) -> int:
    if layer.in_features != dim:
        raise ModelLoadError(
            f"{where}: in_features {layer.in_features} but the embedding before it has {dim} dimensions: "
            "the pipeline cannot run"
        )
    return layer.out_features


def _dense_from_folder(config: dict, folder: Path, where: str) -> DenseLayer:
    """A :class:`DenseLayer` from a saved Dense module's config and weights."""
    try:
        in_features, out_features = int(config["in_features"]), int(config["out_features"])
    except (KeyError, TypeError, ValueError):
        raise ModelLoadError(f"{where}: needs integer in_features and out_features: fix the file") from None
    bias = bool(config.get("bias", True))
    use_residual = bool(config.get("use_residual", False))
    residual = nn.Linear(in_features, out_features, bias=False) if use_residual else None
    layer = DenseLayer(
        nn.Linear(in_features, out_features, bias=bias),
        _activation(config.get("activation_function", _DEFAULT_ACTIVATION), where),
        use_residual=use_residual,
        residual=residual if in_features != out_features else None,
    )
    weights, state = _dense_weights(folder)
    try:
        layer.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelLoadError(f"{weights} does not hold the weights of {where}: {first_line(error)}") from None
    return layer.eval()


def _activation(path, where: str) -> nn.Module:
    """The activation module named ``path`` (a ``torch.`` module class, as sentence-transformers loads it)."""
    if not isinstance(path, str) or not path.startswith("torch."):
        raise ModelLoadError(
            f"{where}: activation_function {path!r} is not a torch module (sentence-transformers loads it only "
            "with trust_remote_code): bilrp cannot explain this module yet"
        )
    module_name, _, class_name = path.rpartition(".")
    try:
        kind = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise ModelLoadError(f"{where}: activation_function {path!r} does not exist in this torch") from None
    if not (isinstance(kind, type) and issubclass(kind, nn.Module)):
        raise ModelLoadError(f"{where}: activation_function {path!r} is not a torch.nn.Module class")
    return kind()


def _dense_weights(folder: Path) -> tuple[Path, dict]:
    """The weights file of a saved Dense module and its tensors."""
    safetensors, pickled = folder / "model.safetensors", folder / "pytorch_model.bin"
    if safetensors.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return safetensors, load_file(str(safetensors))
        except (SafetensorError, OSError) as error:
            raise ModelLoadError(f"{safetensors} is damaged ({first_line(error)}): copy it again") from None
    if pickled.is_file():
        try:
            return pickled, torch.load(pickled, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
            raise ModelLoadError(f"cannot load {pickled}: {first_line(error)}") from None
    raise ModelLoadError(f"{folder} holds no weights of its Dense module: expected model.safetensors")
