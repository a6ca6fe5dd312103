"""Paired tests: Wilcoxon signed-rank against hand-computed exact p-values and scipy, Holm by hand."""

import numpy as np
import pytest
from scipy import stats

from bilrp.evaluation import EvaluationError, compare_to_reference, holm, wilcoxon_signed_rank
from bilrp.evaluation.significance import format_p


def test_wilcoxon_hand_example_all_differences_one_sign():
    # differences 1..5 all positive: W- = 0; of the 2^5 sign patterns only "all +" and "all -" are as
    # extreme, so the exact two-sided p-value is 2 / 32
    x, y = [2.0, 4.0, 6.0, 8.0, 10.0], [1.0, 2.0, 3.0, 4.0, 5.0]
    statistic, p = wilcoxon_signed_rank(x, y)
    assert statistic == 0.0
    assert p == pytest.approx(2 / 32)


def test_wilcoxon_hand_example_mixed_signs():
    # differences +1, -2, +3, +4, +5, +6: ranks 1..6, W- = 2; patterns with W- <= 2 are {}, {1}, {2}:
    # 3 of 64, two-sided p = 6 / 64
    x = np.array([1.0, 0.0, 3.0, 4.0, 5.0, 6.0])
    y = np.array([0.0, 2.0, 0.0, 0.0, 0.0, 0.0])
    statistic, p = wilcoxon_signed_rank(x, y)
    assert statistic == 2.0
    assert p == pytest.approx(6 / 64)
    reference = stats.wilcoxon(x, y)
    assert (statistic, p) == pytest.approx((reference.statistic, reference.pvalue))


def test_wilcoxon_matches_scipy_on_a_larger_sample():
    generator = np.random.default_rng(3)
    x = generator.normal(size=80)
    y = x + generator.normal(0.2, 1.0, size=80)
    reference = stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
    assert wilcoxon_signed_rank(x, y) == pytest.approx((reference.statistic, reference.pvalue))


def test_identical_samples_give_p_one_and_bad_shapes_raise():
    assert wilcoxon_signed_rank([1.0, 2.0], [1.0, 2.0]) == (0.0, 1.0)
    with pytest.raises(EvaluationError, match="equal length"):
        wilcoxon_signed_rank([1.0, 2.0], [1.0])
    with pytest.raises(EvaluationError, match="empty"):
        wilcoxon_signed_rank([], [])


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 -> 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.2]) == pytest.approx([0.2])


def test_compare_to_reference_tests_every_other_method():
    scores = {
        "bilrp": [1.0, 2.0, 3.0, 4.0, 5.0],
        "random": [2.0, 4.0, 6.0, 8.0, 10.0],
        "hxp": [1.0, 2.0, 3.0, 4.0, 5.0],
    }
    tests = {test.other: test for test in compare_to_reference(scores, "bilrp")}
    assert set(tests) == {"random", "hxp"}
    assert tests["random"].p_value == pytest.approx(2 / 32)
    assert tests["random"].p_holm == pytest.approx(2 * 2 / 32)
    assert tests["random"].mean_difference == pytest.approx(-3.0)
    assert tests["random"].median_difference == pytest.approx(-3.0)
    assert tests["random"].fraction_lower == 1.0
    assert tests["hxp"].p_value == 1.0 and tests["hxp"].fraction_lower == 0.0
    with pytest.raises(EvaluationError, match="reference method 'ij' has no scores"):
        compare_to_reference(scores, "ij")


def test_format_p():
    assert format_p(0.0) == "<1e-300"
    assert format_p(0.0625) == "6.2e-02"
    assert format_p(1.0) == "1.0e+00"
