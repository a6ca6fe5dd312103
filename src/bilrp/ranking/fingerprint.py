"""What a document's stored factor depends on, as a fingerprint: the model and the rule set it was computed with.

A factor ``C_d`` is valid only for the model that computed it (weights, tokenizer, pooling, head, similarity,
maximum length, prompts) and for its rules. The model's fingerprint is :func:`bilrp.models.fingerprint.
model_fingerprint` (shared with the corpus runs, below both); the spelling of a rule set is the corpus runs'
(:func:`bilrp.corpus_runs.identity.canonical_rules`, one spelling for both); this module adds the refusal when
an index is opened with another model (:func:`mismatch_message`).
"""

from __future__ import annotations

from ..corpus_runs.identity import canonical_rules
from ..models.fingerprint import FINGERPRINT_PARTS, digest, fingerprint_difference, model_fingerprint

__all__ = ["FINGERPRINT_PARTS", "model_fingerprint", "canonical_rules", "mismatch_message", "digest"]


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
