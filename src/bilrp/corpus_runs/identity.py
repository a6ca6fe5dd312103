"""The identity of a corpus run: what its results depend on, and the digest every shard of the run carries.

A run's results are valid only for what computed them: the model (its fingerprint: weights, tokenizer,
pooling, head, similarity, maximum length, prompts; :func:`bilrp.models.fingerprint.model_fingerprint`), the
unit of work and its options (the method, the rules, ...). The run folder records these once (``run.json``,
or ``meta.json`` for an analysis run); a later run with anything else is refused, naming what differs
(:func:`meta_difference`). Every shard carries the digest of that record (:func:`run_digest`), so a shard
copied in from another run is refused too, even when the folder's own record matches.

An option that is not plain data (a zennit composite object, say) is recorded by its type and ``repr``: a run
given another such object, or the same one in another process when its ``repr`` shows its address, is refused
rather than reused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["plain", "model_identity", "run_digest", "check_digest", "meta_difference", "canonical_rules"]


def plain(value: Any) -> Any:
    """``value`` as canonical JSON data: tuples as lists, dataclasses as dicts, other objects by type and repr."""
    if hasattr(value, "__dataclass_fields__") and not isinstance(value, type):
        from dataclasses import asdict

        return plain(asdict(value))
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN or infinity
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    kind = type(value)
    return {"object": f"{kind.__module__}.{kind.__qualname__}", "repr": repr(value)}


def model_identity(model: Any) -> dict[str, Any]:
    """``{"model": name, "fingerprint": {...}}``: what a run records of the model that computes it."""
    from ..models.fingerprint import model_fingerprint  # torch: imported when a run starts, not with bilrp --help

    return {"model": getattr(model, "name", None), "fingerprint": model_fingerprint(model)}


def run_digest(meta: Mapping[str, Any]) -> str:
    """The digest of a run's record (128-bit BLAKE2b of its canonical JSON): the identity its shards carry."""
    text = json.dumps(plain(meta), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def check_digest(run: str, data: bytes | memoryview) -> str:
    """The check of one stored piece of a run (a JSONL line, ...): SHA-256 of the run and the data, 128 bits, hex.

    SHA-256 (hardware-accelerated on current CPUs) keeps the check a few percent of reading what it covers.
    """
    hasher = _seeded(run).copy()
    hasher.update(len(data).to_bytes(8, "little"))
    hasher.update(data)
    return hasher.hexdigest()[:32]


@functools.lru_cache(maxsize=16)
def _seeded(run: str) -> Any:
    """A SHA-256 hasher that has taken in the (length-prefixed) run identity: copied for every check."""
    encoded = run.encode("utf-8")
    hasher = hashlib.sha256()
    hasher.update(len(encoded).to_bytes(8, "little") + encoded)
    return hasher


def meta_difference(stored: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """How a stored run record differs from the current one, in words, or ``None`` when they are the same.

    The model's fingerprint is compared part by part (``"another model (other weights; run with 'm')"``),
    every other field by value (``"method='bilrp', not 'hxp'"``); the fields of ``current`` first, in order.
    """
    current = plain(current)
    for key in [*current, *(key for key in stored if key not in current)]:
        old, new = stored.get(key), current.get(key)
        if old == new:
            continue
        if key == "fingerprint" and isinstance(new, dict):
            from ..models.fingerprint import fingerprint_difference

            what = fingerprint_difference(old, new) or "another fingerprint"
            return f"a run of another model ({what}; run with {stored.get('model')!r})"
        if key == "options" and isinstance(old, dict) and isinstance(new, dict):
            for name in [*new, *(name for name in old if name not in new)]:
                if old.get(name) != new.get(name):
                    return f"a run with option {name}={_shown(old.get(name))}, not {_shown(new.get(name))}"
        return f"a run with {key}={_shown(old)}, not {_shown(new)}"
    return None


def _shown(value: Any) -> str:
    """A stored value for a message: short, one line."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 120 else text[:117] + "..."


def canonical_rules(spec: str) -> str:
    """A rule-set spec in one spelling (``"epsilon"`` and ``"epsilon=0.1"`` are the same rules)."""
    from ..rule_sets import parse_rule_set

    rule_set, value = parse_rule_set(spec)
    if rule_set.default is None:
        return rule_set.name
    return f"{rule_set.name}={float(rule_set.default if value is None else value)!r}"
