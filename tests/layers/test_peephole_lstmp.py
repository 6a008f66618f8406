"""PeepholeLSTMP against TF1's LSTMCell, an independent NumPy reference, keras.layers.LSTM and golden values."""
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from crnn_tf.layers import PeepholeLSTMP

BATCH, FRAMES, INPUT_DIM, UNITS, PROJ = 3, 6, 5, 4, 3
LENGTHS = np.array([FRAMES, FRAMES - 2, 2], np.int32)

# name: (use_peepholes, projection_units, cell_clip, projection_clip, masked)
CASES = {
    "plain": (False, None, None, None, False),
    "peepholes": (True, None, None, None, False),
    "projection": (False, PROJ, None, None, False),
    "peepholes_projection_masked": (True, PROJ, None, None, True),
    "clipped_masked": (True, PROJ, 0.4, 0.25, True),
    "cell_clip_only": (True, None, 0.3, None, False),
    # A projection clip well under the unclipped |r| (0.13 at most in "clipped_masked"), so it engages often.
    "projection_clip_engaged": (True, PROJ, None, 0.04, True),
}


def _case_arrays(name):
    """Inputs, weights in PeepholeLSTMP's layout and loss weights for a case (fixed seed per case)."""
    use_peepholes, proj, cell_clip, proj_clip, masked = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    out_dim = proj or UNITS

    def uniform(*shape, scale=0.6):
        return rng.uniform(-scale, scale, shape).astype(np.float32)

    arrays = {
        "x": uniform(BATCH, FRAMES, INPUT_DIM, scale=1.5),
        "kernel": uniform(INPUT_DIM, 4 * UNITS),
        "recurrent_kernel": uniform(out_dim, 4 * UNITS),
        "bias": uniform(4 * UNITS, scale=0.3),
        "w_y": uniform(BATCH, FRAMES, out_dim, scale=1.0),
        "w_c": uniform(BATCH, UNITS, scale=1.0),
        "w_r": uniform(BATCH, out_dim, scale=1.0),
        "lengths": LENGTHS if masked else np.full(BATCH, FRAMES, np.int32),
        "cell_clip": np.float32(np.nan if cell_clip is None else cell_clip),
        "proj_clip": np.float32(np.nan if proj_clip is None else proj_clip),
    }
    if use_peepholes:
        arrays["peephole_kernel"] = uniform(3, UNITS, scale=0.8)
    if proj:
        arrays["projection_kernel"] = uniform(UNITS, proj, scale=0.9)
    return arrays


WEIGHT_NAMES = ("kernel", "recurrent_kernel", "bias", "peephole_kernel", "projection_kernel")


def _layer_for(name, **kwargs):
    use_peepholes, proj, cell_clip, proj_clip, _ = CASES[name]
    arrays = _case_arrays(name)
    layer = PeepholeLSTMP(UNITS, projection_units=proj, use_peepholes=use_peepholes, cell_clip=cell_clip,
                          projection_clip=proj_clip, return_state=True, **kwargs)
    layer.build((None, None, INPUT_DIM))
    layer.set_weights([arrays[k] for k in WEIGHT_NAMES if k in arrays])
    return layer, arrays


def _run_ours(name, training=True, **kwargs):
    """Outputs, final state and gradients of the case's loss, keyed like the oracles' results."""
    layer, arrays = _layer_for(name, **kwargs)
    x = tf.constant(arrays["x"])
    mask = tf.sequence_mask(arrays["lengths"], FRAMES)

    @tf.function
    def run():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y, c, r = layer(x, mask=mask, training=training)
            loss = (tf.reduce_sum(y * arrays["w_y"]) + tf.reduce_sum(c * arrays["w_c"])
                    + tf.reduce_sum(r * arrays["w_r"]))
        return y, c, r, tape.gradient(loss, [x] + layer.trainable_weights)

    y, c, r, grads = run()
    result = {"y": y.numpy(), "c": c.numpy(), "r": r.numpy(), "d_x": grads[0].numpy()}
    present = [k for k in WEIGHT_NAMES if k in arrays]
    for key, grad in zip(present, grads[1:]):
        result["d_" + key] = grad.numpy()
    return result


