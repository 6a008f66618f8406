"""from_spec: shapes, splicing, frequency layouts, masks, semantic spec errors, serialization, dropout."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from crnn_tf import layers as crnn_layers
from crnn_tf.models import AcousticModel, SpecError, from_spec

SMALL = {"num_bands": 12, "num_streams": 3, "num_targets": 7, "context": 2}


def features(batch=2, frames=9, dims=36, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, frames, dims)).astype("float32")


@pytest.mark.parametrize(
    "spec", ["2xReLU16", "Maxout8G2+ReLU4", "Conv6+Pool2+ReLU8", "Lstm8P4+ReLU8", "CLstm6P3+Pool2+ReLU8"]
)
def test_per_frame_logits(spec):
    model = from_spec(spec, **SMALL)
    assert model.input_shape == (None, None, 36)
    x = features()
    assert model(x).shape == (2, 9, 7)
    assert model.spec == spec
    # One graph for every batch size and length.
    graph = tf.function(model, input_signature=[tf.TensorSpec((None, None, 36), tf.float32)])
    np.testing.assert_allclose(graph(x), model(x), rtol=1e-5, atol=1e-5)
    assert graph(features(batch=1, frames=4)).shape == (1, 4, 7)


@pytest.mark.parametrize(
    "spec, context, spliced",
    [("ReLU8", 2, 2), ("Maxout8", 3, 3), ("Conv4", 1, 1), ("ReLU8", 0, 0), ("Lstm8", 5, 0), ("CLstm4", 5, 0)],
)
def test_splices_only_feed_forward_first_nets(spec, context, spliced):
    model = from_spec(spec, **{**SMALL, "context": context})
    assert model.spliced_context == spliced
    splices = [layer for layer in model.layers if isinstance(layer, crnn_layers.Splice)]
    assert [layer.context for layer in splices] == ([spliced] if spliced else [])


def test_frequency_layouts_chain():
    model = from_spec("2x(Conv256+Pool3)+ReLU8", num_targets=5)
    first, second = (layer for layer in model.layers if isinstance(layer, crnn_layers.FrequencyConvPool))
    assert (first.num_bands, first.num_streams, first.streams_first, first.patch_size) == (31, 33, True, 8)
    assert (second.num_bands, second.num_streams, second.streams_first, second.patch_size) == (8, 256, False, 4)
    clstm_model = from_spec("2x(CLstm16+Pool3)+ReLU8", num_targets=5)
    first, second = (layer for layer in clstm_model.layers if isinstance(layer, crnn_layers.CLSTM))
    assert (first.num_bands, first.num_streams, first.streams_first) == (31, 3, True)
    assert (second.num_bands, second.num_streams, second.streams_first, second.patch_size) == (8, 16, False, 4)


def test_patch_options_reach_the_layer():
    model = from_spec("CLstm8P4W5S2+Pool2+ReLU8", num_targets=5)
    (clstm,) = (layer for layer in model.layers if isinstance(layer, crnn_layers.CLSTM))
    assert (clstm.patch_size, clstm.patch_stride, clstm.pool_size, clstm.projection_units) == (5, 2, 2, 4)
    assert clstm.name == "layer1_clstm8p4w5s2_pool2"


@pytest.mark.parametrize(
    "spec, column, fragment",
    [
        ("Lstm16+CLstm8", 8, "CLstm8 needs bands to convolve over, but Lstm16 outputs none"),
        ("ReLU8+Conv4", 7, "Conv4 needs bands"),
        ("Conv8+Pool3+Conv8W8+Pool3", 13, "8 bands give 1 patch(es) of 8 bands (stride 1)"),
        ("Conv8W40", 1, "31 bands give 0 patch(es)"),
        ("CLstm8+Pool3+CLstm8W8+Pool3", 14, "cannot fill a pool of 3"),
    ],
)
def test_specs_that_do_not_fit_the_input(spec, column, fragment):
    with pytest.raises(SpecError) as info:
        from_spec(spec, num_targets=5)
    assert info.value.column + 1 == column
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "spec", ["2xReLU8", "Maxout8G2+ReLU4", "Conv6+Pool2+ReLU8", "Lstm8P4+ReLU4", "CLstm4+Pool2+ReLU4"]
)
def test_mask_value_makes_padding_invisible(spec):
    model = from_spec(spec, **SMALL, mask_value=0.0)
    x = features(batch=1, frames=6)
    padded = np.concatenate([x, np.zeros((1, 4, 36), "float32")], axis=1)
    np.testing.assert_allclose(model(padded)[:, :6], model(x), rtol=1e-5, atol=1e-5)


def test_config_and_default_name():
    model = from_spec("2x(Conv8+Pool3)+ReLU4", num_targets=5, context=1)
    assert model.name == "2x_Conv8_Pool3_ReLU4"
    config = model.get_config()
    assert config == {
        "name": "2x_Conv8_Pool3_ReLU4",
        "trainable": True,
        "spec": "2x(Conv8+Pool3)+ReLU4",
        "num_bands": 31,
        "num_streams": 3,
        "num_targets": 5,
        "context": 1,
        "mask_value": None,
        "dropout": 0.0,
    }
    clone = AcousticModel.from_config(config)
    assert clone.count_params() == model.count_params()
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]


def test_keras_save_reload_keeps_spec(tmp_path):
    model = from_spec("Conv6+Pool2+Maxout8G2", **SMALL, mask_value=0.0, name="tiny")
    path = tmp_path / "tiny.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded, AcousticModel)
    assert (reloaded.spec, reloaded.name, reloaded.spliced_context) == (model.spec, "tiny", 2)
    x = features()
    np.testing.assert_array_equal(reloaded(x), model(x))


# Every block kind: feed-forward-first (Conv + pool, Maxout, ReLU) and recurrent-first (CLstm + pool, Lstm, ReLU).
DROPOUT_SPECS = ["Conv6+Pool2+Maxout8G2+ReLU8", "CLstm6P3+Pool2+Lstm8P4+ReLU8"]


def _seeded(spec, seed=3, **kwargs):
    keras.utils.set_random_seed(seed)
    return from_spec(spec, **SMALL, **kwargs)


@pytest.mark.parametrize("spec", DROPOUT_SPECS)
def test_dropout_zero_is_the_model_without_dropout(spec):
    plain, zero = _seeded(spec), _seeded(spec, dropout=0.0)
    assert [layer.name for layer in zero.layers] == [layer.name for layer in plain.layers]
    assert not [layer for layer in zero.layers if isinstance(layer, keras.layers.Dropout)]
    assert zero.count_params() == plain.count_params() and zero.dropout == 0.0
    x = features()
    np.testing.assert_array_equal(zero(x), plain(x))
    np.testing.assert_array_equal(zero(x, training=True), plain(x, training=True))  # nothing random to train with


@pytest.mark.parametrize("spec", DROPOUT_SPECS)
def test_dropout_follows_every_hidden_block_and_only_trains(spec):
    plain, dropped = _seeded(spec), _seeded(spec, dropout=0.5)
    layers = dropped.layers
    dropouts = [i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Dropout)]
    blocks = [i for i, layer in enumerate(layers) if layer.name.startswith("layer") and i not in dropouts]
    # Right after each block, so none on the features (or the splice), and the last one feeds the logits.
    assert dropouts == [i + 1 for i in blocks] and len(blocks) == 3
    assert [layers[i].name for i in dropouts] == [f"{layers[i].name}_dropout" for i in blocks]
    assert layers[-1].name == "logits" and dropouts[-1] == len(layers) - 2
    assert dropped.count_params() == plain.count_params()
    # The same seed draws the same weights with or without dropout (the dropout seeds do not use up the weights').
    for a, b in zip(dropped.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = features(batch=4, frames=12)
    inference = dropped(x)
    np.testing.assert_array_equal(inference, plain(x))
    np.testing.assert_array_equal(dropped(x, training=False), inference)
    trained = dropped(x, training=True)
    assert np.abs(np.asarray(trained) - np.asarray(inference)).max() > 1e-3
    assert np.abs(np.asarray(dropped(x, training=True)) - np.asarray(trained)).max() > 1e-3  # new masks each call


@pytest.mark.parametrize("spec", DROPOUT_SPECS)
@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_dropout_zeroes_the_rate_of_hidden_activations(spec, rate):
    model = _seeded(spec, dropout=rate)
    pairs = [(model.layers[i - 1], layer) for i, layer in enumerate(model.layers)
             if isinstance(layer, keras.layers.Dropout)]
    # One training pass that shows each block's output next to its dropped copy.
    probe = keras.Model(model.input, [tensor for pair in pairs for tensor in (pair[0].output, pair[1].output)])
    outputs = [np.asarray(t) for t in probe(features(batch=16, frames=40, seed=1), training=True)]
    for index, (block, dropped) in enumerate(zip(outputs[::2], outputs[1::2])):
        live = block != 0  # ReLU and Maxout zero some outputs themselves
        zeroed = np.mean(dropped[live] == 0)
        # A Bernoulli(rate) count over live.sum() activations: 5 standard deviations.
        assert abs(zeroed - rate) < 5 * math.sqrt(rate * (1 - rate) / live.sum()), (pairs[index][0].name, zeroed)
        kept = dropped != 0
        np.testing.assert_allclose(dropped[kept], block[kept] / (1 - rate), rtol=1e-5)
    # Dropout stays outside the recurrence: in training the first block (a CLstm or Conv on the features) computes
    # its inference output (up to the training kernels' rounding).
    inference = np.asarray(probe(features(batch=16, frames=40, seed=1))[0])
    np.testing.assert_allclose(outputs[0], inference, rtol=1e-5, atol=1e-6)


def test_dropout_rate_survives_config_and_keras_save(tmp_path):
    model = _seeded("CLstm6P3+Pool2+ReLU8", dropout=0.25, mask_value=0.0, name="dropped")
    config = model.get_config()
    assert config["dropout"] == 0.25
    clone = AcousticModel.from_config(config)
    assert clone.dropout == 0.25 and clone.get_config() == config
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    path = tmp_path / "dropped.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded, AcousticModel) and reloaded.dropout == 0.25
    x = features()
    np.testing.assert_array_equal(reloaded(x), model(x))
    assert np.abs(np.asarray(reloaded(x, training=True)) - np.asarray(model(x))).max() > 1e-3


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), "half", None])
def test_invalid_dropout_is_a_value_error_naming_it(rate):
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        from_spec("ReLU8", **SMALL, dropout=rate)
