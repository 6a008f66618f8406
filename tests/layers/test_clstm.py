"""CLSTM against an explicit per-patch loop over the same shared PeepholeLSTMP."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from crnn_tf.layers import CLSTM, PeepholeLSTMP
from tests.layers.fixed_weights import fixed_array
from tests.layers.test_peephole_lstmp import WEIGHT_NAMES, numpy_lstmp

NUM_BANDS, NUM_STREAMS, FRAMES = 11, 3, 7


def _features(batch=2, num_bands=NUM_BANDS, num_streams=NUM_STREAMS, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, FRAMES, num_bands * num_streams)).astype(np.float32)


def per_patch_reference(clstm, x, mask=None):
    """Slices every patch out by hand, runs the shared LSTM on each separately, then max-pools by hand."""
    batch = x.shape[0]
    if clstm.streams_first:
        bands = x.reshape(batch, FRAMES, clstm.num_streams, clstm.num_bands).transpose(0, 1, 3, 2)
    else:
        bands = x.reshape(batch, FRAMES, clstm.num_bands, clstm.num_streams)
    lstm = PeepholeLSTMP.from_config({**clstm.patch_lstm.get_config(), "return_state": False})
    lstm.build((None, None, clstm.patch_size * clstm.num_streams))
    lstm.set_weights(clstm.patch_lstm.get_weights())
    outputs = []
    for p in range(clstm.num_patches):
        start = p * clstm.patch_stride
        patch = bands[:, :, start:start + clstm.patch_size, :].reshape(batch, FRAMES, -1)  # band-major
        outputs.append(lstm(patch, mask=mask).numpy())
    pooled = []
    for q in range(clstm.num_pooled_patches):
        group = outputs[q * clstm.pool_size:(q + 1) * clstm.pool_size]
        pooled.append(np.max(np.stack(group), axis=0))
    return np.concatenate(pooled, axis=-1)


@pytest.mark.parametrize("patch_size, patch_stride, pool_size, projection", [
    (4, 1, 3, None),
    (5, 2, 2, 3),
    (3, 1, 1, 2),
    (11, 1, 1, None),
], ids=["overlapping_pool3", "strided_pool2_projection", "no_pool", "one_patch"])
def test_equals_per_patch_loop(patch_size, patch_stride, pool_size, projection):
    clstm = CLSTM(4, projection_units=projection, patch_size=patch_size, patch_stride=patch_stride,
                  pool_size=pool_size, num_bands=NUM_BANDS, peephole_initializer="random_normal")
    x = _features()
    np.testing.assert_allclose(clstm(x).numpy(), per_patch_reference(clstm, x), atol=1e-6)
    expected_patches = (NUM_BANDS - patch_size) // patch_stride + 1
    assert clstm.num_patches == expected_patches
    assert clstm(x).shape == (2, FRAMES, (expected_patches // pool_size) * (projection or 4))


def test_band_major_input_and_masking_equal_per_patch_loop():
    clstm = CLSTM(3, projection_units=2, patch_size=3, pool_size=2, num_bands=6, num_streams=4,
                  streams_first=False, cell_clip=1.0)
    x = _features(batch=3, num_bands=6, num_streams=4, seed=1)
    mask = tf.sequence_mask([FRAMES, 4, 1], FRAMES)
    ours = clstm(x, mask=mask).numpy()
    np.testing.assert_allclose(ours, per_patch_reference(clstm, x, mask=mask), atol=1e-6)
    np.testing.assert_array_equal(ours[1, 4:], 0.0)


def test_stacked_clstm_on_pooled_patch_axis():
    first = CLSTM(4, projection_units=3, patch_size=4, pool_size=2, num_bands=NUM_BANDS)
    hidden = first(_features())
    second = CLSTM(5, patch_size=2, pool_size=1, num_bands=first.num_pooled_patches,
                   num_streams=first.output_units, streams_first=False)
    out = second(hidden)
    assert out.shape == (2, FRAMES, (first.num_pooled_patches - 1) * 5)
    np.testing.assert_allclose(out.numpy(), per_patch_reference(second, hidden.numpy()), atol=1e-6)


def test_gradients_match_per_patch_autodiff():
    """The folded training graph (hand-written BPTT) gives the same weight gradients as TF autodiff."""
    clstm = CLSTM(4, projection_units=3, patch_size=4, pool_size=3, num_bands=NUM_BANDS,
                  peephole_initializer="random_normal")
    x = tf.constant(_features())

    def grads(training):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sin(clstm(x, training=training)))
        return tape.gradient(loss, clstm.trainable_weights)

    for ours, reference in zip(tf.function(lambda: grads(True))(), grads(False)):
        np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_streaming_state_round_trip():
    clstm = CLSTM(4, projection_units=3, patch_size=4, pool_size=3, num_bands=NUM_BANDS, return_state=True)
    x = _features()
    whole, c_whole, r_whole = clstm(x)
    assert c_whole.shape == (2, clstm.num_patches, 4) and r_whole.shape == (2, clstm.num_patches, 3)
    first, c, r = clstm(x[:, :3])
    second, c, r = clstm(x[:, 3:], initial_state=[c, r])
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-6)
    np.testing.assert_allclose(c, c_whole, atol=1e-6)


def test_weights_are_shared_across_patches():
    clstm = CLSTM(6, projection_units=4, patch_size=8, pool_size=3, num_bands=31)
    clstm.build((None, None, 93))
    lstm_params = 24 * 24 + 4 * 24 + 24 + 3 * 6 + 6 * 4
    assert clstm.count_params() == lstm_params  # one LSTM, not one per patch
    assert (clstm.num_patches, clstm.num_pooled_patches) == (24, 8)


def numpy_clstm(x, weights, *, num_streams, patch_size, patch_stride, pool_size, streams_first):
    """Independent float64 CLSTM: every patch through the float64 LSTMP reference, then max over pool groups."""
    batch, frames, width = x.shape
    num_bands = width // num_streams
    if streams_first:
        bands = x.reshape(batch, frames, num_streams, num_bands).transpose(0, 1, 3, 2)
    else:
        bands = x.reshape(batch, frames, num_bands, num_streams)
    arrays = dict(zip(WEIGHT_NAMES, weights), lengths=np.full(batch, frames), cell_clip=np.nan, proj_clip=np.nan)
    outputs = []
    for start in range(0, num_bands - patch_size + 1, patch_stride):
        patch = bands[:, :, start:start + patch_size, :].reshape(batch, frames, -1)  # band-major
        outputs.append(numpy_lstmp({**arrays, "x": patch})[0])
    pooled = [np.max(outputs[q * pool_size:(q + 1) * pool_size], axis=0) for q in range(len(outputs) // pool_size)]
    return np.concatenate(pooled, axis=-1)


# name: (CLSTM arguments, output[1, -1], output sum). Input fixed_array((2, FRAMES, 33), phase=2.0); the i-th weight
# fixed_array(shape, scale=0.5, phase=i). The pins were computed once with numpy_clstm in float64 (the test
# recomputes them too).
GOLDEN = {
    "projection_pool2": (
        dict(units=3, projection_units=2, patch_size=4, pool_size=2),
        [0.5139595, 0.4066195, 0.0103884, -0.0018928, 0.0025597, 0.0212207, 0.1587761, 0.3338224], 21.6253221,
    ),
    "band_major_strided": (
        dict(units=3, patch_size=3, patch_stride=2, pool_size=1, streams_first=False),
        [0.067474, 0.1515188, 0.1411566, 0.0811458, 0.1648261, 0.1424993, 0.0757668, 0.1575709, 0.1426515,
         0.0673817, 0.1513668, 0.1411401, 0.0809775, 0.1647173, 0.142478], 23.9032440,
    ),
}


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_values(name):
    kwargs, last_frame, total = GOLDEN[name]
    clstm = CLSTM(num_bands=NUM_BANDS, **kwargs)
    x = fixed_array((2, FRAMES, NUM_BANDS * NUM_STREAMS), phase=2.0)
    clstm.build(x.shape)
    weights = [fixed_array(w.shape, scale=0.5, phase=i) for i, w in enumerate(clstm.get_weights())]
    clstm.set_weights(weights)
    out = clstm(x).numpy()
    np.testing.assert_allclose(out[1, -1], last_frame, atol=2e-6)
    np.testing.assert_allclose(out.sum(), total, atol=1e-4)
    reference = numpy_clstm(x.astype(np.float64), [w.astype(np.float64) for w in weights], num_streams=NUM_STREAMS,
                            patch_size=clstm.patch_size, patch_stride=clstm.patch_stride, pool_size=clstm.pool_size,
                            streams_first=clstm.streams_first)
    np.testing.assert_allclose(reference[1, -1], last_frame, rtol=0, atol=1e-7)  # the pins are numpy_clstm's
    np.testing.assert_allclose(reference.sum(), total, rtol=0, atol=1e-6)


def test_keras_file_round_trip(tmp_path):
    inputs = keras.Input((None, 93))
    outputs = CLSTM(8, projection_units=4, num_bands=31, cell_clip=5.0)(inputs)
    model = keras.Model(inputs, outputs)
    path = tmp_path / "clstm.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    x = _features(num_bands=31)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert reloaded.layers[-1].get_config()["cell_clip"] == 5.0


@pytest.mark.parametrize("kwargs, input_dim, message", [
    ({"patch_size": 12, "num_bands": 11}, 33, "wider than the 11 bands"),
    ({"patch_size": 10, "pool_size": 3, "num_bands": 11}, 33, "cannot fill a pool of 3"),
    ({"num_bands": 11}, 30, "expected 11 bands x 3 streams = 33"),
    ({}, 31, "not a multiple of num_streams 3"),
    ({"patch_stride": 0}, 33, "patch_stride must be >= 1"),
], ids=["patch_too_wide", "pool_too_big", "wrong_input_dim", "indivisible_input", "zero_stride"])
def test_bad_geometry(kwargs, input_dim, message):
    with pytest.raises(ValueError, match=message):
        CLSTM(4, **kwargs)(np.zeros((1, 2, input_dim), np.float32))
