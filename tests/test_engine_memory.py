"""The engine's chunk size (memory budget) and the cost model of ``mode="auto"``; results whatever the chunking.

Speed and memory are measured by ``benchmarks/bench_memory.py``, never asserted here: these tests check the
rules' arithmetic and that chunking and mode change nothing in the result.
"""

import json
from pathlib import Path

import pytest
import torch

from bilrp import BiLRP, TransformerComposite, engine, engine_cost
from bilrp.engine import default_chunk_size, token_contributions
from tiny_models import tiny_similarity_model

RTOL = 1e-5
MINILM = {"width": 384, "heads": 12, "intermediate": 1536}
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "memory.json"


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL) -> None:
    scale = expected.abs().max()
    assert (actual - expected).abs().max() <= rtol * scale, float((actual - expected).abs().max() / scale)


def expected_chunk(batch, length, width, itemsize=4, heads=None, intermediate=None):
    heads = heads or width // 32
    intermediate = intermediate or 4 * width
    per_token = 8 * width + 2 * intermediate + 4 * heads * length
    return max(1, 2 * 1024**3 // (batch * length * per_token * itemsize))


@pytest.mark.parametrize(
    "shape", [(1, 16, 32), (2, 128, 384), (2, 256, 384), (2, 512, 384), (1, 512, 768), (4, 2048, 1024)]
)
def test_chunk_size_follows_the_formula(shape):
    assert default_chunk_size(*shape) == expected_chunk(*shape)
    assert default_chunk_size(*shape, 8) == expected_chunk(*shape, 8)  # float64: half the tangents, or so
    assert default_chunk_size(*shape, heads=3, intermediate=50) == expected_chunk(*shape, heads=3, intermediate=50)


def test_chunk_size_keeps_the_old_positional_signature():
    assert default_chunk_size(2, 64, 384, 4) == default_chunk_size(2, 64, 384)
    with pytest.raises(TypeError):
        default_chunk_size(2, 64, 384, 4, 12)  # heads and intermediate are keyword-only


def test_chunk_size_is_at_least_one_and_shrinks_with_length():
    assert default_chunk_size(64, 32768, 4096) == 1
    sizes = [default_chunk_size(2, length, 384) for length in (64, 128, 256, 512, 1024)]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0]


def test_chunk_size_counts_the_attention_matrices():
    """At 512 tokens the seq x seq attention term is 4x the per-token term: the old rule ignored it."""
    old = 2 * 1024**3 // (2 * 512 * 384 * 4 * 16)
    assert default_chunk_size(2, 512, 384) == 17 < old // 4  # the default MiniLM pair (both texts: batch 2)
    assert default_chunk_size(2, 512, 384, heads=12, intermediate=1536) == 17  # MiniLM's own shape


def test_recorded_minilm_measurements_agree_with_the_estimate():
    """benchmarks/results/memory.json: at the default chunk size the measured growth stays below the estimate
    for the first chunk (its tokens, f(0) and the probe), within the budget, and the 512-token pair under 3 GB."""
    rows = json.loads(RESULTS.read_text())["rows"]
    replay = {r["length"]: r for r in rows if r["mode"] == "replay" and r["chunking"] == "after"}
    assert sorted(replay) == [128, 256, 512]
    for length, row in replay.items():
        assert row["chunk_size"] == default_chunk_size(2, length, MINILM["width"])
        items = min(row["chunk_size"], length) + 2
        assert row["peak_gb"] * 1e9 <= items * engine_cost._item_bytes(2, length, MINILM["width"], 4)
        assert row["peak_gb"] * 1e9 <= engine_cost._MEMORY_BUDGET
    assert replay[512]["total_gb"] <= 3.0


@pytest.mark.parametrize("dim", [8, 32, 384, 768, 4096])
def test_auto_picks_what_the_cost_model_says(dim):
    crossover = max(0, int(engine_cost._reverse_cost(dim) - 2))  # the longest text replay is chosen for
    replay, reverse = engine_cost._replay_cost, engine_cost._reverse_cost
    assert replay(crossover) <= reverse(dim) < replay(crossover + 1)
    for length in (1, crossover // 2, crossover, crossover + 1, 2 * crossover + 5):
        cheaper = "replay" if engine_cost._replay_cost(length) <= engine_cost._reverse_cost(dim) else "reverse"
        assert engine_cost._choose_mode("auto", length, dim, rules=True) == cheaper
    assert engine_cost._choose_mode("auto", crossover, dim, rules=True) == "replay"
    assert engine_cost._choose_mode("auto", crossover + 1, dim, rules=True) == "reverse"


def test_cost_model_in_forward_passes():
    assert engine_cost._replay_cost(100) == 102.0
    assert engine_cost._reverse_cost(384) == pytest.approx(3.0 + engine_cost._BACKWARD_COST * 384)


def test_auto_without_rules_and_explicit_modes_are_unchanged():
    assert engine_cost._choose_mode("auto", 10, 32, rules=False) == "forward"
    assert engine_cost._choose_mode("auto", 33, 32, rules=False) == "reverse"
    for mode in ("forward", "reverse"):
        assert engine_cost._choose_mode(mode, 1000, 8, rules=False) == mode
    assert engine_cost._choose_mode("replay", 1000, 8, rules=True) == "replay"
    with pytest.raises(ValueError, match="replay"):
        engine_cost._choose_mode("replay", 4, 8, rules=False)
    with pytest.raises(ValueError, match="unknown mode"):
        engine_cost._choose_mode("fast", 4, 8, rules=True)


@pytest.fixture(scope="module")
def tiny():
    model = tiny_similarity_model("bert", "mean", "cosine")
    tokens = model.tokenize(["a man is playing a guitar on the street today", "dogs run"])
    emb = model.embed(tokens["input_ids"], tokens["attention_mask"]).detach()
    return model, emb, tokens["attention_mask"]


@pytest.mark.parametrize("backward_cost, expected", [(1e-3, "reverse"), (10.0, "replay")])
def test_token_contributions_runs_the_mode_auto_chose(tiny, monkeypatch, backward_cost, expected):
    model, emb, mask = tiny
    monkeypatch.setattr(engine_cost, "_BACKWARD_COST", backward_cost)
    ran = []
    for name in ("_replay_contributions", "_reverse_contributions", "_forward_contributions"):
        original = getattr(engine, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            ran.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(engine, name, spy)
    with TransformerComposite().context(model):
        token_contributions(model.represent, emb, mask, rules=True, model=model)
    assert ran == [f"_{expected}_contributions"]


def test_contributions_identical_across_chunk_sizes_and_modes(tiny):
    model, emb, mask = tiny
    with TransformerComposite().context(model):
        reference = token_contributions(model.represent, emb, mask, mode="reverse", rules=True)[0]
        for mode in ("replay", "forward", "reverse", "auto"):
            for chunk_size in (1, 2, 5, None):
                contributions, _ = token_contributions(
                    model.represent, emb, mask, mode=mode, chunk_size=chunk_size, rules=True
                )
                assert_close(contributions, reference)


def test_relevance_identical_across_internal_batch_sizes_and_modes(tiny):
    model, emb, mask = tiny
    pair = (emb[:1], emb[1:]), (mask[:1], mask[1:])  # the second text is padded
    reference = BiLRP(model, mode="replay").attribute(pair[0], additional_forward_args=pair[1])
    for mode in ("auto", "replay", "reverse"):
        for internal_batch_size in (1, 3, None):
            relevance = BiLRP(model, mode=mode).attribute(
                pair[0], additional_forward_args=pair[1], internal_batch_size=internal_batch_size
            )
            assert_close(relevance, reference)