@pytest.fixture(scope="module")
def tf1_results(tmp_path_factory):
    """All cases through TF1's LSTMCell in ONE subprocess (legacy tf-keras cannot share a process with Keras 3)."""
    workdir = tmp_path_factory.mktemp("tf1_oracle")
    args = []
    for name in CASES:
        np.savez(workdir / f"{name}.npz", **_case_arrays(name))
        args += [str(workdir / f"{name}.npz"), str(workdir / f"{name}.out.npz")]
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    script = pathlib.Path(__file__).with_name("tf1_lstmcell_oracle.py")
    proc = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {name: dict(np.load(workdir / f"{name}.out.npz")) for name in CASES}


# The three graphs the layer can build: hand-written BPTT, batch-major inference, feature-major inference.
GRAPHS = {
    "train_graph": dict(training=True),
    "inference_graph": dict(training=False),
    "feature_major_inference_graph": dict(training=False, feature_major_inference=True),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("graph", list(GRAPHS))
def test_matches_tf1_lstmcell(tf1_results, name, graph):
    ours = _run_ours(name, **GRAPHS[graph])
    theirs = tf1_results[name]
    assert set(ours) == set(theirs)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], atol=1e-5, rtol=0, err_msg=key)


def numpy_lstmp(arrays):
    """Independent float64 reference of eqs. (3)-(8) with sequence lengths; returns (y, c_T, r_T)."""
    a = {k: np.asarray(v, np.float64) for k, v in arrays.items()}
    x, lengths = a["x"], arrays["lengths"]
    n = a["kernel"].shape[1] // 4
    peep = a.get("peephole_kernel", np.zeros((3, n)))
    proj = a.get("projection_kernel")
    cell_clip, proj_clip = float(arrays["cell_clip"]), float(arrays["proj_clip"])
    out_dim = n if proj is None else proj.shape[1]
    c = np.zeros((x.shape[0], n))
    r = np.zeros((x.shape[0], out_dim))
    ys = np.zeros((x.shape[0], x.shape[1], out_dim))

    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-v))

    for t in range(x.shape[1]):
        z = x[:, t] @ a["kernel"] + r @ a["recurrent_kernel"] + a["bias"]
        zi, zf, zc, zo = np.split(z, 4, axis=1)
        i = sigmoid(zi + peep[0] * c)
        f = sigmoid(zf + peep[1] * c)
        c_new = f * c + i * np.tanh(zc)
        if not np.isnan(cell_clip):
            c_new = np.clip(c_new, -cell_clip, cell_clip)
        o = sigmoid(zo + peep[2] * c_new)
        m = o * np.tanh(c_new)
        r_new = m if proj is None else m @ proj
        if not np.isnan(proj_clip):
            r_new = np.clip(r_new, -proj_clip, proj_clip)
        valid = (t < lengths)[:, None]
        c = np.where(valid, c_new, c)
        r = np.where(valid, r_new, r)
        ys[:, t] = np.where(valid, r_new, 0.0)
    return ys, c, r


def _numpy_loss(arrays):
    y, c, r = numpy_lstmp(arrays)
    return (y * arrays["w_y"]).sum() + (c * arrays["w_c"]).sum() + (r * arrays["w_r"]).sum()


def _finite_difference_gradient(arrays, key, eps=1e-6):
    base = {k: (np.asarray(v, np.float64) if k not in ("lengths",) else v) for k, v in arrays.items()}
    grad = np.zeros(base[key].shape)
    flat = base[key].reshape(-1)
    for index in range(flat.size):
        saved = flat[index]
        flat[index] = saved + eps
        plus = _numpy_loss(base)
        flat[index] = saved - eps
        minus = _numpy_loss(base)
        flat[index] = saved
        grad.reshape(-1)[index] = (plus - minus) / (2 * eps)
    return grad


@pytest.mark.parametrize("name", list(CASES))
def test_matches_numpy_reference(name):
    ours = _run_ours(name)
    arrays = _case_arrays(name)
    y, c, r = numpy_lstmp(arrays)
    np.testing.assert_allclose(ours["y"], y, atol=1e-5)
    np.testing.assert_allclose(ours["c"], c, atol=1e-5)
    np.testing.assert_allclose(ours["r"], r, atol=1e-5)
    for key in ["x"] + [k for k in WEIGHT_NAMES if k in arrays]:
        np.testing.assert_allclose(ours["d_" + key], _finite_difference_gradient(arrays, key), atol=1e-5,
                                   err_msg=key)


@pytest.mark.parametrize("name", ["peepholes_projection_masked", "clipped_masked"])
@pytest.mark.parametrize("graph", list(GRAPHS))
def test_unrolled_equals_while_loop(name, graph):
    looped, unrolled = _run_ours(name, **GRAPHS[graph]), _run_ours(name, unroll=True, **GRAPHS[graph])
    for key in looped:
        np.testing.assert_allclose(unrolled[key], looped[key], atol=1e-6, err_msg=key)


