"""Splice: NumPy oracle, golden values, masks, edge cases, serialization."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from crnn_tf.layers import Splice


def splice_reference(x, context, lengths=None):
    """Kaldi splice-feats by explicit loops: frame t gets frames clip(t+j, 0, length-1), j = -k..k."""
    batch, frames, _ = x.shape
    lengths = [frames] * batch if lengths is None else lengths
    out = []
    for b in range(batch):
        last = max(lengths[b] - 1, 0)
        rows = []
        for t in range(frames):
            rows.append(np.concatenate([x[b, min(max(t + j, 0), last)] for j in range(-context, context + 1)]))
        out.append(rows)
    return np.asarray(out, dtype=x.dtype)


def lengths_to_mask(lengths, frames):
    return np.arange(frames)[None, :] < np.asarray(lengths)[:, None]


def test_golden_values():
    x = np.arange(8, dtype="float32").reshape(1, 4, 2)
    expected = np.array(
        [[[0, 1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5], [2, 3, 4, 5, 6, 7], [4, 5, 6, 7, 6, 7]]], dtype="float32"
    )
    np.testing.assert_array_equal(Splice(context=1)(x), expected)


@pytest.mark.parametrize(
    "context, frames",
    [(1, 6), (2, 9), (5, 20), (5, 3), (3, 1)],
    ids=["k1", "k2", "k5", "k5_shorter_than_window", "k3_single_frame"],
)
def test_matches_reference(context, frames):
    x = np.random.default_rng(0).standard_normal((2, frames, 7)).astype("float32")
    np.testing.assert_array_equal(Splice(context)(x), splice_reference(x, context))


def test_context_zero_is_identity():
    x = np.random.default_rng(1).standard_normal((2, 5, 4)).astype("float32")
    np.testing.assert_array_equal(Splice(0)(x), x)


def test_mask_replicates_last_valid_frame():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 8, 5)).astype("float32")
    lengths = [8, 5, 1]
    mask = lengths_to_mask(lengths, 8)
    out = np.asarray(Splice(2)(x, mask=mask))
    np.testing.assert_array_equal(out, splice_reference(x, 2, lengths))
    # Valid frames equal the unpadded sequence's output, whatever the padding holds.
    for b, length in enumerate(lengths):
        np.testing.assert_array_equal(out[b, :length], np.asarray(Splice(2)(x[b : b + 1, :length]))[0])


def test_empty_sequence_reads_first_frame():
    x = np.random.default_rng(3).standard_normal((1, 4, 2)).astype("float32")
    out = np.asarray(Splice(1)(x, mask=np.zeros((1, 4), bool)))
    np.testing.assert_array_equal(out, np.tile(x[:, :1], (1, 4, 3)))


def test_mask_is_passed_on_through_a_model():
    inputs = keras.Input((None, 3))
    masked = keras.layers.Masking(0.0)(inputs)
    spliced = Splice(1)(masked)
    assert spliced.shape == (None, None, 9)
    layer = Splice(1)
    mask = tf.constant([[True, False]])
    assert layer.compute_mask(tf.zeros((1, 2, 3)), mask) is mask


def test_variable_length_in_tf_function():
    layer = Splice(2)
    step = tf.function(layer, input_signature=[tf.TensorSpec((None, None, 3), tf.float32)])
    for frames in (1, 4, 11):
        x = np.random.default_rng(frames).standard_normal((2, frames, 3)).astype("float32")
        np.testing.assert_array_equal(step(x), splice_reference(x, 2))


def test_gradient_counts_the_copies_of_each_frame():
    x = tf.constant(np.random.default_rng(4).standard_normal((1, 4, 2)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(Splice(2)(x))
    # 4 frames x 5 slots: inner frames fill 4 slots, edge frames 6 (their own 4 + 2 replicated-edge slots).
    np.testing.assert_array_equal(tape.gradient(y, x), [[[6, 6], [4, 4], [4, 4], [6, 6]]])


@pytest.mark.parametrize("context", [-1, 1.5])
def test_rejects_bad_context(context):
    with pytest.raises(ValueError, match="context"):
        Splice(context)


def test_get_config_round_trip():
    layer = Splice(3, name="splice_3")
    config = layer.get_config()
    assert config["context"] == 3
    clone = Splice.from_config(config)
    assert clone.get_config() == config
    assert layer.compute_output_shape((None, None, 93)) == (None, None, 7 * 93)


def test_keras_save_reload(tmp_path):
    inputs = keras.Input((None, 4))
    model = keras.Model(inputs, keras.layers.Dense(3)(Splice(2)(inputs)))
    x = np.random.default_rng(5).standard_normal((2, 6, 4)).astype("float32")
    path = tmp_path / "splice.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded.layers[1], Splice) and reloaded.layers[1].context == 2
    np.testing.assert_array_equal(reloaded(x), model(x))
