"""bf16 and int8 weight storage: quantisation, products, exports of each compute dtype, and the CPU fallback.

The graphs run on any CPU (TensorFlow emulates bf16 where the CPU lacks it); `cpu_flags` is monkeypatched to take
the fast-bf16 path or the fallback regardless of this machine.
"""
import logging

import numpy as np
import pytest
import tensorflow as tf

from crnn_tf.export import cpu, read_metadata, StreamingScorer
from crnn_tf.layers.stored_matrix import StoredMatrix, matmul, quantize_per_channel
from tests.export import helpers

# Stated tolerances against float32 (log posteriors of the tiny model, whose logits are O(1)): bf16 weights keep 8
# significant bits, int8 per-channel weights about 7; products accumulate in float32.
LOG_POSTERIOR_ATOL = {"bfloat16": 0.03, "int8": 0.05}
AVX512_BF16 = frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"})
AVX2_ONLY = frozenset({"avx2", "fma"})


def test_quantize_per_channel_golden_values():
    matrix = np.array([[1.0, -2.0, 0.0], [0.5, 4.0, 0.0], [-1.0, 0.0, 0.0]], np.float32)
    values, scales = quantize_per_channel(matrix)
    np.testing.assert_allclose(scales, [1 / 127, 4 / 127, 1.0], rtol=1e-7)  # a zero column gets scale 1
    # 0.5 * 127 = 63.5 and -2 * 127 / 4 = -63.5 round half to even: 64 and -64.
    np.testing.assert_array_equal(values, [[127, -64, 0], [64, 127, 0], [-127, 0, 0]])
    assert values.dtype == np.int8
    with pytest.raises(ValueError, match="2-D"):
        quantize_per_channel(np.zeros(3))


@pytest.mark.parametrize("storage,rtol", [("float32", 1e-6), ("bfloat16", 1e-2), ("int8", 2e-2)])
def test_stored_matrix_products_agree_with_float32(storage, rtol):
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(64, 32)).astype(np.float32)
    x = rng.normal(size=(5, 64)).astype(np.float32)
    stored = StoredMatrix(matrix, storage)
    assert stored.values.dtype == tf.as_dtype(storage)  # the weights are held in their storage dtype, no f32 copy
    assert all(v.dtype != tf.float32 or v is stored.scales or storage == "float32" for v in stored.variables)
    got = matmul(tf.constant(x), stored.value())
    assert got.dtype == tf.float32
    expected = x @ matrix
    assert np.abs(got.numpy() - expected).max() <= rtol * np.abs(expected).max()
    assert stored.nbytes == 64 * 32 * {"float32": 4, "bfloat16": 2, "int8": 1}[storage] + (32 * 4 if storage == "int8"
                                                                                             else 0)


def test_stored_matrix_refuses_per_call_weight_casts():
    with pytest.raises(ValueError, match="cast the weights on every call"):
        StoredMatrix(np.zeros((2, 2)), "float32", "bfloat16")
    with pytest.raises(ValueError, match="storage must be"):
        StoredMatrix(np.zeros((2, 2)), "float16")


def test_plan_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: AVX512_BF16)
    assert cpu.plan_weights("bfloat16") == cpu.WeightPlan("bfloat16", "bfloat16", "bfloat16")
    assert cpu.plan_weights("int8") == cpu.WeightPlan("int8", "int8", "bfloat16")
    assert cpu.plan_weights(None) == cpu.WeightPlan("float32", "float32", "float32")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: AVX2_ONLY)
    fallback = cpu.plan_weights("bfloat16")
    assert (fallback.storage, fallback.matmul_dtype) == ("float32", "float32") and "AVX512_BF16" in fallback.note
    int8 = cpu.plan_weights("int8")
    assert (int8.storage, int8.matmul_dtype) == ("int8", "float32")
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        cpu.plan_weights("float16")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{dtype: (version dir, loaded)} of the tiny model exported with each compute dtype on a 'bf16 CPU'."""
    base = tmp_path_factory.mktemp("dtypes")
    model, _, float32_path = helpers.exported()  # the float32 export the other export tests use
    paths = {"float32": float32_path}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cpu, "cpu_flags", lambda: AVX512_BF16)
        for version, dtype in enumerate(("bfloat16", "int8"), start=1):
            paths[dtype] = helpers.export(model, base, version=version, compute_dtype=dtype,
                                          signatures=("serving_default", "stream_step"))
    return {dtype: (path, tf.saved_model.load(str(path))) for dtype, path in paths.items()}


def _saved_dtypes(path):
    """{variable name: dtype} of the weights the SavedModel's checkpoint holds (not its object graph string)."""
    saved = tf.train.load_checkpoint(str(path / "variables" / "variables")).get_variable_to_dtype_map()
    return {name: dtype for name, dtype in saved.items() if dtype != tf.string}


