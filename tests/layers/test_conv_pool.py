"""FrequencyConvPool: per-patch NumPy oracle, both input layouts, Splice composition, serialization."""
import keras
import numpy as np
import pytest

from crnn_tf.layers import FrequencyConvPool, Splice
from tests.layers.fixed_weights import fixed_array, fixed_initializer
from tests.layers.test_splice import splice_reference


def conv_pool_reference(grid, kernel, bias, patch_size, patch_stride, pool_size):
    """grid: (frames, bands, channels). Explicit loop over patches, ReLU, max over pool groups."""
    num_patches = (grid.shape[1] - patch_size) // patch_stride + 1
    maps = []
    for p in range(num_patches):
        patch = grid[:, p * patch_stride : p * patch_stride + patch_size, :]
        maps.append(np.maximum(np.einsum("fwc,wck->fk", patch, kernel) + bias, 0.0))
    maps = np.stack(maps, axis=1)  # (frames, patches, K)
    pooled = num_patches // pool_size
    maps = maps[:, : pooled * pool_size].reshape(grid.shape[0], pooled, pool_size, -1).max(axis=2)
    return maps.reshape(grid.shape[0], -1)  # patch-major


def fixed_layer(filters, **kwargs):
    """A FrequencyConvPool whose weights are `fixed_array`s: no random initialiser, so no RNG change can move its
    outputs."""
    kernel_shape = (kwargs.get("patch_size", 8), kwargs["num_streams"], filters)
    return FrequencyConvPool(
        filters,
        kernel_initializer=fixed_initializer(kernel_shape, scale=0.8),
        bias_initializer=fixed_initializer((filters,), scale=0.1, phase=1.0),
        **kwargs,
    )


# name: (filters, layer geometry, output). Input fixed_array((1, 2, num_bands * num_streams), phase=2.0), weights as
# fixed_layer's. The outputs were computed once with conv_pool_reference in float64 and pinned (the test recomputes
# them too).
GOLDEN = {
    "stream_major": (
        2, dict(num_bands=6, num_streams=2, patch_size=3, pool_size=2),
        [[[0.7448119, 0.7377497, 0.5192001, 0.0885661], [0.0836494, 0.0, 0.0, 0.0]]],
    ),
    "band_major_stride2": (
        3, dict(num_bands=7, num_streams=2, patch_size=3, patch_stride=2, pool_size=1, streams_first=False),
        [[[0.3996503, 0.6317022, 0.5666547, 0.0, 0.0, 0.0, 0.7105203, 0.9546406, 0.7497786],
          [0.0341544, 0.0, 0.0, 0.3792955, 0.6077315, 0.5503419, 0.0, 0.0, 0.0]]],
    ),
}


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_values(name):
    filters, geometry, expected = GOLDEN[name]
    num_bands, num_streams = geometry["num_bands"], geometry["num_streams"]
    x = fixed_array((1, 2, num_bands * num_streams), phase=2.0)
    layer = fixed_layer(filters, **geometry)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-6, atol=1e-6)
    frames = x[0].astype(np.float64)
    if geometry.get("streams_first", True):
        grid = frames.reshape(-1, num_streams, num_bands).transpose(0, 2, 1)
    else:
        grid = frames.reshape(-1, num_bands, num_streams)
    kernel = fixed_array((geometry["patch_size"], num_streams, filters), scale=0.8).astype(np.float64)
    bias = fixed_array((filters,), scale=0.1, phase=1.0).astype(np.float64)
    reference = conv_pool_reference(grid, kernel, bias, geometry["patch_size"], geometry.get("patch_stride", 1),
                                    geometry["pool_size"])
    np.testing.assert_allclose(reference, expected[0], rtol=0, atol=1e-7)  # the pins are the float64 reference's


