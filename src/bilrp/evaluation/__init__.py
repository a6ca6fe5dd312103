"""Evaluations of a similarity model and its explanations (paper section 4, appendices B and C).

- :func:`evaluate_sts`: Spearman correlation with gold similarity scores.
- :func:`evaluate_perturbation`: perturbation curves and AUPC per explanation method, with paired tests.
- :func:`evaluate_conservation`: summed relevance against the score (H x P, BiLRP, BiLRP without biases).
- :func:`evaluate_ground_truth`: the noun-matching task with known interactions, and the ACS of explanations.

Each returns a result object whose ``files()`` are written with :func:`write_outputs`; ``bilrp evaluate``
runs them from the command line (:mod:`bilrp.evaluation.cli`).
"""

from .conservation import ConservationResult, evaluate_conservation, zero_biases
from .data import as_pairs, select_pairs
from .errors import EvaluationError
from .ground_truth import GroundTruthResult, evaluate_ground_truth
from .perturbation import PerturbationResult, evaluate_perturbation
from .report import write_outputs
from .significance import PairedTest, compare_to_reference, holm, wilcoxon_signed_rank
from .sts import STSResult, evaluate_sts

__all__ = [
    "EvaluationError",
    "select_pairs",
    "as_pairs",
    "write_outputs",
    "STSResult",
    "evaluate_sts",
    "PerturbationResult",
    "evaluate_perturbation",
    "ConservationResult",
    "evaluate_conservation",
    "zero_biases",
    "GroundTruthResult",
    "evaluate_ground_truth",
    "PairedTest",
    "compare_to_reference",
    "wilcoxon_signed_rank",
    "holm",
]
