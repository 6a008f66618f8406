"""This machine's limits, measured in the same run as the figures they judge, and a model's speed floor from them.

Every bench that reports a scoring speed divides the floor by it: the fraction of the floor reached. The floor is a
lower bound on the time (each matrix product at least reads its weights once at the measured bandwidth and does
its multiply-adds at the measured roofline), so a fraction above 100 % means the bench measured something wrong
(a roofline taken while the machine was busy, or a product missing from the model's list): `FloorReport` flags it.

  roofline     best GFLOP/s over several large products through TensorFlow (oneDNN where it is on): float32,
               bfloat16, and int8 (QuantizedMatMulWithBias u8×s8, the fastest int8 product TF 2.17 offers).
  bandwidth    bytes/s of a matrix-vector product loop over a weight-sized matrix (each step's input is the
               previous step's output, as in a recurrence), best of float32 and bf16: the rate at which this CPU
               streams a buffer of that size through a product, cache effects included.
  floor        sum over the model's products of count × max(FLOPs / roofline, weight bytes / bandwidth): at batch 1
               the per-frame recurrent products are bandwidth-bound, the rest (all frames at once) roofline-bound.
"""
import dataclasses
import os
import platform
import time

import numpy as np
import tensorflow as tf

# Large enough to reach the roofline, small enough to time in about a second each.
ROOFLINE_SHAPES = ((512, 2048, 2048), (1024, 2048, 4096), (2048, 1024, 2048))
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
                  "amx_int8")
BYTES = {"float32": 4, "bfloat16": 2, "int8": 1}


def cpu_description():
    """One line: CPU model, threads, and the flags that decide oneDNN's float32/bf16/int8 kernels."""
    from crnn_tf.export.cpu import cpu_flags

    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    flags = cpu_flags()
    shown = " ".join(flag for flag in REPORTED_FLAGS if flag in flags) or "none of " + " ".join(REPORTED_FLAGS)
    return f"{model}, {os.cpu_count()} threads; flags: {shown}"


def load_average():
    """The 1-minute load average (other processes on the machine slow every figure), or -1 where unknown."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


def best_seconds(fn, repeats=5):
    """Best wall time of `repeats` calls of `fn` after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _product_fn(dtype, m, k, n, chain):
    """A callable running `chain` independent [m, k] @ [k, n] products of `dtype` in one graph, reduced to a scalar
    (so neither per-call overhead nor copying a large result out is timed)."""
    rng = np.random.default_rng(0)
    if dtype == "int8":
        lhs = [tf.bitcast(tf.constant(rng.integers(0, 128, (m, k), np.uint8)), tf.quint8) for _ in range(chain)]
        rhs = tf.Variable(rng.integers(-127, 128, (k, n), np.int8))
        bias = tf.zeros([n])

        @tf.function
        def products():
            outs = [tf.raw_ops.QuantizedMatMulWithBias(
                a=a, b=tf.bitcast(rhs, tf.qint8), bias=bias, min_a=0.0, max_a=255.0, min_b=-127.0, max_b=127.0,
                Toutput=tf.qint32, input_quant_mode="SCALED")[0] for a in lhs]
            return tf.add_n([tf.cast(tf.bitcast(o, tf.int32)[0, 0], tf.float32) for o in outs])
        return products
    lhs = [tf.constant(rng.normal(size=(m, k)), dtype) for _ in range(chain)]
    rhs = tf.Variable(tf.constant(rng.normal(size=(k, n)), dtype))

    @tf.function
    def products():
        return tf.add_n([tf.cast(tf.matmul(a, rhs)[0, 0], tf.float32) for a in lhs])
    return products