@pytest.mark.parametrize(
    "num_bands, num_streams, patch_size, patch_stride, pool_size, streams_first",
    [
        (31, 3, 8, 1, 3, True),
        (31, 3, 8, 1, 3, False),
        (12, 5, 4, 2, 1, True),
        (8, 16, 4, 1, 3, False),
        (10, 2, 10, 1, 1, True),
    ],
    ids=["paper_stream_major", "band_major", "stride2_no_pool", "stacked_layer", "one_patch"],
)
def test_matches_reference(num_bands, num_streams, patch_size, patch_stride, pool_size, streams_first):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, num_bands * num_streams)).astype("float32")
    layer = fixed_layer(
        4,
        patch_size=patch_size,
        patch_stride=patch_stride,
        pool_size=pool_size,
        num_bands=num_bands,
        num_streams=num_streams,
        streams_first=streams_first,
    )
    out = np.asarray(layer(x))
    kernel, bias = (np.asarray(w) for w in layer.get_weights())
    frames = x.reshape(-1, x.shape[-1])
    if streams_first:
        grid = frames.reshape(-1, num_streams, num_bands).transpose(0, 2, 1)
    else:
        grid = frames.reshape(-1, num_bands, num_streams)
    expected = conv_pool_reference(grid, kernel, bias, patch_size, patch_stride, pool_size)
    assert out.shape == (2, 3, layer.num_pooled_patches * 4)
    np.testing.assert_allclose(out.reshape(-1, out.shape[-1]), expected, rtol=1e-5, atol=1e-5)


def test_spliced_input_channels_are_context_frames_times_streams():
    """Splice(k) of [static|Δ|ΔΔ] is channel-major with (2k+1)*streams channels, channel = j*streams + s."""
    num_bands, num_streams, context = 10, 3, 2
    x = np.random.default_rng(1).standard_normal((1, 6, num_bands * num_streams)).astype("float32")
    layer = fixed_layer(3, patch_size=4, pool_size=2, num_bands=num_bands, num_streams=num_streams * 5)
    out = np.asarray(layer(Splice(context)(x)))[0]
    kernel, bias = (np.asarray(w) for w in layer.get_weights())
    windows = splice_reference(x, context)[0].reshape(6, 5, num_streams, num_bands)  # (frame, j, s, band)
    grid = windows.reshape(6, 5 * num_streams, num_bands).transpose(0, 2, 1)  # channel = j*streams + s
    np.testing.assert_allclose(out, conv_pool_reference(grid, kernel, bias, 4, 1, 2), rtol=1e-5, atol=1e-5)


def test_paper_first_layer_geometry():
    layer = FrequencyConvPool(256, num_bands=31, num_streams=33)
    assert (layer.num_patches, layer.num_pooled_patches) == (24, 8)
    assert layer.compute_output_shape((None, None, 1023)) == (None, None, 2048)
    layer.build((None, None, 1023))
    assert layer.count_params() == 8 * 33 * 256 + 256


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_bands": 8, "num_streams": 3, "patch_size": 8, "pool_size": 3}, "fewer than one pooling group"),
        ({"num_bands": 4, "num_streams": 3, "patch_size": 8, "pool_size": 1}, "fewer than one pooling group"),
        ({"num_bands": None}, "num_bands is required"),
        ({"num_bands": 8, "patch_stride": 0}, "patch_stride"),
    ],
    ids=["pool_too_wide", "patch_too_wide", "no_bands", "zero_stride"],
)
def test_rejects_bad_geometry(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FrequencyConvPool(4, **kwargs)


def test_rejects_wrong_input_width():
    with pytest.raises(ValueError):
        FrequencyConvPool(4, num_bands=31, num_streams=3)(np.zeros((1, 2, 92), "float32"))


def test_get_config_round_trip():
    layer = FrequencyConvPool(
        16, patch_size=5, patch_stride=2, pool_size=2, num_bands=20, num_streams=4, streams_first=False
    )
    config = layer.get_config()
    clone = FrequencyConvPool.from_config(config)
    assert clone.get_config() == config
    assert (clone.num_pooled_patches, clone.streams_first) == (4, False)


def test_keras_save_reload(tmp_path):
    inputs = keras.Input((None, 93))
    outputs = FrequencyConvPool(8, num_bands=31, num_streams=3)(inputs)
    stacked = FrequencyConvPool(4, patch_size=4, num_bands=8, num_streams=8, streams_first=False)
    model = keras.Model(inputs, stacked(outputs))
    x = np.random.default_rng(2).standard_normal((2, 5, 93)).astype("float32")
    path = tmp_path / "conv_pool.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_array_equal(reloaded(x), model(x))
