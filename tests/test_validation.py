"""bilrp._validation: one rule per kind of numeric argument, shared by the Python API and the command line."""

import argparse
import re
import subprocess
import sys

import numpy as np
import pytest

from bilrp import _cli_support, _validation
from bilrp._validation import (
    fraction,
    fraction_rule,
    non_negative_int,
    optional_positive_int,
    positive_int,
    positive_number,
    seed,
)


@pytest.mark.parametrize(
    ("check", "value", "expected"),
    [
        (positive_int, 1, 1),
        (positive_int, np.int64(7), 7),
        (non_negative_int, 0, 0),
        (optional_positive_int, None, None),
        (optional_positive_int, 3, 3),
        (positive_number, 1e-4, 1e-4),
        (positive_number, 2, 2.0),
        (seed, 2**32 - 1, 2**32 - 1),
    ],
)
def test_accepted_values_come_back_as_numbers(check, value, expected):
    result = check("arg", value)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("check", "value", "wanted"),
    [
        (positive_int, 0, "a positive whole number"),
        (positive_int, -1, "a positive whole number"),
        (positive_int, 2.0, "a positive whole number"),
        (positive_int, True, "a positive whole number"),
        (positive_int, "3", "a positive whole number"),
        (positive_int, None, "a positive whole number"),
        (optional_positive_int, 0, "a positive whole number"),
        (non_negative_int, -1, "a whole number >= 0"),
        (positive_number, 0.0, "a positive number"),
        (positive_number, float("nan"), "a positive number"),
        (positive_number, float("inf"), "a positive number"),
        (seed, -1, "a whole number from 0 to 4294967295"),
        (seed, 2**32, "a whole number from 0 to 4294967295"),
    ],
)
def test_refused_values_name_the_argument_the_value_and_what_is_wanted(check, value, wanted):
    with pytest.raises(ValueError) as error:
        check("batch_size", value)
    assert str(error.value).startswith(f"batch_size must be {wanted}, not {value!r}")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("closed", "inside", "outside", "interval"),
    [
        ("left", [0.0, 0.5], [1.0, -0.1], "[0, 1)"),
        ("right", [1.0, 0.5], [0.0, 1.5], "(0, 1]"),
        ("both", [0.0, 1.0], [1.01], "[0, 1]"),
        ("neither", [0.5], [0.0, 1.0], "(0, 1)"),
    ],
)
def test_fraction_ends_belong_as_closed_says(closed, inside, outside, interval):
    for value in inside:
        assert fraction("threshold", value, 0.0, 1.0, closed) == value
    for value in outside:
        with pytest.raises(ValueError, match=rf"^threshold must be a fraction in {re.escape(interval)}"):
            fraction("threshold", value, 0.0, 1.0, closed)
    with pytest.raises(ValueError, match="not nan"):
        fraction("threshold", float("nan"), closed=closed)


def test_fraction_defaults_and_other_bounds():
    assert fraction("share", 0.25, 0.0, 0.5, "right") == 0.25
    with pytest.raises(ValueError, match=r"share must be a fraction in \(0, 0.5\], not 0.7"):
        fraction("share", 0.7, 0.0, 0.5, "right")
    with pytest.raises(ValueError, match=r"threshold must be a fraction in \[0, 1\), not 1"):
        fraction("threshold", 1)
    with pytest.raises(ValueError, match="closed must be one of both, left, right, neither"):
        fraction_rule(0.0, 1.0, "open")


@pytest.mark.parametrize(
    ("parse", "rule", "texts"),
    [
        (_cli_support.positive_int, _validation.POSITIVE_INT, ["1", "32", "0", "-1", "1.5", "x", ""]),
        (_cli_support.non_negative_int, _validation.NON_NEGATIVE_INT, ["0", "2", "-1", "nan"]),
        (_cli_support.positive_number, _validation.POSITIVE_NUMBER, ["1e-4", "0", "-2", "inf", "nan", "x"]),
        (_cli_support.seed, _validation.SEED, ["0", "4294967295", "4294967296", "-1"]),
        (_cli_support.fraction, fraction_rule(0.0, 1.0, "left"), ["0", "0.5", "1", "1e309", "-0.1"]),
    ],
)
def test_the_command_line_accepts_exactly_what_the_python_api_accepts(parse, rule, texts):
    for text in texts:
        try:
            api = rule.check("x", rule.kind(text))
        except ValueError:
            api = None
        try:
            cli = parse(text)
        except argparse.ArgumentTypeError as error:
            assert str(error) == f"{text!r} is not {rule.wanted}"
            cli = None
        assert cli == api, text


def test_validation_imports_nothing_heavy():
    code = "import sys, bilrp._validation; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
