"""Reading and checking model folders before transformers reads them.

A HuggingFace folder (``config.json``, tokenizer and weights files) is checked by :func:`check_model_folder`;
a sentence-transformers folder (``modules.json`` and its modules' configs) gives the defaults of
:func:`sentence_transformers_defaults`. Every problem raises :class:`ModelLoadError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ModelLoadError
from .lengths import check_seq_length
from .st_pipeline import check_include_prompt, check_pipeline, check_transformer_config, st_settings
from .tokenizer_checks import TOKENIZER_FILES_WORDING

__all__ = ["read_json", "sentence_transformers_defaults", "check_model_folder", "weights_file"]

# files that hold a tokenizer's vocabulary (transformers' VOCAB_FILES_NAMES conventions)
_SENTENCEPIECE_FILES = (
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "spm.model",
    "sentencepiece.model",
    "source.spm",
)
_FILELESS_TOKENIZERS = {"ByT5Tokenizer", "CanineTokenizer"}  # byte/character tokenizers without vocabulary files
# JSON files transformers reads from a model folder (checked first, so a bad one is named)
_HF_JSON_FILES = (
    "config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.json",
    "vocab.json",
    "pytorch_model.bin.index.json",
)
_WEIGHTS_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)


def read_json(path: Path, kind: type = dict):
    """The JSON content of ``path``, which must be a ``kind``; any problem names the file."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ModelLoadError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno}): "
            "fix or replace the file"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"cannot read {path}: {error}") from None
    if not isinstance(content, kind):
        wanted = "a JSON object" if kind is dict else "a JSON list"
        raise ModelLoadError(f"{path} must hold {wanted}, not a {type(content).__name__}: fix or replace the file")
    return content


# ---------------------------------------------------------------------------------------------- st folders
def sentence_transformers_defaults(folder: Path, pooling_given: bool = False, max_length_given: bool = False) -> dict:
    """Defaults read from a sentence-transformers folder (``{}`` without ``modules.json``), after checking
    that its pipeline is one bilrp implements.

    Keys: ``transformer_path``, ``max_length`` (with ``max_length_where``), ``do_lower_case``,
    ``pooling_config`` (with ``pooling_where``), ``head_entries`` (``(class name, folder, where)`` of every
    module after Pooling, for :func:`bilrp.models.st_heads.folder_head`), and from
    ``config_sentence_transformers.json`` ``similarity_fn_name``, ``truncate_dim``, ``prompts`` and
    ``default_prompt_name``; each only when the folder sets it.
    """
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return {}
    entries = _module_entries(modules_file, folder)
    check_pipeline([(kind, f"path {path!r}") for kind, path in entries], str(modules_file), pooling_given)
    transformer_path = folder / entries[0][1]
    defaults: dict = {"transformer_path": str(transformer_path)}
    defaults.update(_transformer_defaults(transformer_path / "sentence_bert_config.json", max_length_given))
    if len(entries) > 1:
        defaults.update(_pooling_defaults(folder / entries[1][1] / "config.json", modules_file))
    defaults["head_entries"] = [
        (kind.rsplit(".", 1)[-1], folder / path, f"{modules_file}: module {index} ({kind.rsplit('.', 1)[-1]})")
        for index, (kind, path) in enumerate(entries[2:], start=2)
    ]
    defaults.update(_st_config_defaults(folder / "config_sentence_transformers.json"))
    return defaults


def _module_entries(modules_file: Path, folder: Path) -> list[tuple[str, str]]:
    """``(qualified class name, path)`` of each module listed in ``modules_file``."""
    entries = []
    for index, module in enumerate(read_json(modules_file, list)):
        if not isinstance(module, dict):
            raise ModelLoadError(
                f"{modules_file}: entry {index} is a {type(module).__name__}, not an object with 'type' and 'path'"
            )
        kind, path = module.get("type"), module.get("path")
        if not isinstance(kind, str) or not kind:
            raise ModelLoadError(f"{modules_file}: entry {index} has no 'type' string: fix the file")
        if not isinstance(path, str):
            raise ModelLoadError(f"{modules_file}: entry {index} ({kind}) has no 'path' string: fix the file")
        if index == 0 and not (folder / path).is_dir():  # Normalize, for one, has no folder
            raise ModelLoadError(f"{modules_file}: entry {index} ({kind}) path {path!r} is not a folder in {folder}")
        entries.append((kind, path))
    return entries


