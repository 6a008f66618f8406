"""CLSTM with patches folded into the batch vs an explicit per-patch loop over the same shared LSTM.

All rows compute the same function (tests/layers/test_clstm.py checks it); this measures what folding buys:
one recurrence over (batch x patches) sequences instead of one recurrence per patch; and, at inference, what the
feature-major loop (`lstmp_recurrence.forward_feature_major`, the CLSTM's default) buys over the batch-major one.

Usage: python bench/clstm_speed.py [--units 384] [--projection 256] [--batch 20] [--frames 15]
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from crnn_tf.layers import CLSTM, PeepholeLSTMP  # noqa: E402


def _time(fn, min_seconds):
    fn()
    fn()
    runs, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds or runs < 3:
        fn()
        runs += 1
    return elapsed / runs


class PerPatchCLSTM(keras.layers.Layer):
    """The naive form: slice each patch and run the shared LSTM on it separately, then max-pool."""

    def __init__(self, folded: CLSTM):
        super().__init__()
        self.folded = folded

    def call(self, x, training=None):
        f = self.folded
        batch, frames = tf.shape(x)[0], tf.shape(x)[1]
        bands = tf.transpose(tf.reshape(x, [batch, frames, f.num_streams, f.num_bands]), [0, 1, 3, 2])
        outputs = []
        for p in range(f.num_patches):
            start = p * f.patch_stride
            patch = tf.reshape(bands[:, :, start:start + f.patch_size], [batch, frames, -1])
            outputs.append(f.patch_lstm(patch, training=training))
        pooled = [tf.reduce_max(tf.stack(outputs[q * f.pool_size:(q + 1) * f.pool_size]), axis=0)
                  for q in range(f.num_pooled_patches)]
        return tf.concat(pooled, axis=-1)


def train_step(layer, x):
    optimizer = keras.optimizers.SGD(1e-4)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(x, training=True)))
        grads = tape.gradient(loss, layer.trainable_variables)
        optimizer.apply(grads, layer.trainable_variables)
        return loss

    return lambda: step().numpy()


def inference(layer, x):
    run = tf.function(lambda: layer(x, training=False))
    return lambda: run().numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=384)
    parser.add_argument("--projection", type=int, default=256)
    parser.add_argument("--num_bands", type=int, default=31)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--frames", type=int, default=15)
    parser.add_argument("--infer_batch", type=int, default=4)
    parser.add_argument("--infer_frames", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    dim = 3 * args.num_bands
    x = tf.constant(rng.standard_normal((args.batch, args.frames, dim), dtype=np.float32))
    x_inf = tf.constant(rng.standard_normal((args.infer_batch, args.infer_frames, dim), dtype=np.float32))
    folded = CLSTM(args.units, projection_units=args.projection, num_bands=args.num_bands)
    batch_major = CLSTM(args.units, projection_units=args.projection, num_bands=args.num_bands,
                        feature_major_inference=False)
    folded(x[:1])
    batch_major(x[:1])
    batch_major.set_weights(folded.get_weights())
    per_patch = PerPatchCLSTM(batch_major)  # the naive form runs the plain (batch-major) loop per patch
    for layer in (per_patch, batch_major):  # same function
        np.testing.assert_allclose(layer(x_inf[:2]).numpy(), folded(x_inf[:2]).numpy(), atol=1e-5)
    train_frames, infer_frames = args.batch * args.frames, args.infer_batch * args.infer_frames
    rows = {}
    for name, layer in (("folded", folded), ("folded, batch-major", batch_major), ("per-patch loop", per_patch)):
        rows[name] = (train_frames / _time(train_step(layer, x), args.seconds),
                      infer_frames / _time(inference(layer, x_inf), args.seconds))
    print(f"CLSTM{args.units}P{args.projection}, patch {folded.patch_size}, {folded.num_patches} patches, "
          f"pool {folded.pool_size}, input {dim}; {os.cpu_count()} CPU threads")
    print(f"{'':20s} {'train frames/s':>16s} {'inference frames/s':>20s}")
    for name, (train_fps, infer_fps) in rows.items():
        print(f"{name:20s} {train_fps:16.0f} {infer_fps:20.0f}")
    print(f"folded / per-patch: training {rows['folded'][0] / rows['per-patch loop'][0]:.2f}x, "
          f"inference {rows['folded'][1] / rows['per-patch loop'][1]:.2f}x; feature-major / batch-major "
          f"inference {rows['folded'][1] / rows['folded, batch-major'][1]:.2f}x")


if __name__ == "__main__":
    main()
