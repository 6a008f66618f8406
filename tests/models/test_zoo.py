"""PAPER_MODELS: every network builds at the paper's scale with the paper's #Params, and survives `.keras`."""
import pathlib

import keras
import numpy as np
import pytest

from crnn_tf.models import PAPER_MODELS, AcousticModel
from crnn_tf.models.zoo import PAPER_INPUT

MODELS_DOC = pathlib.Path(__file__).parents[2] / "docs" / "models.md"
NAMES = list(PAPER_MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_builds_at_paper_scale_with_papers_param_count(name):
    entry = PAPER_MODELS[name]
    model = entry.build()
    assert model.input_shape == (None, None, 93)
    assert model.output_shape == (None, None, 5529)
    params = model.count_params()
    if entry.paper_params is not None and entry.params_match(params):
        return
    # Otherwise docs/models.md must explain the difference (or that the paper's figure is not known).
    doc = MODELS_DOC.read_text()
    assert f"`{name}`" in doc, f"{name}: {params:,} params vs paper {entry.paper_params}; not explained in {MODELS_DOC}"
    assert entry.notes, f"{name}: a mismatch needs a note"


def test_zoo_entries_are_well_formed():
    assert NAMES == [entry.name for entry in PAPER_MODELS.values()]
    for entry in PAPER_MODELS.values():
        assert entry.spec == entry.name
        assert entry.table in (None, 1, 2, 3, 4, 5)
        assert entry.paper_cer is None or 0 < entry.paper_cer < 100
    assert PAPER_INPUT == {"num_bands": 31, "num_streams": 3, "num_targets": 5529, "context": 5}


@pytest.mark.parametrize("name", NAMES)
def test_keras_save_reload(name, tmp_path):
    # The paper's structure with a 32-way output layer: the paper's 5529 senones only make the file bigger.
    model = PAPER_MODELS[name].build(num_targets=32)
    x = np.random.default_rng(0).standard_normal((1, 6, 93)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded, AcousticModel) and reloaded.spec == name
    np.testing.assert_array_equal(reloaded(x), model(x))
