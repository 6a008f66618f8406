"""Maxout: NumPy oracle, golden values, masks, serialization."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from crnn_tf.layers import Maxout
from tests.layers.fixed_weights import fixed_array, fixed_initializer


def maxout_reference(x, kernel, bias, units, group_size):
    pieces = x @ kernel + bias
    return pieces.reshape(*pieces.shape[:-1], units, group_size).max(axis=-1)


def fixed_maxout(units, group_size, input_dim, **kwargs):
    """A Maxout whose weights are `fixed_array`s: no random initialiser, so no RNG change can move its outputs."""
    pieces = units * group_size
    return Maxout(
        units,
        group_size=group_size,
        kernel_initializer=fixed_initializer((input_dim, pieces), scale=0.8),
        bias_initializer=fixed_initializer((pieces,), scale=0.1, phase=1.0),
        **kwargs,
    )


# name: (input shape, units, group_size, output). Input fixed_array(shape, phase=2.0), weights as fixed_maxout's.
# The outputs were computed once with maxout_reference in float64 and pinned (the test recomputes them too).
GOLDEN = {
    "sequence_g2": ((1, 2, 4), 3, 2, [[[-0.1713831, 0.3333109, 0.4040034], [0.5628274, -0.033814, -0.4809749]]]),
    "matrix_g3": ((2, 5), 2, 3, [[0.4709118, 0.0790341], [-0.0772242, 0.1387301]]),
}


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_values(name):
    shape, units, group_size, expected = GOLDEN[name]
    x = fixed_array(shape, phase=2.0)
    np.testing.assert_allclose(fixed_maxout(units, group_size, shape[-1])(x), expected, rtol=1e-6, atol=1e-6)
    kernel = fixed_array((shape[-1], units * group_size), scale=0.8).astype(np.float64)
    bias = fixed_array((units * group_size,), scale=0.1, phase=1.0).astype(np.float64)
    reference = maxout_reference(x.astype(np.float64), kernel, bias, units, group_size)
    np.testing.assert_allclose(reference, expected, rtol=0, atol=1e-7)  # the pins are the float64 reference's


@pytest.mark.parametrize(
    "shape, units, group_size",
    [((2, 5, 6), 4, 3), ((3, 6), 5, 2), ((1, 4, 9), 7, 1), ((2, 2, 3, 8), 2, 4)],
    ids=["sequence_g3", "matrix_g2", "g1_is_dense", "rank4_g4"],
)
def test_matches_reference(shape, units, group_size):
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    layer = fixed_maxout(units, group_size, shape[-1])
    out = np.asarray(layer(x))
    kernel, bias = (np.asarray(w) for w in layer.get_weights())
    assert kernel.shape == (shape[-1], units * group_size)
    np.testing.assert_allclose(out, maxout_reference(x, kernel, bias, units, group_size), rtol=1e-5, atol=1e-6)


def test_param_count_and_weight_order():
    layer = Maxout(800, group_size=3)
    layer.build((None, None, 1023))
    assert layer.count_params() == (1023 + 1) * 800 * 3
    assert [w.path.split("/")[-1] for w in layer.weights] == ["kernel", "bias"]


def test_gradient_reaches_only_the_winning_piece():
    layer = Maxout(1, group_size=3, kernel_initializer="zeros", bias_initializer="zeros")
    layer.build((None, 2))
    layer.bias.assign([0.0, 2.0, 1.0])
    x = tf.ones((1, 2))
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(layer(x))
    kernel_grad, bias_grad = tape.gradient(y, [layer.kernel, layer.bias])
    np.testing.assert_array_equal(bias_grad, [0, 1, 0])
    np.testing.assert_array_equal(kernel_grad, [[0, 1, 0], [0, 1, 0]])


def test_passes_mask_on():
    inputs = keras.Input((None, 4))
    masked = keras.layers.Masking(0.0)(inputs)
    layer = Maxout(3)
    out = layer(masked)
    assert out.shape == (None, None, 3)
    assert layer.supports_masking


@pytest.mark.parametrize("units, group_size", [(0, 3), (4, 0)])
def test_rejects_bad_sizes(units, group_size):
    with pytest.raises(ValueError, match="positive"):
        Maxout(units, group_size=group_size)


def test_get_config_round_trip():
    layer = Maxout(5, group_size=4, kernel_regularizer="l2", name="maxout_5")
    config = layer.get_config()
    assert config["units"] == 5 and config["group_size"] == 4
    assert Maxout.from_config(config).get_config() == config


def test_keras_save_reload(tmp_path):
    inputs = keras.Input((None, 6))
    model = keras.Model(inputs, Maxout(4, group_size=3)(inputs))
    x = np.random.default_rng(1).standard_normal((2, 5, 6)).astype("float32")
    path = tmp_path / "maxout.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_array_equal(reloaded(x), model(x))
