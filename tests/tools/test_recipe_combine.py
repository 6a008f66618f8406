"""System combination in the recipe: frame-level mean of the members' log-likelihoods, and its refusals."""
import numpy as np
import pytest
from absl import app

from tools.recipe import _combinations, combine_log_likelihoods


def _scores(seed, frames=(4, 7)):
    rng = np.random.default_rng(seed)
    return {"test": {f"u{i}": rng.normal(size=(n, 3)) for i, n in enumerate(frames)}}


def test_combination_is_the_frame_level_mean():
    a, b, c = _scores(0), _scores(1), _scores(2)
    combined = combine_log_likelihoods({"A": a, "B": b, "C": c})
    for utt in ("u0", "u1"):
        expected = (a["test"][utt] + b["test"][utt] + c["test"][utt]) / 3
        np.testing.assert_allclose(combined["test"][utt], expected, rtol=1e-12)
    # A two-way mean of a matrix with itself gives the matrix back; order of members does not matter.
    np.testing.assert_allclose(combine_log_likelihoods({"A": a, "B": a})["test"]["u1"], a["test"]["u1"])
    np.testing.assert_allclose(combine_log_likelihoods({"B": b, "A": a})["test"]["u0"],
                               combine_log_likelihoods({"A": a, "B": b})["test"]["u0"])


def test_combination_refuses_mismatched_members():
    with pytest.raises(ValueError, match=r"test/u1 is \(7, 3\).*but \(6, 3\) in B"):
        combine_log_likelihoods({"A": _scores(0), "B": _scores(1, frames=(4, 6))})
    missing = _scores(1)
    del missing["test"]["u0"]
    with pytest.raises(ValueError, match="B has no log-likelihoods for test/u0"):
        combine_log_likelihoods({"A": _scores(0), "B": missing})


@pytest.mark.parametrize("item, message", [
    ("ENS=FFNN", "at least two nets"),
    ("=FFNN+CLSTM", "at least two nets"),
    ("FFNN=FFNN+CLSTM", "already a net's name"),
])
def test_combine_flag_errors(item, message):
    with pytest.raises(app.UsageError, match=message):
        _combinations([item], {"FFNN": "3xReLU512", "CLSTM": "CLstm8P8+Pool3+Lstm32P16+ReLU64"})
    assert _combinations(["ENS=FFNN+CLSTM"], {}) == {"ENS": ["FFNN", "CLSTM"]}
