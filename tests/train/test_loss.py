"""The training loss: frame cross-entropy with label smoothing, against a numpy oracle."""
import numpy as np
import pytest
import tensorflow as tf

from crnn_tf.train.loop import frame_cross_entropy


def _oracle(labels, logits, smoothing):
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    targets = (1 - smoothing) * np.eye(logits.shape[-1])[labels] + smoothing / logits.shape[-1]
    return -(targets * log_probs).sum(-1)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5], ids=["none", "eps0.1", "eps0.5"])
def test_matches_the_smoothed_target_cross_entropy(smoothing):
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(2, 3, 5)) * 3  # [batch, frames, senones], as in a training step
    labels = rng.integers(0, 5, size=(2, 3))
    loss = frame_cross_entropy(tf.constant(labels, tf.int32), tf.constant(logits, tf.float32), smoothing)
    assert loss.shape == (2, 3)
    np.testing.assert_allclose(loss.numpy(), _oracle(labels, logits, smoothing), rtol=1e-5)


def test_without_smoothing_it_is_exactly_the_sparse_cross_entropy():
    logits = tf.constant(np.random.default_rng(1).normal(size=(4, 7)), tf.float32)
    labels = tf.constant([0, 6, 3, 3])
    plain = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    assert np.array_equal(frame_cross_entropy(labels, logits, 0.0).numpy(), plain.numpy())


def test_its_gradient_pulls_the_posteriors_to_the_smoothed_target():
    # d loss / d logits = softmax - target: zero exactly where the posteriors equal (1 - ε)·one-hot + ε/K.
    smoothing, k = 0.2, 4
    target = (1 - smoothing) * np.eye(k)[2] + smoothing / k
    logits = tf.Variable(np.log(target)[None].astype(np.float32))
    with tf.GradientTape() as tape:
        loss = frame_cross_entropy(tf.constant([2]), logits, smoothing)
    np.testing.assert_allclose(tape.gradient(loss, logits).numpy(), 0.0, atol=1e-6)
    confident = tf.Variable([[0.0, 0.0, 9.0, 0.0]])  # pushed back towards the other senones
    with tf.GradientTape() as tape:
        loss = frame_cross_entropy(tf.constant([2]), confident, smoothing)
    away = tape.gradient(loss, confident).numpy()[0]
    assert away[2] > 0 and (away[[0, 1, 3]] < 0).all()
