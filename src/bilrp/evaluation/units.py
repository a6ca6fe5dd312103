"""The units of work of ``bilrp evaluate sts|perturbation|conservation``, shared by the local and Ray engines.

- :class:`EncodeTexts` (sts): a chunk of distinct texts -> each text's embedding (the scores are computed from
  them on the driver);
- :class:`PerturbPairs` (perturbation): a chunk of pairs -> each pair's explanations by every method and the
  perturbation curves of both its texts;
- :class:`ConservePairs` (conservation): a chunk of pairs -> each pair's score and summed relevance for H x P,
  BiLRP and BiLRP of the zero-bias model.

:func:`pair_records` and :func:`text_records` make the records (deterministic ids: ``pair-<position>`` and
``text-<position>``). Results are encoded losslessly (JSON floats round-trip exactly, tensors as safetensors),
so a run read back from shards equals the run kept in memory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors.torch import load, save

from ..corpus_runs.progress import report
from ..corpus_runs.work import Record, WorkUnit
from ..datasets import SimilarityPair
from ..explainer import explain_batch
from .perturbation_curves import perturbation_curves

__all__ = [
    "EncodeTexts",
    "PerturbPairs",
    "ConservePairs",
    "pair_records",
    "text_records",
    "TEXTS_PER_SHARD",
    "PAIRS_PER_STEP",
]

TEXTS_PER_SHARD = 8
"""Batches of texts per :class:`EncodeTexts` chunk (a chunk holds ``TEXTS_PER_SHARD * batch_size`` texts)."""
PAIRS_PER_STEP = 4
"""Pairs of a chunk explained (and perturbed) together, so that the progress bar ticks per pair
(:func:`bilrp.corpus_runs.progress.report`); on 2 CPU cores with MiniLM, IJ and BiLRP took as long in steps of 4
pairs as on 16 pairs at once (within the run-to-run noise)."""


def pair_records(pairs: Sequence[SimilarityPair]) -> list[Record]:
    """One record per pair: key = position, id ``pair-<position>``, texts ``(text_a, text_b)``."""
    return [Record(key, f"pair-{key}", (pair.text_a, pair.text_b)) for key, pair in enumerate(pairs)]


def text_records(texts: Sequence[str]) -> list[Record]:
    """One record per text: key = position, id ``text-<position>``."""
    return [Record(key, f"text-{key}", (text,)) for key, text in enumerate(texts)]


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, allow_nan=True).encode("utf-8")


@dataclass(frozen=True)
class EncodeTexts(WorkUnit):
    """Each text's embedding, in batches of ``batch_size`` texts (the records come sorted by length)."""

    name = "encode-texts"
    batch_size: int = 64

    @torch.no_grad()
    def compute(self, state: Any, records: Sequence[Record]) -> list[torch.Tensor]:
        texts = [record.texts[0] for record in records]
        embeddings = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            embeddings += list(state.encode(chunk, batch_size=self.batch_size))
            report(len(chunk))
        return embeddings

    def encode(self, result: torch.Tensor) -> bytes:
        return save({"phi": result.detach().cpu().contiguous()})

    def decode(self, data: bytes) -> torch.Tensor:
        return load(data)["phi"]


@dataclass(frozen=True)
class PerturbPairs(WorkUnit):
    """Per pair: the explanations of every method, then the perturbation curve of each text and order."""

    name = "perturbation"
    methods: tuple[str, ...] = ()
    fractions: tuple[float, ...] = ()
    filler_id: int = 0
    normalize: bool = True
    batch_size: int = 32
    seed: int = 0
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def compute(self, state: Any, records: Sequence[Record]) -> list[dict[str, dict[str, list[float]]]]:
        results = []
        for start in range(0, len(records), PAIRS_PER_STEP):
            results += self._step(state, records[start : start + PAIRS_PER_STEP])
        return results

    def _step(self, state: Any, records: Sequence[Record]) -> list[dict[str, dict[str, list[float]]]]:
        """The results of a few pairs: each method's explanations, then the curves (progress reported per part)."""
        text_pairs = [record.texts for record in records]
        explained = [method for method in self.methods if method != "random"]  # random orders are drawn directly
        share = 1.0 / (len(explained) + 1)  # of each pair's work: one part per explained method, one for the curves
        relevance = {}
        for method in explained:
            options = {"batch_size": self.batch_size, "progress": False, **self.method_options.get(method, {})}
            explanations = explain_batch(state, text_pairs, method, **options)
            relevance[method] = [explanation.relevance for explanation in explanations]
            report(len(records) * share)
        texts, curves = perturbation_curves(
            state, text_pairs, relevance, self.methods, np.asarray(self.fractions), self.filler_id, self.normalize,
            self.batch_size, self.seed, keys=[record.key for record in records],
            on_progress=lambda pairs: report(pairs * share),
        )  # fmt: skip
        results: list[dict[str, dict[str, list[float]]]] = [{"a": {}, "b": {}} for _ in records]
        for row, (_, side, _) in enumerate(texts):
            results[row // 2][side] = {method: curves[method][row].tolist() for method in self.methods}
        return results

    def encode(self, result: dict) -> bytes:
        return _json_bytes(result)

    def decode(self, data: bytes) -> dict:
        return json.loads(data)


@dataclass(frozen=True)
class ConservePairs(WorkUnit):
    """Per pair and variant (H x P, BiLRP, BiLRP with zeroed biases): the score and ``R.sum()``."""

    name = "conservation"
    batch_size: int = 32
    rules: str = "paper"

    def prepare(self, model: Any) -> dict[str, tuple[Any, str]]:
        from .conservation import zero_biases

        return {"hxp": (model, "hxp"), "bilrp": (model, "bilrp"), "bilrp_zero_bias": (zero_biases(model), "bilrp")}

    def compute(self, state: Any, records: Sequence[Record]) -> list[dict[str, list[float]]]:
        results: list[dict[str, list[float]]] = []
        for start in range(0, len(records), PAIRS_PER_STEP):
            step = records[start : start + PAIRS_PER_STEP]
            text_pairs = [record.texts for record in step]
            found: list[dict[str, list[float]]] = [{} for _ in step]
            for variant, (explained, method) in state.items():
                options = {"rules": self.rules} if method == "bilrp" else {}
                explanations = explain_batch(
                    explained, text_pairs, method=method, batch_size=self.batch_size, progress=False, **options
                )
                for result, explanation in zip(found, explanations, strict=True):
                    result[variant] = [float(explanation.score), float(explanation.relevance.double().sum())]
                report(len(step) / len(state))
            results += found
        return results

    def encode(self, result: dict) -> bytes:
        return _json_bytes(result)

    def decode(self, data: bytes) -> dict:
        return json.loads(data)
