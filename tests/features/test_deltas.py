"""add_deltas against an independent NumPy transcription of Kaldi's DeltaFeatures::Process."""
import numpy as np
import pytest

from crnn_tf.features import add_deltas, delta_coefficients


def kaldi_deltas(feats: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
    """Kaldi: scales[0] = [1]; scales[i][j + k + cur_offset] += j * scales[i-1][k] / Σj²; edge frames replicated."""
    scales = [np.array([1.0])]
    normalizer = sum(j * j for j in range(-window, window + 1))
    for _ in range(order):
        prev = scales[-1]
        prev_offset = (prev.size - 1) // 2
        cur = np.zeros(prev.size + 2 * window)
        for j in range(-window, window + 1):
            for k in range(-prev_offset, prev_offset + 1):
                cur[j + k + prev_offset + window] += j * prev[k + prev_offset]
        scales.append(cur / normalizer)
    frames, dim = feats.shape
    out = np.zeros((frames, dim * (order + 1)))
    for t in range(frames):
        for i, scale in enumerate(scales):
            offset = (scale.size - 1) // 2
            for j in range(-offset, offset + 1):
                out[t, i * dim:(i + 1) * dim] += scale[j + offset] * feats[min(max(t + j, 0), frames - 1)]
    return out


def test_delta_coefficients_golden():
    coeffs = delta_coefficients(2, 2)
    np.testing.assert_allclose(coeffs[1], [0, 0, -0.2, -0.1, 0, 0.1, 0.2, 0, 0])
    np.testing.assert_allclose(coeffs[2], np.convolve([-0.2, -0.1, 0, 0.1, 0.2], [-0.2, -0.1, 0, 0.1, 0.2]))
    assert coeffs[0].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]


@pytest.mark.parametrize("frames,order,window", [(23, 2, 2), (3, 2, 2), (1, 2, 2), (12, 1, 3), (9, 3, 1)])
def test_matches_kaldi_reference(frames, order, window):
    feats = np.random.default_rng(frames).normal(size=(frames, 5)).astype(np.float32)
    got = add_deltas(feats, order=order, window=window).numpy()
    np.testing.assert_allclose(got, kaldi_deltas(feats, order, window), atol=1e-5)


def test_padding_is_invisible_to_valid_frames():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(11, 4)), rng.normal(size=(6, 4))
    batch = np.full((2, 11, 4), 1e6, np.float32)
    batch[0], batch[1, :6] = a, b
    out = add_deltas(batch, [11, 6]).numpy()
    np.testing.assert_allclose(out[1, :6], kaldi_deltas(b), atol=1e-5)
    np.testing.assert_allclose(out[0], kaldi_deltas(a), atol=1e-5)
    assert not np.any(out[1, 6:])
