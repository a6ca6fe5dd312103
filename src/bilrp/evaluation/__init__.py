"""Evaluations of a similarity model and its explanations (paper section 4, appendices B and C).

- :func:`evaluate_sts`: Spearman correlation with gold similarity scores.
- :func:`evaluate_perturbation`: perturbation curves and AUPC per explanation method, with paired tests.
- :func:`evaluate_conservation`: summed relevance against the score (H x P, BiLRP, BiLRP without biases).
- :func:`evaluate_ground_truth`: the noun-matching task with known interactions, and the ACS of explanations.

Each returns a result object whose ``files()`` are written with :func:`write_outputs`; ``bilrp evaluate``
runs them from the command line (:mod:`bilrp.evaluation.cli`).
"""

from typing import TYPE_CHECKING

from .._catalog import lazy_exports

# The imports below are for type checkers and the API docs, which cannot run __getattr__.
# ruff: noqa: F401
if TYPE_CHECKING:  # the names of _EXPORTS, statically (tests/test_startup.py checks that they match)
    from .conservation import ConservationResult, evaluate_conservation, zero_biases
    from .data import as_pairs, select_pairs
    from .errors import EvaluationError
    from .ground_truth import GroundTruthResult, evaluate_ground_truth
    from .perturbation import PerturbationResult, evaluate_perturbation
    from .report import write_outputs
    from .significance import PairedTest, compare_to_reference, holm, wilcoxon_signed_rank
    from .sts import STSResult, evaluate_sts

_EXPORTS = {
    "EvaluationError": ".errors:EvaluationError",
    "select_pairs": ".data:select_pairs",
    "as_pairs": ".data:as_pairs",
    "write_outputs": ".report:write_outputs",
    "STSResult": ".sts:STSResult",
    "evaluate_sts": ".sts:evaluate_sts",
    "PerturbationResult": ".perturbation:PerturbationResult",
    "evaluate_perturbation": ".perturbation:evaluate_perturbation",
    "ConservationResult": ".conservation:ConservationResult",
    "evaluate_conservation": ".conservation:evaluate_conservation",
    "zero_biases": ".conservation:zero_biases",
    "GroundTruthResult": ".ground_truth:GroundTruthResult",
    "evaluate_ground_truth": ".ground_truth:evaluate_ground_truth",
    "PairedTest": ".significance:PairedTest",
    "compare_to_reference": ".significance:compare_to_reference",
    "wilcoxon_signed_rank": ".significance:wilcoxon_signed_rank",
    "holm": ".significance:holm",
}
"""Public name -> ``"module:attribute"``; each module is imported when one of its names is first used."""

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