def test_equals_keras_lstm_without_peepholes_or_projection():
    x = np.random.default_rng(7).normal(size=(2, 9, 6)).astype(np.float32)
    mask = np.array([[True] * 9, [True] * 5 + [False] * 4])
    reference = keras.layers.LSTM(5, return_sequences=True)
    expected = reference(x, mask=mask).numpy()
    ours = PeepholeLSTMP(5, use_peepholes=False)
    ours.build(x.shape)
    ours.set_weights(reference.get_weights())  # same layout: kernel, recurrent_kernel, bias; gates i, f, c, o
    np.testing.assert_allclose(ours(x, mask=mask).numpy()[0], expected[0], atol=1e-6)
    np.testing.assert_allclose(ours(x, mask=mask).numpy()[1, :5], expected[1, :5], atol=1e-6)
    np.testing.assert_array_equal(ours(x, mask=mask).numpy()[1, 5:], 0.0)  # padded frames output zeros


# Case "clipped_masked": y[1, 3], c[2] and d_peephole_kernel summed over units, computed once with numpy_lstmp and
# _finite_difference_gradient in float64 and pinned (the test recomputes them too). The case's arrays come from
# NumPy and reach the layer through set_weights: no Keras initialiser or RNG is involved.
GOLDEN_CLIPPED_MASKED = {
    "y": [-0.061457, -0.080699, 0.065291],
    "c": [-0.043296, -0.389874, 0.4, 0.309429],
    "d_peephole_kernel": [0.007647, 0.012929, 0.058235],
}


def test_golden_values():
    """Fixed weights and inputs -> frozen outputs: guards the equations against silent change."""
    ours = _run_ours("clipped_masked")
    np.testing.assert_allclose(ours["y"][1, 3], GOLDEN_CLIPPED_MASKED["y"], atol=2e-6)
    np.testing.assert_allclose(ours["c"][2], GOLDEN_CLIPPED_MASKED["c"], atol=2e-6)
    np.testing.assert_allclose(ours["d_peephole_kernel"].sum(axis=1), GOLDEN_CLIPPED_MASKED["d_peephole_kernel"],
                               atol=2e-6)
    arrays = _case_arrays("clipped_masked")
    y, c, _ = numpy_lstmp(arrays)
    reference = {"y": y[1, 3], "c": c[2],
                 "d_peephole_kernel": _finite_difference_gradient(arrays, "peephole_kernel").sum(axis=1)}
    for key, pinned in GOLDEN_CLIPPED_MASKED.items():  # the pins are the float64 reference's, to 6 decimals
        np.testing.assert_allclose(reference[key], pinned, rtol=0, atol=6e-7, err_msg=key)


@pytest.mark.parametrize("feature_major", [False, True], ids=["batch_major", "feature_major"])
def test_padded_frames_change_neither_outputs_nor_state(feature_major):
    layer, arrays = _layer_for("peepholes_projection_masked", feature_major_inference=feature_major)
    x = arrays["x"][1:2]
    length = int(LENGTHS[1])
    garbage = x.copy()
    garbage[:, length:] = 1e3
    mask = tf.sequence_mask([length], FRAMES)
    y_padded, c_padded, r_padded = layer(garbage, mask=mask)
    y_short, c_short, r_short = layer(x[:, :length])
    np.testing.assert_allclose(y_padded[:, :length], y_short, atol=1e-6)
    np.testing.assert_array_equal(y_padded[:, length:], 0.0)
    np.testing.assert_allclose(c_padded, c_short, atol=1e-6)
    np.testing.assert_allclose(r_padded, r_short, atol=1e-6)


@pytest.mark.parametrize("feature_major", [False, True], ids=["batch_major", "feature_major"])
def test_chunked_streaming_equals_whole_sequence(feature_major):
    layer, arrays = _layer_for("clipped_masked", feature_major_inference=feature_major)
    x = arrays["x"]
    y_whole, c_whole, r_whole = layer(x)
    state, outputs = None, []
    for start in range(0, FRAMES, 4):
        y, c, r = layer(x[:, start:start + 4], initial_state=state)
        outputs.append(y)
        state = [c, r]
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), y_whole, atol=1e-6)
    np.testing.assert_allclose(state[0], c_whole, atol=1e-6)
    np.testing.assert_allclose(state[1], r_whole, atol=1e-6)


