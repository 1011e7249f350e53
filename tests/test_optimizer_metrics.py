from __future__ import annotations

import dspy
import pytest
from dualexpert.optimizers import exact_match, feedback_metric, hierarchical_credit, reciprocal_rank

EX = dspy.Example(product="glitter cake topper", gold=["Home", "Party", "Cake Toppers"])


def pred(path, ranking=()):
    return dspy.Prediction(path=list(path), category=" > ".join(path), ranking=list(ranking))


def test_exact_and_hierarchical():
    assert exact_match(EX, pred(["Home", "Party", "Cake Toppers"])) == 1.0
    assert exact_match(EX, pred(["Home", "Party", "Balloons"])) == 0.0
    assert hierarchical_credit(EX, pred(["Home", "Party", "Balloons"])) == pytest.approx(2 / 3)
    assert hierarchical_credit(EX, pred(["Home", "Kitchen", "Cake Toppers"])) == pytest.approx(
        1 / 3
    )
    assert hierarchical_credit(EX, pred(["Food", "Baking", "Toppers"])) == 0.0


def test_mrr():
    r = ["Food > Baking > Sprinkles", "Home > Party > Cake Toppers"]
    assert reciprocal_rank(EX, pred(["Food", "Baking", "Sprinkles"], r)) == 0.5
    assert reciprocal_rank(EX, pred(["x"], ["a > b"])) == 0.0


def test_feedback_says_what_went_wrong():
    fb = feedback_metric(
        EX,
        pred(
            ["Food", "Baking", "Sprinkles"],
            ["Food > Baking > Sprinkles", "Home > Party > Cake Toppers"],
        ),
    )
    assert fb.score == 0.0
    assert (
        "chose 'Food > Baking > Sprinkles' instead of 'Home > Party > Cake Toppers'" in fb.feedback
    )
    assert "differ already at the top level" in fb.feedback and "ranked 2" in fb.feedback
    near = feedback_metric(EX, pred(["Home", "Party", "Balloons"]))
    assert near.score == pytest.approx(2 / 3) and "share the branch 'Home > Party'" in near.feedback
    assert feedback_metric(EX, pred(EX.gold)).score == 1.0
