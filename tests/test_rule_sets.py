"""Named rule sets, the family defaults, the bias decomposition and ``bilrp evaluate rules``.

The decomposition is checked against an independent computation: the bias part of each text's embedding is
the output of the rule-frozen network at an all-zero input, which the per-dimension reference
(tests/references.py) does not compute; here it comes from a replay of the recorded constants at zero, and
every term of the decomposition is compared with its definition written out with plain tensor products.
"""

import numpy as np
import pytest
import torch
from zennit.rules import Epsilon, Gamma

from bilrp import BiLRP, TransformerComposite, explain
from bilrp._catalog import RULE_SET_NAMES
from bilrp.architectures import ARCHITECTURES
from bilrp.constants import recording, replaying
from bilrp.evaluation.rule_comparison import evaluate_rules
from bilrp.plotting import plot_heatmap
from bilrp.rule_sets import RULE_SETS, choose_composite, default_rule_set, parse_rule_set, rule_set_composite
from tiny_models import tiny_similarity_model


@pytest.fixture(scope="module")
def model():
    return tiny_similarity_model("bert", similarity="cosine", dtype=torch.float64)


def test_catalog_lists_the_registered_rule_sets_and_family_defaults_are_registered():
    assert tuple(RULE_SETS) == RULE_SET_NAMES
    for entry in ARCHITECTURES.values():
        parse_rule_set(entry.rules)


@pytest.mark.parametrize(
    "spec, attention, linear",
    [
        ("paper", "ah", None),
        ("epsilon", "ah", Epsilon),
        ("epsilon=0.01", "ah", Epsilon),
        ("gamma=0.5", "ah", Gamma),
        ("attnlrp", "attnlrp", None),
        ("attnlrp-epsilon=1", "attnlrp", Epsilon),
    ],
)
def test_rule_sets_build_their_composites(spec, attention, linear):
    composite = rule_set_composite(spec)
    assert isinstance(composite, TransformerComposite) and composite.attention_rule == attention
    assert (composite.linear_rule is None) if linear is None else isinstance(composite.linear_rule, linear)
    rule_set, value = parse_rule_set(spec)
    if "=" in spec:
        assert value == float(spec.partition("=")[2])
        parameter = getattr(composite.linear_rule, "gamma", None)
        if parameter is not None:
            assert parameter == value


@pytest.mark.parametrize(
    "spec, message",
    [
        ("eps", "unknown rule set 'eps'"),
        ("epsilon=x", "non-negative number"),
        ("epsilon=-1", "non-negative number"),
        ("gamma=inf", "non-negative number"),
        ("paper=1", "takes no parameter"),
    ],
)
def test_bad_rule_sets_are_one_line_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        rule_set_composite(spec)


def test_composite_and_rules_are_exclusive_and_the_default_is_the_family_s(model):
    with pytest.raises(ValueError, match="either composite= or rules="):
        BiLRP(model, composite=TransformerComposite(), rules="paper")
    assert default_rule_set(model) == ARCHITECTURES["bert"].rules
    assert BiLRP(model).rules == ARCHITECTURES["bert"].rules
    assert BiLRP(model, composite=TransformerComposite()).rules == "custom"
    composite, name = choose_composite(None, "attnlrp", model)
    assert name == "attnlrp" and composite.attention_rule == "attnlrp"
    assert default_rule_set(torch.nn.Linear(2, 2)) == "paper"


