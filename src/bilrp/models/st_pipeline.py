"""The sentence-transformers pipelines bilrp explains, and what their configs mean in bilrp's terms.

The same rules apply to a saved sentence-transformers folder (:mod:`bilrp.models.folders`) and to a loaded
``SentenceTransformer`` object (:mod:`bilrp.models.st_objects`): any module or setting that changes what
the model computes and bilrp does not implement raises :class:`ModelLoadError` naming it.
"""

from __future__ import annotations

from .._catalog import POOLING_NAMES, SIMILARITY_NAMES
from .errors import ModelLoadError

__all__ = [
    "SUPPORTED_PIPELINE",
    "HEAD_MODULES",
    "check_pipeline",
    "check_transformer_config",
    "check_head_config",
    "st_settings",
    "check_include_prompt",
    "pooling_from_config",
    "similarity_from_sentence_transformers",
]

SUPPORTED_PIPELINE = (
    "bilrp explains Transformer -> Pooling (cls, mean, weightedmean, lasttoken, max or mean_sqrt_len_tokens) "
    "-> any Dense and Normalize modules"
)
HEAD_MODULES = ("Dense", "Normalize")
"""sentence-transformers modules bilrp implements after the Pooling module."""
_PACKAGE = "sentence_transformers."
# sentence-transformers pooling modes (new names; legacy boolean keys map onto them) -> bilrp poolings
_ST_POOLINGS = {
    "cls": "cls",
    "mean": "mean",
    "weightedmean": "weighted_mean",
    "lasttoken": "last_token",
    "max": "max",
    "mean_sqrt_len_tokens": "mean_sqrt_len",
}
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_DISTANCES = ("euclidean", "manhattan")


def check_pipeline(entries: list[tuple[str, str]], where: str, pooling_given: bool) -> None:
    """Refuse any module outside Transformer -> Pooling -> Dense/Normalize modules.

    ``entries`` are ``(qualified class name, location)``; a class must come from sentence-transformers (a
    ``Dense`` of another package computes something else).
    """
    if not entries:
        raise ModelLoadError(f"{where} has no modules: {SUPPORTED_PIPELINE}")
    for index, (qualified, location) in enumerate(entries):
        kind = qualified.rsplit(".", 1)[-1]
        expected = ("Transformer",) if index == 0 else ("Pooling",) if index == 1 else HEAD_MODULES
        if kind not in expected or not qualified.startswith(_PACKAGE):
            raise ModelLoadError(
                f"{where}: module {index} ({kind}, {location}): bilrp cannot explain this module yet "
                f"({SUPPORTED_PIPELINE})"
            )
    if len(entries) == 1 and not pooling_given:
        raise ModelLoadError(
            f"{where} has no Pooling module after the Transformer: {SUPPORTED_PIPELINE}; pass pooling= to choose one"
        )


def check_transformer_config(config: dict, where: str) -> None:
    """Refuse Transformer-module settings that change what the model computes and bilrp does not implement."""
    task = config.get("transformer_task")
    if task not in (None, "feature-extraction"):
        raise ModelLoadError(f"{where}: transformer_task {task!r}: bilrp cannot explain this module yet")
    output = config.get("module_output_name")
    if output not in (None, "token_embeddings"):
        raise ModelLoadError(f"{where}: module_output_name {output!r}: bilrp cannot explain this module yet")
    modalities = config.get("modality_config")
    if modalities is not None:
        text = modalities.get("text") if isinstance(modalities, dict) else None
        if (
            not isinstance(text, dict)
            or set(modalities) != {"text"}
            or text.get("method", "forward") != "forward"
            or text.get("method_output_name", "last_hidden_state") != "last_hidden_state"
        ):
            raise ModelLoadError(
                f"{where}: modality_config {modalities!r}: bilrp cannot explain this module yet "
                "(it explains text through the encoder's last_hidden_state)"
            )
    for key in ("processing_kwargs", "query_expansion", "query_length", "document_length"):
        if config.get(key):
            raise ModelLoadError(f"{where}: {key} {config[key]!r}: bilrp cannot explain this module yet")


