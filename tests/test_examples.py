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
