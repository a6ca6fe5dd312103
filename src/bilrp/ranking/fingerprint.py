"""What a document's stored factor depends on, as a fingerprint: the model and the rule set it was computed with.

A factor ``C_d`` is valid only for the model that computed it (weights, tokenizer, pooling, head, similarity,
maximum length, prompts) and for its rules. The model's fingerprint is :func:`bilrp.models.fingerprint.
model_fingerprint` (shared with the corpus runs, below both); this module adds the index's spelling of a rule
set (:func:`canonical_rules`) and its refusal when an index is opened with another model
(:func:`mismatch_message`).
"""

from __future__ import annotations

from ..models.fingerprint import FINGERPRINT_PARTS, digest, fingerprint_difference, model_fingerprint
from ..rule_sets import parse_rule_set

__all__ = ["FINGERPRINT_PARTS", "model_fingerprint", "canonical_rules", "mismatch_message", "digest"]


def canonical_rules(spec: str) -> str:
    """A rule-set spec in one spelling (``"epsilon"`` and ``"epsilon=0.1"`` are the same rules)."""
    rule_set, value = parse_rule_set(spec)
    if rule_set.default is None:
        return rule_set.name
    return f"{rule_set.name}={float(rule_set.default if value is None else value)!r}"


def mismatch_message(
    where: str, stored: dict[str, str], current: dict[str, str], built_with: str, advice: str
) -> str | None:
    """The one-line refusal when fingerprint ``current`` differs from ``stored``, else ``None``.

    Parameters
    ----------
    where
        How the index is named in the message (its folder).
    stored, current
        The fingerprint the index was built with and that of the model at hand.
    built_with
        The name of the model the index was built with.
    advice
        What to do, the end of the message.

    """
    detail = fingerprint_difference(stored, current)
    if detail is None:
        return None
    return f"index {where} was built with another model ({detail}; built with {built_with!r}): {advice}"