def check_head_config(config: dict, where: str) -> None:
    """Refuse a Dense or Normalize module that reads or writes anything but the sentence embedding."""
    for key in ("module_input_name", "module_output_name"):
        value = config.get(key)
        if value not in (None, "sentence_embedding"):
            raise ModelLoadError(
                f"{where}: {key} {value!r}: bilrp cannot explain this module yet (it explains modules on the "
                "sentence embedding)"
            )


def st_settings(truncate_dim, default_prompt_name, prompts, where: str) -> dict:
    """The checked ``truncate_dim``, ``prompts`` and ``default_prompt_name`` of a sentence-transformers model.

    Returns ``{"truncate_dim": int | None, "prompts": {name: text}, "default_prompt_name": str | None}``; a
    missing prompt text (``None``) is the empty prompt, as in sentence-transformers.
    """
    if truncate_dim is not None and (
        isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int) or truncate_dim < 1
    ):
        raise ModelLoadError(f"{where}: truncate_dim {truncate_dim!r} must be a positive integer or null")
    if not isinstance(prompts, dict):
        raise ModelLoadError(f"{where}: prompts {prompts!r} must map prompt names to prompt texts")
    prompts = {name: "" if text is None else text for name, text in prompts.items()}
    for name, text in prompts.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise ModelLoadError(f"{where}: prompt {name!r}: {text!r} must be a text")
    if default_prompt_name is not None and default_prompt_name not in prompts:
        raise ModelLoadError(
            f"{where}: default_prompt_name {default_prompt_name!r} is not one of the prompts {sorted(prompts)}"
        )
    return {"truncate_dim": truncate_dim, "prompts": prompts, "default_prompt_name": default_prompt_name}


def check_include_prompt(config: dict, where: str) -> None:
    """Refuse a Pooling config that leaves prompt tokens out (``include_prompt`` other than ``True``)."""
    if config.get("include_prompt", True) is not True:
        raise ModelLoadError(
            f"{where}: include_prompt {config['include_prompt']!r} leaves prompt tokens out of the pooling: "
            "bilrp cannot explain this module yet"
        )


def pooling_from_config(config: dict, where: str = "Pooling module") -> str:
    """The bilrp pooling for a sentence-transformers Pooling config, old or new format.

    sentence-transformers < 6 writes one boolean ``pooling_mode_*`` key per mode; newer versions write
    ``"pooling_mode": "mean"`` (or a list of modes). Several modes at once (concatenated) are refused.
    """
    if "pooling_mode" in config:
        modes = config["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else list(modes) if isinstance(modes, list | tuple) else [modes]
    else:
        modes = [_LEGACY_POOLING_KEYS[key] for key, value in config.items() if key in _LEGACY_POOLING_KEYS and value]
        modes = modes or ["mean"]  # sentence-transformers' default when no legacy key is set
    chosen = [_ST_POOLINGS.get(mode) if isinstance(mode, str) else None for mode in modes]
    if len(chosen) != 1 or chosen[0] is None:
        raise ModelLoadError(
            f"unsupported sentence-transformers pooling {modes} in {where}: bilrp explains one of "
            f"{', '.join(POOLING_NAMES)}; pass pooling= to choose one"
        )
    return chosen[0]


def similarity_from_sentence_transformers(function: str | None, normalized: bool) -> str:
    """The bilrp similarity for a sentence-transformers ``similarity_fn_name``.

    ``normalized``: the pipeline ends in a ``Normalize`` module, which bilrp folds into the similarity (the
    dot product and the cosine of normalised embeddings are the cosine of the embeddings before it).
    Distances (euclidean, manhattan) are refused: they are not bilinear in the two embeddings.
    """
    function = getattr(function, "value", function)  # a SimilarityFunction enum
    if function in {None, "cosine"} or (normalized and function in {"dot", "dot_product"}):
        return "cosine"
    if function in {"dot", "dot_product"}:
        return "dot"
    reason = " is a distance, not a bilinear similarity:" if function in _DISTANCES else ":"
    raise ModelLoadError(
        f"unsupported sentence-transformers similarity {function!r}{reason} bilrp explains "
        f"{' or '.join(SIMILARITY_NAMES)}; pass similarity= to choose one"
    )
