"""The shared temperature fit of the lexical and neighbour experts."""

from __future__ import annotations

import numpy as np
import pytest

from dualexpert.calibration import fit_temperature


def test_temperature_matches_the_accuracy_it_is_fitted_on():
    # every row: class 0 one unit above class 1; right 80% of the time, so the calibrated
    # probability of the top class is 0.8 and T = logit(0.8) / 1 = ln 4
    scores = np.tile([0.0, -1.0], (100, 1))
    target = np.array([0] * 80 + [1] * 20)
    t, loss = fit_temperature([(scores, target)])
    assert t == pytest.approx(np.log(4.0), abs=1e-3)
    assert loss == pytest.approx(-(0.8 * np.log(0.8) + 0.2 * np.log(0.2)), abs=1e-4)
    # pairs with other class counts pool their rows (folds that saw other classes)
    t2, _ = fit_temperature([(scores[:50], target[:50]), (scores[50:], target[50:])])
    assert t2 == pytest.approx(t, abs=1e-3)
    # always right: the fit runs to the bound it is given
    assert fit_temperature([(scores, np.zeros(100, dtype=int))], upper=30.0)[0] > 29.9
