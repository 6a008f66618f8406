"""PAPER_MODELS: the paper's 22 networks build at its scale with its #Params (or a documented exception), survive
`.keras`, and docs/models.md shows the zoo table the code generates."""
import pathlib
import re

import keras
import numpy as np
import pytest

from crnn_tf.models import PAPER_MODELS, AcousticModel, parse_spec
from crnn_tf.models.zoo import PAPER_INPUT, zoo_table_markdown

MODELS_DOC = pathlib.Path(__file__).parents[2] / "docs" / "models.md"
NAMES = list(PAPER_MODELS)
SPEC_IDS = [entry.spec for entry in PAPER_MODELS.values()]  # ASCII test ids
# The rows whose printed #Params contradicts the arithmetic every other row satisfies.
EXCEPTIONS = {"2×Lstm2000P750 + 3×ReLU2000", "CLstm384 + Pooling + 3×ReLU2000"}


def doc_section(heading):
    """The text of docs/models.md under `heading`, up to the next heading of the same or a higher level."""
    level = heading.split()[0]
    text = MODELS_DOC.read_text()
    start = text.index(f"\n{heading}\n")
    following = re.compile(rf"^#{{1,{len(level)}}} ", re.MULTILINE).search(text, start + len(heading) + 2)
    return text[start : following.start() if following else len(text)]


@pytest.mark.parametrize("name", NAMES, ids=SPEC_IDS)
def test_params_match_the_paper_or_a_documented_exception(name):
    entry = PAPER_MODELS[name]
    params = entry.count_params()
    if entry.pinned_params is None:
        assert entry.params_match(params), f"{name}: {params:,} params vs the paper's {entry.paper_params:,}"
        return
    assert params == entry.pinned_params
    assert not entry.params_match(params), f"{name} now matches the paper: drop its pinned_params"
    assert entry.notes
    exceptions = doc_section("### Rows that cannot match")
    assert name in exceptions and f"{params:,}" in exceptions, f"{name}: not explained in {MODELS_DOC}"


def test_zoo_holds_the_papers_22_networks():
    entries = list(PAPER_MODELS.values())
    assert [entry.table for entry in entries] == [1] * 3 + [2] * 8 + [3] * 4 + [4] * 3 + [5] * 4
    assert NAMES == [entry.name for entry in entries]
    assert len({entry.spec for entry in entries}) == 22
    for entry in entries:
        assert parse_spec(entry.spec)
        assert entry.paper_params % 100_000 == 0  # printed in millions with one decimal
        assert 30 < entry.paper_cer < 40
    assert {entry.name for entry in entries if entry.pinned_params is not None} == EXCEPTIONS
    assert PAPER_INPUT == {"num_bands": 31, "num_streams": 3, "num_targets": 5529, "context": 5}


def test_docs_show_the_generated_zoo_table():
    assert zoo_table_markdown() in doc_section("## The zoo (`crnn_tf.models.PAPER_MODELS`)"), (
        "docs/models.md is stale: paste the output of `python -m crnn_tf.models.zoo`"
    )


@pytest.mark.parametrize("name", NAMES, ids=SPEC_IDS)
def test_keras_save_reload(name, tmp_path):
    # The paper's structure with a 32-way output layer: the paper's 5529 senones only make the file bigger.
    entry = PAPER_MODELS[name]
    model = entry.build(num_targets=32)
    assert (model.input_shape, model.output_shape) == ((None, None, 93), (None, None, 32))
    # The same count as the weightless paper-scale build, less the 5529 - 32 output units.
    last_hidden_width = model.get_layer("logits").input.shape[-1]
    assert model.count_params() == entry.count_params() - (5529 - 32) * (last_hidden_width + 1)
    x = np.random.default_rng(0).standard_normal((1, 6, 93)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded, AcousticModel) and reloaded.spec == entry.spec
    np.testing.assert_array_equal(reloaded(x), model(x))