def test_last_output_without_return_sequences_is_last_valid_frame():
    layer, arrays = _layer_for("peepholes_projection_masked")
    last = PeepholeLSTMP.from_config({**layer.get_config(), "return_sequences": False, "return_state": False})
    last.build((None, None, INPUT_DIM))
    last.set_weights(layer.get_weights())
    mask = tf.sequence_mask(LENGTHS, FRAMES)
    y, _, _ = layer(arrays["x"], mask=mask)
    expected = np.stack([y[b, LENGTHS[b] - 1] for b in range(BATCH)])
    np.testing.assert_allclose(last(arrays["x"], mask=mask), expected, atol=1e-6)


def test_weight_layout_and_shapes():
    layer, _ = _layer_for("clipped_masked")
    assert [tuple(w.shape) for w in layer.get_weights()] == [
        (INPUT_DIM, 4 * UNITS), (PROJ, 4 * UNITS), (4 * UNITS,), (3, UNITS), (UNITS, PROJ)]
    assert layer.count_params() == INPUT_DIM * 16 + PROJ * 16 + 16 + 12 + UNITS * PROJ
    assert layer.compute_output_shape((2, 7, INPUT_DIM)) == [(2, 7, PROJ), (2, UNITS), (2, PROJ)]


def test_forget_bias_initialised_to_one():
    layer = PeepholeLSTMP(4)
    layer.build((None, None, 3))
    np.testing.assert_array_equal(layer.bias.numpy(), [0] * 4 + [1] * 4 + [0] * 8)


def test_config_round_trip_and_keras_file(tmp_path):
    inputs = keras.Input((None, INPUT_DIM))
    outputs = PeepholeLSTMP(UNITS, projection_units=PROJ, cell_clip=3.0, projection_clip=2.0)(inputs)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(3).normal(size=(2, 7, INPUT_DIM)).astype(np.float32)
    path = tmp_path / "lstmp.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
    layer = reloaded.layers[-1]
    assert (layer.units, layer.projection_units, layer.cell_clip, layer.projection_clip) == (UNITS, PROJ, 3.0, 2.0)


def test_trains_under_fit_with_masking():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 10, 4)).astype(np.float32)
    x[:, 7:] = 0.0
    targets = (np.cumsum(x[..., :1], axis=1) > 0).astype(np.float32)
    model = keras.Sequential([keras.Input((10, 4)), keras.layers.Masking(0.0),
                              PeepholeLSTMP(8, projection_units=4), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.05), "mse")
    history = model.fit(x, targets, epochs=15, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]


@pytest.mark.parametrize("kwargs, message", [
    ({"units": 0}, "must be positive"),
    ({"units": 4, "projection_units": -1}, "must be positive"),
    ({"units": 4, "cell_clip": -1.0}, "cell_clip must be positive"),
    ({"units": 4, "projection_clip": 0.0}, "projection_clip must be positive"),
], ids=["zero_units", "negative_projection", "negative_cell_clip", "zero_projection_clip"])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PeepholeLSTMP(**kwargs)


def test_bad_initial_state_and_rank():
    layer = PeepholeLSTMP(4)
    with pytest.raises(ValueError, match=r"initial_state must be \[c, r\]"):
        layer(np.zeros((1, 3, 2), np.float32), initial_state=[np.zeros((1, 4), np.float32)])
    with pytest.raises(ValueError, match="ndim"):
        PeepholeLSTMP(4)(np.zeros((3, 2), np.float32))


def test_projection_clip_engages_in_its_case():
    clipped = _run_ours("projection_clip_engaged")
    use_peepholes, proj, _, _, _ = CASES["projection_clip_engaged"]
    layer = PeepholeLSTMP(UNITS, projection_units=proj, use_peepholes=use_peepholes, return_state=True)
    layer.build((None, None, INPUT_DIM))
    arrays = _case_arrays("projection_clip_engaged")
    layer.set_weights([arrays[k] for k in WEIGHT_NAMES if k in arrays])
    free, _, _ = layer(arrays["x"], mask=tf.sequence_mask(arrays["lengths"], FRAMES))
    assert np.mean(np.abs(free.numpy()) > 0.04) > 0.2  # the clip is active on many outputs
    assert np.abs(clipped["y"]).max() <= 0.04 + 1e-7
    assert np.abs(clipped["d_projection_kernel"]).sum() > 0  # gradient flows through the unclipped outputs