def _transformer_defaults(config_file: Path, max_length_given: bool) -> dict:
    """``max_length`` and ``do_lower_case`` from the Transformer module's ``sentence_bert_config.json``."""
    defaults: dict = {}
    if not config_file.is_file():
        return defaults
    config = read_json(config_file)
    check_transformer_config(config, str(config_file))
    seq_length = config.get("max_seq_length")
    if seq_length is not None and not max_length_given:  # a broken value is ignored when max_length= is given
        where = f"{config_file}: max_seq_length"
        defaults["max_length"] = check_seq_length(seq_length, where, "fix the file or pass max_length=")
        defaults["max_length_where"] = where
    if config.get("do_lower_case"):
        defaults["do_lower_case"] = f"{config_file}: do_lower_case"
    return defaults


def _pooling_defaults(pooling_file: Path, modules_file: Path) -> dict:
    """The Pooling module's config (interpreted only when no ``pooling=`` is given) and where it is."""
    if not pooling_file.is_file():
        raise ModelLoadError(f"{modules_file}: the Pooling module has no {pooling_file}: restore the file")
    pooling_config = read_json(pooling_file)
    check_include_prompt(pooling_config, str(pooling_file))
    return {"pooling_config": pooling_config, "pooling_where": str(pooling_file)}


def _st_config_defaults(st_config: Path) -> dict:
    """``similarity_fn_name``, ``truncate_dim`` and the prompts from ``config_sentence_transformers.json``."""
    if not st_config.is_file():
        return {}
    config = read_json(st_config)
    model_type = config.get("model_type")
    if model_type not in (None, "SentenceTransformer"):
        raise ModelLoadError(
            f"{st_config}: model_type {model_type!r}: bilrp explains SentenceTransformer bi-encoders and "
            "cannot explain this model yet"
        )
    settings = st_settings(
        config.get("truncate_dim"), config.get("default_prompt_name"), config.get("prompts") or {}, str(st_config)
    )
    return {"similarity_fn_name": config.get("similarity_fn_name"), **settings}


# ---------------------------------------------------------------------------------------------- hf folders
def check_model_folder(folder: Path) -> None:
    """Check a HuggingFace model folder before transformers reads it: JSON, tokenizer and weights files."""
    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"{folder} has no config.json: give a HuggingFace model folder (written by save_pretrained)"
        )
    for name in _HF_JSON_FILES:
        if (folder / name).is_file():
            read_json(folder / name, object)
    _check_tokenizer_files(folder)
    _check_weights_files(folder)


def _check_tokenizer_files(folder: Path) -> None:
    names = {path.name for path in folder.iterdir()}
    if "tokenizer.json" in names or "vocab.txt" in names or any(name in names for name in _SENTENCEPIECE_FILES):
        return
    if "vocab.json" in names and "merges.txt" in names:
        return
    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer_config.is_file():
        config = read_json(tokenizer_config, object)
        if isinstance(config, dict) and config.get("tokenizer_class") in _FILELESS_TOKENIZERS:
            return
    found = " (it has vocab.json but no merges.txt)" if "vocab.json" in names else ""
    raise ModelLoadError(
        f"{folder} has no tokenizer files{found}: expected {TOKENIZER_FILES_WORDING}; save the model's "
        "tokenizer into the folder (tokenizer.save_pretrained(folder))"
    )


def _check_weights_files(folder: Path) -> None:
    files = []
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ModelLoadError(f"{index} has no 'weight_map' object: fix or replace the file")
        for shard in sorted(set(map(str, weight_map.values()))):
            if not (folder / shard).is_file():
                raise ModelLoadError(f"{index} lists the shard {shard}, which is missing from {folder}")
            files.append(folder / shard)
    elif (folder / "model.safetensors").is_file():
        files.append(folder / "model.safetensors")
    elif not any((folder / name).is_file() for name in ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        raise ModelLoadError(f"{folder} has no weights: expected model.safetensors (or pytorch_model.bin)")
    for file in files:
        _check_safetensors(file)


def _check_safetensors(file: Path) -> None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt") as weights:
            weights.keys()
    except (SafetensorError, OSError) as error:
        raise ModelLoadError(
            f"{file} is damaged ({str(error).strip()}): the file is truncated or corrupt; copy or download it again"
        ) from None


def weights_file(path: str) -> str:
    """The weights file (or index) transformers reads from the folder ``path``; ``path`` when none is there."""
    folder = Path(path)
    for name in _WEIGHTS_FILES:
        if (folder / name).is_file():
            return str(folder / name)
    return path
