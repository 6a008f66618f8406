"""System combination in the recipe: frame-level mean of the members' log-likelihoods, and its refusals."""
import numpy as np
import pytest
from absl import app

from tools.recipe import _combinations, _net_seeds, combine_log_likelihoods


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


def test_net_seeds_default_to_the_recipe_seed_and_take_overrides():
    nets = {"C0": "3xReLU64", "C1": "3xReLU64", "C2": "3xReLU64"}
    assert _net_seeds([], nets, 7) == {"C0": 7, "C1": 7, "C2": 7}
    assert _net_seeds(["C1=1", "C2=-3"], nets, 0) == {"C0": 0, "C1": 1, "C2": -3}


@pytest.mark.parametrize("item, message", [
    ("C9=1", "'C9' is not one of the nets"),
    ("C1=one", "integer seed"),
    ("C1", "integer seed"),
])
def test_net_seeds_flag_errors(item, message):
    with pytest.raises(app.UsageError, match=message):
        _net_seeds([item], {"C0": "3xReLU64", "C1": "3xReLU64"}, 0)


def test_train_stage_trains_with_the_nets_own_seed(tmp_path, monkeypatch):
    import types

    import crnn_tf.train.loop
    from crnn_tf.data.augment import AugmentConfig
    from tools import recipe

    seen = []
    monkeypatch.setattr(crnn_tf.train.loop, "train", lambda config: seen.append(config) or {})
    monkeypatch.setattr(recipe, "FLAGS", types.SimpleNamespace(epochs=1, optimizer="adam", lr_initial=1e-3,
                                                               lr_final=1e-4, dropout=0.0, label_smoothing=0.1,
                                                               chunk_length=40, chunk_overlap=10, label_delay=8,
                                                               seed=0))
    monkeypatch.setattr(recipe.common_flags, "augment_from_flags", AugmentConfig)
    features = {"train": {"path": str(tmp_path / "train")}, "dev": {"path": str(tmp_path / "dev")}}
    recipe.train_stage(tmp_path, "C1", "3xReLU64", features, 5)
    assert seen[0].seed == 5 and seen[0].model_spec == "3xReLU64" and seen[0].label_smoothing == 0.1
    assert (seen[0].chunk_length, seen[0].chunk_overlap, seen[0].label_delay) == (40, 10, 8)