def _call(signature, **inputs):
    return {name: value.numpy() for name, value in signature(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_export_round_trip_agrees_with_float32(exports, dtype):
    path, loaded = exports[dtype]
    meta = read_metadata(path)
    assert (meta.compute_dtype, meta.matmul_dtype, meta.requested_compute_dtype) == (
        dtype, "bfloat16", dtype)
    # The large matrices are saved in their storage dtype: no float32 copy of any 2-D weight remains.
    saved = _saved_dtypes(path)
    shapes = tf.train.load_checkpoint(str(path / "variables" / "variables")).get_variable_to_shape_map()
    matrices = {name: saved[name] for name, shape in shapes.items() if len(shape) == 2 and min(shape) > 3}
    assert matrices and set(matrices.values()) == {tf.as_dtype(dtype)}, matrices
    features, lengths = helpers.batch([17, 9])
    got = _call(loaded.signatures["serving_default"], features=features, lengths=lengths)
    expected = _call(exports["float32"][1].signatures["serving_default"], features=features, lengths=lengths)
    assert got["log_posteriors"].dtype == np.float32
    np.testing.assert_allclose(got["log_posteriors"], expected["log_posteriors"], atol=LOG_POSTERIOR_ATOL[dtype])
    assert not np.array_equal(got["log_posteriors"], expected["log_posteriors"])  # it did run in the narrow dtype


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_narrow_stream_step_equals_its_whole_utterance_scoring(exports, dtype):
    path, loaded = exports[dtype]
    meta = read_metadata(path)
    features, lengths = helpers.batch([19])
    whole = _call(loaded.signatures["serving_default"], features=features, lengths=lengths)["log_likelihoods"]
    scorer = StreamingScorer(lambda inputs: _call(loaded.signatures["stream_step"], **inputs), meta.states,
                             meta.label_delay)
    streamed = np.concatenate([scorer.push(features[:, s:s + 6]) for s in range(0, 19, 6)] + [scorer.flush()], 1)
    np.testing.assert_allclose(streamed, whole, atol=2e-3)  # states are float32 between chunks


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_narrow_export_of_a_dropout_model_is_that_of_its_weights(exports, dtype, tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: AVX512_BF16)
    model = helpers.make_model(dropout=0.4)  # the weights of the exports' model, with dropout layers
    path = helpers.export(model, tmp_path, version=1, compute_dtype=dtype,
                          signatures=("serving_default", "stream_step"))
    loaded = tf.saved_model.load(str(path))
    meta = read_metadata(path)
    assert (meta.compute_dtype, meta.dropout) == (dtype, 0.4)
    features, lengths = helpers.batch([17, 9])
    state = {s["name"]: np.zeros([2, *s["shape"]], np.float32) for s in meta.states}
    for name, inputs in (("serving_default", {}), ("stream_step", state)):
        got = _call(loaded.signatures[name], features=features, lengths=lengths, **inputs)
        want = _call(exports[dtype][1].signatures[name], features=features, lengths=lengths, **inputs)
        for output in want:
            np.testing.assert_array_equal(got[output], want[output], err_msg=f"{name}: {output}")


def test_cpu_without_bf16_exports_float32_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: AVX2_ONLY)
    model = helpers.make_model()
    with caplog.at_level(logging.WARNING):
        path = helpers.export(model, tmp_path, version=1, compute_dtype="bfloat16", signatures=("serving_default",))
    meta = read_metadata(path)
    assert (meta.compute_dtype, meta.matmul_dtype, meta.requested_compute_dtype) == ("float32", "float32", "bfloat16")
    assert "AVX512_BF16" in meta.extra["compute_dtype_note"] and "AVX512_BF16" in caplog.text
    assert set(_saved_dtypes(path).values()) == {tf.float32}


def test_server_says_when_this_cpu_lacks_bf16(exports, monkeypatch):
    from serving.model_manager import slow_product_warning

    meta = read_metadata(exports["bfloat16"][0]).__dict__
    monkeypatch.setattr(cpu, "cpu_flags", lambda: AVX2_ONLY)
    assert "emulated, slower than float32" in slow_product_warning(meta)
    assert slow_product_warning(read_metadata(exports["float32"][0]).__dict__) == ""
    monkeypatch.setattr(cpu, "cpu_flags", lambda: AVX512_BF16)
    assert slow_product_warning(meta) == ""