@pytest.mark.parametrize("spec", ["paper", "epsilon=0.1", "attnlrp"])
def test_decomposition_terms_equal_their_definitions(model, spec):
    a, b = "a man is playing a guitar", "someone plays music"
    explanation = explain(model, a, b, rules=spec)
    assert explanation.rules == spec and explanation.has_decomposition
    factors = {}
    attribution = BiLRP(model, rules=spec)
    for text in (a, b):
        batch = model.tokenize([text])
        embeddings = model.embed(batch["input_ids"], batch["attention_mask"]).detach()
        contributions, phi = attribution.contributions(embeddings, batch["attention_mask"])
        with attribution.composite.context(model), torch.no_grad():  # f(0) with the constants of this text
            with recording() as tape:
                model.represent(embeddings, batch["attention_mask"])
            with replaying(tape, 1):
                zero = model.represent(torch.zeros_like(embeddings), batch["attention_mask"])
        factors[text] = contributions[0], phi[0], zero[0]
    (c_a, phi_a, bias_a), (c_b, phi_b, bias_b) = factors[a], factors[b]
    norms = phi_a.norm() * phi_b.norm()
    assert torch.allclose(explanation.relevance, c_a @ c_b.T / norms, atol=1e-12)
    assert torch.allclose(explanation.tokens_a_with_bias_b, c_a @ bias_b / norms, atol=1e-12)
    assert torch.allclose(explanation.bias_a_with_tokens_b, c_b @ bias_a / norms, atol=1e-12)
    assert explanation.bias_with_bias == pytest.approx(float(bias_a @ bias_b / norms), abs=1e-12)
    full = explanation.decomposition()
    assert full.shape == (len(explanation.tokens_a) + 1, len(explanation.tokens_b) + 1)
    assert float(full.sum()) == pytest.approx(explanation.score, abs=1e-10)
    assert abs(explanation.step_error) < 1e-10
    words = explanation.to_words()
    assert float(words.decomposition().sum()) == pytest.approx(explanation.score, abs=1e-10)
    share = abs(explanation.bias) / (abs(explanation.bias) + float(explanation.relevance.abs().sum()))
    assert explanation.bias_share == pytest.approx(share)


def test_methods_without_a_bias_decomposition_say_so(model):
    explanation = explain(model, "a dog", "a cat", method="hxp")
    assert not explanation.has_decomposition and explanation.rules == ""
    with pytest.raises(ValueError, match="have no bias decomposition"):
        explanation.decomposition()
    plot_heatmap(explanation)  # no bias row or column: draws the plain matrix


def test_heatmap_shows_the_bias_row_and_column(model):
    explanation = explain(model, "a dog runs", "a cat")
    figure = plot_heatmap(explanation)
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert labels[-1] == "(bias of A)" and len(labels) == len(explanation.tokens_a) + 1
    plain = plot_heatmap(explanation, show_bias=False)
    assert len(plain.axes[0].get_yticklabels()) == len(explanation.tokens_a)


def test_evaluate_rules_reports_aupc_bias_shares_and_tests(model):
    pairs = [("a man plays a guitar", "someone plays music"), ("dogs run in a park", "a dog is running")] * 2
    result = evaluate_rules(model, pairs, rules=["paper", "epsilon=1", "attnlrp"], progress=False)
    rows = {row["rules"]: row for row in result.rows()}
    assert set(rows) == {"paper", "epsilon=1", "attnlrp"} and len(result.tests) == 2
    explanations = [explain(model, a, b, rules="epsilon=1") for a, b in pairs]
    shares = [e.bias_share for e in explanations]
    assert rows["epsilon=1"]["median_bias_share"] == pytest.approx(float(np.median(shares)), rel=1e-6)
    assert result.curves["paper"].shape == (2 * len(pairs), len(result.fractions))
    files = result.files()
    assert "| `attnlrp` |" in files["results.md"] and files["rules.png"][:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="unknown rule set"):
        evaluate_rules(model, pairs, rules=["paper", "nope"], progress=False)


def test_sign_splitting_rules_shrink_the_engine_chunks(model, monkeypatch):
    from bilrp import engine

    assert rule_set_composite("paper").memory_factor == 1.0
    assert rule_set_composite("epsilon").memory_factor == 1.0
    assert rule_set_composite("gamma").memory_factor == 3.0
    seen = []
    original = engine._replay_contributions

    def spy(represent, tape, mask, directions, chunk_size, *args):
        seen.append(chunk_size)
        return original(represent, tape, mask, directions, chunk_size, *args)

    monkeypatch.setattr(engine, "_replay_contributions", spy)
    batch = model.tokenize(["a man plays"])
    embeddings = model.embed(batch["input_ids"], batch["attention_mask"]).detach()
    BiLRP(model, rules="paper", mode="replay").contributions(embeddings, batch["attention_mask"])
    BiLRP(model, rules="gamma", mode="replay").contributions(embeddings, batch["attention_mask"])
    default = engine.default_chunk_size(*embeddings.shape, embeddings.element_size())
    assert seen == [None, max(1, int(default / 3.0))]
