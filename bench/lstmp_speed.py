"""PeepholeLSTMP speed against its peers, measured in the same run.

Prints, as ratios against peers timed in this process:
  * training-step frames/s (forward + backward + SGD update) of PeepholeLSTMP(1024, projection 512)
    vs keras.layers.LSTM(1024), and vs torch.nn.LSTM(proj_size=512) when torch is installed
    (`pip install torch==2.13.0`; kept out of the default install);
  * batch-16 inference frames/s and the fraction of its floor (bench/floors.py, measured in this run): each of the
    layer's products at the machine's float32 matmul roofline (best of several large shapes) or, where that is
    less, reading its weights at the bandwidth of a product loop over weights of that size. A fraction above
    100 % is a bench bug and fails the run.

Usage: python bench/lstmp_speed.py [--batch 32] [--frames 15] [--input_dim 512] [--json out.json]
"""
import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.floors import FloorReport, Limits, cpu_description, load_average, model_products  # noqa: E402
from bench.floors import per_step_weight_bytes  # noqa: E402
from crnn_tf.layers import PeepholeLSTMP  # noqa: E402


def _time(fn, min_seconds, warmup=2):
    for _ in range(warmup):
        fn()
    runs, start = 0, time.perf_counter()
    while True:
        fn()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and runs >= 3:
            return elapsed / runs


def keras_train_step(layer, x):
    optimizer = keras.optimizers.SGD(1e-4)
    layer(x[:1], training=True)  # build

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            y = layer(x, training=True)
            loss = tf.reduce_mean(tf.square(y))
        grads = tape.gradient(loss, layer.trainable_variables)
        optimizer.apply(grads, layer.trainable_variables)
        return loss

    return lambda: step().numpy()


def keras_inference(layer, x):
    @tf.function
    def run():
        return layer(x, training=False)

    return lambda: run().numpy()


def torch_steps(x_np, units, proj, threads):
    import torch

    torch.set_num_threads(threads)
    lstm = torch.nn.LSTM(x_np.shape[-1], units, proj_size=proj, batch_first=True)
    optimizer = torch.optim.SGD(lstm.parameters(), lr=1e-4)
    x = torch.from_numpy(x_np)

    def train():
        optimizer.zero_grad()
        y, _ = lstm(x)
        loss = (y * y).mean()
        loss.backward()
        optimizer.step()

    def infer(x_inf):
        with torch.no_grad():
            lstm(x_inf)

    return train, infer, torch.__version__


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=1024)
    parser.add_argument("--projection", type=int, default=512)
    parser.add_argument("--input_dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32, help="training chunks per step")
    parser.add_argument("--frames", type=int, default=15, help="frames per training chunk (truncated BPTT)")
    parser.add_argument("--infer_batch", type=int, default=16)
    parser.add_argument("--infer_frames", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timing per measurement")
    parser.add_argument("--no_torch", action="store_true")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    threads = os.cpu_count()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.frames, args.input_dim), dtype=np.float32)
    x_inf = rng.standard_normal((args.infer_batch, args.infer_frames, args.input_dim), dtype=np.float32)
    train_frames = args.batch * args.frames
    infer_frames = args.infer_batch * args.infer_frames
    results = {"config": vars(args), "cpu_threads": threads, "tensorflow": tf.__version__, "keras": keras.__version__}

    ours = {}
    for unroll in (False, True):
        layer = PeepholeLSTMP(args.units, projection_units=args.projection, unroll=unroll)
        ours[unroll] = _time(keras_train_step(layer, tf.constant(x)), args.seconds)
    best_unroll = min(ours, key=ours.get)
    results["train_frames_per_s"] = {
        "PeepholeLSTMP(while_loop)": train_frames / ours[False],
        "PeepholeLSTMP(unrolled)": train_frames / ours[True],
    }
    ours_train = train_frames / ours[best_unroll]
    keras_lstm = keras.layers.LSTM(args.units, return_sequences=True)
    keras_seconds = _time(keras_train_step(keras_lstm, tf.constant(x)), args.seconds)
    results["train_frames_per_s"]["keras.layers.LSTM"] = train_frames / keras_seconds
    results["train_ratio_vs_keras_lstm"] = ours_train / (train_frames / keras_seconds)

    layer = PeepholeLSTMP(args.units, projection_units=args.projection)
    infer_seconds = _time(keras_inference(layer, tf.constant(x_inf)), args.seconds)
    results["infer_frames_per_s"] = {"PeepholeLSTMP": infer_frames / infer_seconds}
    net = keras.Sequential([keras.Input((None, args.input_dim)), layer])
    products = model_products(net, args.infer_frames, args.infer_batch)
    limits = Limits(max(per_step_weight_bytes(products, "float32"), 1 << 20), dtypes=("float32",))
    results["load_average"] = load_average()

    if not args.no_torch:
        try:
            torch_train, torch_infer, torch_version = torch_steps(x, args.units, args.projection, threads)
        except ImportError:
            results["torch"] = "not installed (pip install torch==2.13.0)"
        else:
            import torch

            torch_seconds = _time(torch_train, args.seconds)
            results["torch"] = torch_version
            results["train_frames_per_s"]["torch.nn.LSTM(proj_size)"] = train_frames / torch_seconds
            results["train_ratio_vs_torch_lstmp"] = ours_train / (train_frames / torch_seconds)
            x_inf_t = torch.from_numpy(x_inf)
            torch_infer_seconds = _time(lambda: torch_infer(x_inf_t), args.seconds)
            results["infer_frames_per_s"]["torch.nn.LSTM(proj_size)"] = infer_frames / torch_infer_seconds
            results["infer_ratio_vs_torch_lstmp"] = torch_infer_seconds / infer_seconds

    print(f"PeepholeLSTMP({args.units}, projection {args.projection}), input {args.input_dim}, TF {tf.__version__}")
    print(f"CPU: {cpu_description()}; load average {results['load_average']:.1f}")
    print(f"training, batch {args.batch} x {args.frames} frames:")
    for name, fps in results["train_frames_per_s"].items():
        print(f"  {name:32s} {fps:10.0f} frames/s")
    print(f"  ratio vs keras.layers.LSTM({args.units}):      {results['train_ratio_vs_keras_lstm']:.2f}x")
    if "train_ratio_vs_torch_lstmp" in results:
        print(f"  ratio vs torch LSTM(proj_size={args.projection}):     {results['train_ratio_vs_torch_lstmp']:.2f}x")
    print(f"inference, batch {args.infer_batch} x {args.infer_frames} frames:")
    for name, fps in results["infer_frames_per_s"].items():
        print(f"  {name:32s} {fps:10.0f} frames/s")
    results["infer_floor_fraction"] = limits.floor(products, "float32") / infer_seconds
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    report = FloorReport(limits)
    report.add(f"PeepholeLSTMP inference, batch {args.infer_batch} x {args.infer_frames} frames", infer_seconds,
               products, "float32")
    report.print_all()


if __name__ == "__main__":
    main()
