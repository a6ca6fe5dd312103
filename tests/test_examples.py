"""The examples run end to end (as a user would run them) and print what they promise."""

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_compare_methods_loop_runs_every_method_in_one_loop():
    output = run_example("compare_methods.py")
    score = float(re.search(r"cosine similarity: ([-\d.]+)", output).group(1))
    names = ["BiLRP", "Hessian x Product", "Integrated Jacobians", "Embedding", "Random", "Integrated Gradients"]
    for name in names:
        line = next(line for line in output.splitlines() if line.startswith(name))
        total, delta = (float(v) for v in re.search(r"sum=([-+\d.]+) delta=([-+\d.]+)", line).groups())
        if name != "Integrated Gradients":  # pair methods: sum + delta is the similarity
            assert abs(total + delta - score) < 2e-4, line
    assert "strongest pair: 'guitar'-'guitar'" in next(line for line in output.splitlines() if line.startswith("BiLRP"))


def test_rule_sets_example_prints_every_rule_set_and_a_decomposition_that_sums_to_the_score():
    output = run_example("rule_sets.py")
    from bilrp.rule_sets import RULE_SETS

    lines = output.splitlines()
    for name in RULE_SETS:
        line = next(line for line in lines if line.startswith(f"{name} "))
        found = re.search(r"score ([-\d.]+) = sum R ([-+\d.]+) \+ bias ([-+\d.]+)", line)
        score, total, bias = (float(v) for v in found.groups())
        assert abs(total + bias - score) < 2e-4, line
    matrix, score = (float(v) for v in re.search(r"matrix sum ([-\d.]+) = score ([-\d.]+)", output).groups())
    assert abs(matrix - score) < 1e-5