def matmul_roofline(dtype, shapes=ROOFLINE_SHAPES, repeats=5, chain=4):
    """Best GFLOP/s of `dtype` ("float32", "bfloat16" or "int8") products over `shapes` ((m, k, n) triples).

    Returns:
      (GFLOP/s, "mxkxn" of the best shape); (0.0, reason) when this TensorFlow cannot run such products.
    """
    best = (0.0, "no shape ran")
    for m, k, n in shapes:
        try:
            products = _product_fn(dtype, m, k, n, chain)
            seconds = best_seconds(lambda: products().numpy(), repeats) / chain
        except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError, tf.errors.InternalError) as error:
            return 0.0, f"not available: {type(error).__name__}"
        rate = 2.0 * m * k * n / seconds / 1e9
        if rate > best[0]:
            best = (rate, f"{m}x{k}x{n}")
    return best


def gemv_bandwidth(nbytes, dtype="float32", steps=50, repeats=5):
    """Bytes/s of a dependent chain of `steps` vector × matrix products over a `nbytes` matrix of `dtype`."""
    k = 1024
    n = max(k, int(nbytes) // (BYTES[dtype] * k))
    matrix = tf.Variable(tf.random.normal([k, n], stddev=0.03, dtype=tf.float32))
    matrix = tf.Variable(tf.cast(matrix, dtype))
    start_vector = tf.random.normal([1, k])

    @tf.function
    def loop():
        def body(i, h):
            y = tf.matmul(tf.cast(h, dtype), matrix)
            return i + 1, tf.tanh(tf.cast(y[:, :k], tf.float32))  # the next step waits for this one, as in a loop
        return tf.while_loop(lambda i, _: i < steps, body, (0, start_vector))[1]

    seconds = best_seconds(lambda: loop().numpy(), repeats) / steps
    return k * n * BYTES[dtype] / seconds


def memory_bandwidth(nbytes, repeats=5):
    """Best bytes/s of streaming a `nbytes` weight matrix through a product (float32 or bf16 GEMV loop)."""
    return max(gemv_bandwidth(nbytes, "float32", repeats=repeats), gemv_bandwidth(nbytes, "bfloat16", repeats=repeats))


@dataclasses.dataclass
class Product:
    """`count` products of [rows, k] @ [k, n]; `per_step` when they run once per frame (a recurrence)."""

    name: str
    rows: int
    k: int
    n: int
    count: int
    per_step: bool

    @property
    def flops(self):
        return 2.0 * self.rows * self.k * self.n * self.count

    def weight_bytes(self, dtype):
        return self.k * self.n * BYTES[dtype] * self.count


def model_products(model, frames, batch):
    """The matrix products of scoring `batch` utterances of `frames` frames with a from_spec model.

    Covers Dense (ReLU blocks, logits), PeepholeLSTMP and CLSTM (whose patch LSTM runs the input and recurrent
    products as one per frame, feature-major); other layers add nothing, which only lowers the floor.
    """
    import keras

    from crnn_tf.layers import CLSTM, PeepholeLSTMP

    products = []
    for layer in model.layers:
        if isinstance(layer, CLSTM):
            lstm, rows = layer.patch_lstm, batch * layer.num_patches
            n, p = lstm.units, lstm.output_units
            d = layer.patch_size * layer.num_streams
            products.append(Product(f"{layer.name} input+recurrent", rows, d + p, 4 * n, frames, True))
            if lstm.projection_units:
                products.append(Product(f"{layer.name} projection", rows, n, p, frames, True))
        elif isinstance(layer, PeepholeLSTMP):
            n, p, d = layer.units, layer.output_units, int(layer.kernel.shape[0])
            products.append(Product(f"{layer.name} input", frames * batch, d, 4 * n, 1, False))
            products.append(Product(f"{layer.name} recurrent", batch, p, 4 * n, frames, True))
            if layer.projection_units:
                products.append(Product(f"{layer.name} projection", batch, n, p, frames, True))
        elif isinstance(layer, keras.layers.Dense):
            k, n = (int(d) for d in layer.kernel.shape)
            products.append(Product(layer.name, frames * batch, k, n, 1, False))
    return products


def per_step_weight_bytes(products, dtype):
    """Weight bytes one frame's recurrent products read (the buffer size whose bandwidth matters at batch 1)."""
    return sum(p.k * p.n * BYTES[dtype] for p in products if p.per_step)


def floor_seconds(products, dtype, roofline_gflops, bandwidth):
    """Lower bound on the time of `products` in `dtype`: each at least max(FLOPs / roofline, weight bytes / bandwidth).

    Args:
      products: `Product` list (`model_products`).
      dtype: "float32", "bfloat16" or "int8" (bytes per weight).
      roofline_gflops: the dtype's measured roofline.
      bandwidth: measured bytes/s (`memory_bandwidth`).
    """
    if roofline_gflops <= 0:
        return float("nan")
    return sum(max(p.flops / (roofline_gflops * 1e9), p.weight_bytes(dtype) / bandwidth) for p in products)


class Limits:
    """The machine's rooflines and the bandwidth over a weight-sized buffer, measured in the bench's own run.

    Other processes on a shared machine lower every figure while they run, and a roofline measured in such a moment
    would raise the floors above what the machine can do; `remeasure` (between a bench's figures, as often as they
    are timed) keeps the best of each limit, so the floors only come down.

    Args:
      bandwidth_bytes: size of the buffer the bandwidth is measured over (the per-frame weight bytes of the
        model the bench scores).
      dtypes: rooflines to measure. Default all three.
      repeats: timings per figure (best kept). Default 5.
    """

    def __init__(self, bandwidth_bytes, dtypes=("float32", "bfloat16", "int8"), repeats=5):
        self.bandwidth_bytes = int(bandwidth_bytes)
        self.dtypes, self.repeats = tuple(dtypes), repeats
        self.rooflines = {dtype: (0.0, "not measured") for dtype in self.dtypes}
        self.bandwidth = 0.0
        self.measurements = 0
        self.remeasure()

    def remeasure(self):
        """Measures every figure again and keeps the better of old and new."""
        for dtype in self.dtypes:
            self.rooflines[dtype] = max(self.rooflines[dtype], matmul_roofline(dtype, repeats=self.repeats))
        self.bandwidth = max(self.bandwidth, memory_bandwidth(self.bandwidth_bytes, repeats=self.repeats))
        self.measurements += 1

    def roofline(self, dtype):
        return self.rooflines[dtype][0]

    def describe(self):
        rooflines = ", ".join(f"{dtype} {rate:.0f} GFLOP/s ({shape})" for dtype, (rate, shape) in self.rooflines.items())
        return (f"matmul roofline: {rooflines}; bandwidth over a {self.bandwidth_bytes / 2**20:.1f} MiB weight "
                f"matrix: {self.bandwidth / 1e9:.1f} GB/s (best of {self.measurements} measurements in this run)")

    def floor(self, products, dtype):
        """`floor_seconds` of `products` in `dtype` with this run's figures."""
        return floor_seconds(products, dtype, self.roofline(dtype), self.bandwidth)


class FloorReport:
    """Collects measured times with their products, then prints each as a fraction of its floor.

    A fraction above 100 % is a bench bug (or a roofline never measured while the machine was free): `print_all`
    flags such lines and then fails the run.

    Args:
      limits: the run's `Limits`.
    """

    def __init__(self, limits):
        self.limits = limits
        self.entries = []

    def add(self, label, seconds, products, dtype):
        """Records `seconds` measured for `products` (`model_products`) multiplied in `dtype`'s storage."""
        self.entries.append((label, seconds, products, dtype))

    def print_all(self):
        """Prints the limits and every recorded figure's fraction of its floor; SystemExit if one beats its floor."""
        print(f"floors: {self.limits.describe()}")
        violations = []
        for label, seconds, products, dtype in self.entries:
            floor = self.limits.floor(products, dtype)
            share = floor / seconds if np.isfinite(floor) and seconds > 0 else float("nan")
            flag = ""
            if share > 1.0:
                violations.append(f"{label}: {share:.0%}")
                flag = " [ABOVE 100 %: bench bug]"
            print(f"  {label}: {seconds * 1000:.1f} ms = {share:.0%} of its floor {floor * 1000:.1f} ms{flag}")
        if violations:
            raise SystemExit("figures faster than their measured floor (a bench bug): " + "; ".join(violations))
