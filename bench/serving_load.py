"""Loopback load test of crnn-serve, and scoring speed of the paper's best net against this CPU's own floors.

Three parts, each bounded:
  1. load: a small model served by `crnn-serve` (a subprocess on 127.0.0.1), `--requests` gRPC Predict calls at
     `--concurrency`, each a random utterance of `--min_frames`..`--max_frames`; prints throughput, p50/p99 latency
     and the error count (must be 0).
  2. floors (bench/floors.py), measured in this run: the float32/bf16/int8 matmul rooflines, the bandwidth of a
     product loop over the best net's per-frame recurrent weights, and from the net's own products the floor of
     each figure below; every speed is printed with the fraction of its floor it reaches (> 100 % = bench bug).
  3. rtf: the paper's best net (`--big_spec`, 93 dims, 5529 senones, random weights) exported with each
     `--dtypes` compute dtype: real-time factor (scoring seconds / audio seconds, 10 ms frames) of one
     `--utt_frames` utterance in process and served (gRPC), and the throughput RTF of `--batch_utts` utterances in
     one in-process call and from as many concurrent gRPC clients; `stream_step` of a `--chunk_frames` chunk in
     process (1 and `--batch_utts` streams per call) and the per-stream step cost of 1, 4, 16 concurrent served
     streams (`--streams`), which the server's batcher joins into one call per step.
  Ratios against float32 (same run) close each dtype's lines.

Example:
  python bench/serving_load.py                          # defaults
  python bench/serving_load.py --requests 200 --utt_frames 200 --repeats 2   # smoke
"""
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from bench.floors import FloorReport, Limits, cpu_description, load_average, model_products  # noqa: E402
from bench.floors import per_step_weight_bytes  # noqa: E402
from serving.recognize import decoder_outputs, score_remote  # noqa: E402
from serving.server import prefer_onednn  # noqa: E402

prefer_onednn()  # in-process figures use the same kernels as the server

FLAGS = flags.FLAGS
flags.DEFINE_integer("requests", 2000, "Load part: total requests.")
flags.DEFINE_integer("concurrency", 16, "Load part: concurrent clients.")
flags.DEFINE_string("load_spec", "CLstm8P4+Pool3+Lstm16P8+ReLU16", "Load part: model spec.")
flags.DEFINE_integer("min_frames", 50, "Load part: shortest utterance.")
flags.DEFINE_integer("max_frames", 150, "Load part: longest utterance.")
flags.DEFINE_string("big_spec", "CLstm384P256+Pool3+Lstm2000P750+3xReLU2000", "RTF part: model spec.")
flags.DEFINE_integer("utt_frames", 500, "RTF part: frames of the scored utterance (10 ms each).")
flags.DEFINE_integer("repeats", 3, "RTF/streaming part: timed repetitions (best is reported... and median).")
flags.DEFINE_integer("chunk_frames", 15, "Streaming part: frames per chunk.")
flags.DEFINE_integer("batch_utts", 16, "RTF part: utterances scored together for the throughput RTF (what the "
                     "server's batcher forms from concurrent requests).")
flags.DEFINE_list("dtypes", ["float32", "bfloat16", "int8"], "RTF part: compute dtypes (crnn-export "
                  "--compute_dtype); float32 first: the others are compared with it.")
flags.DEFINE_list("streams", ["1", "4", "16"], "Streaming part: concurrent served streams.")
flags.DEFINE_integer("stream_steps", 8, "Streaming part: chunks each served stream sends (after one warm-up).")
flags.DEFINE_bool("skip_served", False, "RTF part: in-process figures only (no server).")
flags.DEFINE_bool("skip_big", False, "Skip the RTF and streaming parts.")
flags.DEFINE_float("timeout", 120.0, "Per-request timeout (s).")


class ServerProcess:
    """`python -m serving.server` on 127.0.0.1 with free ports, stopped with SIGTERM."""

    def __init__(self, base, name, *server_args):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving.server", f"--model_base_path={base}", f"--model_name={name}",
             "--rest_port=0", "--grpc_port=0", f"--max_batch_size={max(16, FLAGS.batch_utts)}", *server_args],
            stdout=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
        line = self.process.stdout.readline()
        if not line.startswith("crnn-serve ready"):
            self.process.kill()
            raise RuntimeError(f"server did not start: {line!r}")
        ports = dict(item.split("=") for item in line.split()[2:])
        self.grpc_port = int(ports["grpc_port"])

    def stub(self):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}",
                                        options=[("grpc.max_receive_message_length", 1 << 30)])
        return prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=60)

    def cpu_seconds(self):
        """User + system CPU seconds the server process has used (Linux /proc; None elsewhere)."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def predict(stub, name, inputs, signature="", output_filter=None):
    """One Predict call; asks only for what a decoder reads unless `output_filter` says otherwise."""
    output_filter = decoder_outputs(signature) if output_filter is None else output_filter
    return score_remote(stub, name, None, signature, inputs, FLAGS.timeout, output_filter)


def export(spec, base, name, dim_bands, targets, dtype="float32", signatures=("serving_default", "stream_step")):
    import keras

    from crnn_tf.export import export_saved_model
    from crnn_tf.models import from_spec

    keras.utils.set_random_seed(0)
    model = from_spec(spec, num_bands=dim_bands, num_streams=3, num_targets=targets)
    return model, export_saved_model(model, base, name, 1, label_delay=5, compute_dtype=dtype,
                                     signatures=signatures)


# For long utterances on few cores: one batch at a time (TF already spreads a batch over every core) and a
# window long enough for concurrent clients' requests to meet in one batch (docs/serving.md, "Tuning").
THROUGHPUT_SERVER_ARGS = ("--num_batch_threads=1", "--batch_timeout_micros=100000")


def percentile(values, q):
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def load_part(workdir):
    _, path = export(FLAGS.load_spec, workdir, "load", 11, 7)
    server = ServerProcess(path.parent, "load")
    try:
        stub = server.stub()
        rng = np.random.default_rng(0)
        lengths = rng.integers(FLAGS.min_frames, FLAGS.max_frames + 1, FLAGS.requests)
        inputs = [{"features": rng.normal(size=(1, n, 33)).astype(np.float32), "lengths": np.array([n], np.int32)}
                  for n in lengths]
        predict(stub, "load", inputs[0])  # warm-up

        def one(item):
            start = time.perf_counter()
            try:
                predict(stub, "load", item)
                return time.perf_counter() - start, None
            except Exception as error:  # noqa: BLE001 - counted and reported
                return time.perf_counter() - start, error

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(FLAGS.concurrency) as pool:
            results = list(pool.map(one, inputs))
        elapsed = time.perf_counter() - start
    finally:
        server.stop()
    latencies = [t for t, e in results]
    errors = [e for _, e in results if e is not None]
    print(f"load: {FLAGS.load_spec}, {FLAGS.requests} requests x {FLAGS.min_frames}-{FLAGS.max_frames} frames, "
          f"concurrency {FLAGS.concurrency}: {FLAGS.requests / elapsed:.1f} req/s, "
          f"{lengths.sum() / elapsed:.0f} frames/s, p50 {percentile(latencies, 50):.1f} ms, "
          f"p99 {percentile(latencies, 99):.1f} ms, errors {len(errors)}"
          + (f" (first: {errors[0]!r})" if errors else ""))
    return len(errors)


def timed(fn, repeats):
    fn()  # warm-up (traces, allocations)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), float(min(times))


def big_part(workdir):
    """Floors, then per dtype: in-process and served RTFs, stream_step costs; each with its floor fraction."""
    import tensorflow as tf

    from crnn_tf.models import from_spec

    frames, audio_s, batch = FLAGS.utt_frames, FLAGS.utt_frames * 0.01, FLAGS.batch_utts
    model = from_spec(FLAGS.big_spec, num_bands=31, num_streams=3, num_targets=5529)
    products = {rows: model_products(model, frames, rows) for rows in (1, batch)}
    chunk_products = {rows: model_products(model, FLAGS.chunk_frames, rows) for rows in (1, batch)}
    limits = Limits(per_step_weight_bytes(products[1], "float32"))
    report = FloorReport(limits)
    rng = np.random.default_rng(1)
    utterance = {"features": rng.normal(size=(1, frames, 93)).astype(np.float32),
                 "lengths": np.array([frames], np.int32)}
    state_specs, chunk, paths, cases = None, None, {}, {}
    for dtype in FLAGS.dtypes:
        start = time.perf_counter()
        _, paths[dtype] = export(FLAGS.big_spec, workdir, f"best_{dtype}", 31, 5529, dtype=dtype)
        print(f"exported {dtype} in {time.perf_counter() - start:.0f} s")
        loaded = tf.saved_model.load(str(paths[dtype]))
        score, step = loaded.signatures["serving_default"], loaded.signatures["stream_step"]
        if chunk is None:
            state_specs = [(spec.name, spec.shape) for spec in step.structured_input_signature[1].values()
                           if spec.name not in ("features", "lengths")]
            tensors = {k: tf.constant(v) for k, v in utterance.items()}
            batched = {k: tf.repeat(v, batch, axis=0) for k, v in tensors.items()}
            chunk = {"features": tf.constant(utterance["features"][:, :FLAGS.chunk_frames]),
                     "lengths": tf.constant([FLAGS.chunk_frames], tf.int32),
                     **{n: tf.zeros([1, *s[1:]]) for n, s in state_specs}}
            streams = {k: tf.repeat(v, batch, axis=0) for k, v in chunk.items()}  # concurrent streams in one call
        # (what, callable, products of the floor, repeats); int8's floor is int8's, though its products run in bf16.
        cases[dtype] = [
            ("batch 1", lambda score=score: score(**tensors), products[1], FLAGS.repeats),
            (f"{batch} utterances", lambda score=score: score(**batched), products[batch], FLAGS.repeats),
            ("stream_step 1 stream", lambda step=step: step(**chunk), chunk_products[1], 3 * FLAGS.repeats),
            (f"stream_step {batch} streams in one call", lambda step=step: step(**streams), chunk_products[batch],
             3 * FLAGS.repeats)]
    # Rounds over the dtypes in turn, best kept: on a shared machine the others' load drifts, and interleaving
    # lets every dtype meet the same moments.
    best = {dtype: {} for dtype in FLAGS.dtypes}
    for what_index in range(len(cases[FLAGS.dtypes[0]])):
        for dtype in FLAGS.dtypes:
            cases[dtype][what_index][1]()  # warm-up
        for _ in range(cases[FLAGS.dtypes[0]][what_index][3]):
            for dtype in FLAGS.dtypes:
                what, fn, _, _ = cases[dtype][what_index]
                start = time.perf_counter()
                fn()
                best[dtype][what] = min(best[dtype].get(what, float("inf")), time.perf_counter() - start)
        limits.remeasure()  # the limits get as many chances at a quiet moment as the figures they judge
    for dtype in FLAGS.dtypes:
        times = best[dtype]
        for what, _, what_products, _ in cases[dtype]:
            report.add(f"{dtype} {what}", times[what], what_products, dtype)
        one, many = times["stream_step 1 stream"], times[f"stream_step {batch} streams in one call"]
        print(f"rtf {dtype} (best of {FLAGS.repeats}, in process): {FLAGS.big_spec}, {frames} frames "
              f"({audio_s:.1f} s): batch 1 RTF {times['batch 1'] / audio_s:.3f}; {batch} utterances per call "
              f"throughput RTF {times[f'{batch} utterances'] / (batch * audio_s):.3f}; stream_step "
              f"{FLAGS.chunk_frames}-frame chunk (best of {3 * FLAGS.repeats}): 1 stream {one * 1000:.1f} ms, {batch} "
              f"streams in one call {many * 1000:.1f} ms = {many / batch / one:.2f}x a single stream's cost per stream")
    summary = {dtype: {"batch1": best[dtype]["batch 1"], "batched": best[dtype][f"{batch} utterances"],
                       "step": best[dtype]["stream_step 1 stream"]} for dtype in FLAGS.dtypes}
    print(f"load average {load_average():.1f}")
    if not FLAGS.skip_served:
        for dtype in FLAGS.dtypes:
            served = served_figures(paths[dtype], f"best_{dtype}", utterance, chunk, state_specs, audio_s)
            report.add(f"{dtype} served batch 1", served["batch1"], products[1], dtype)
            report.add(f"{dtype} served {batch} concurrent clients", served["batched"], products[batch], dtype)
    if "float32" in summary:
        base = summary["float32"]
        for dtype, figures in summary.items():
            if dtype != "float32":
                print(f"ratio {dtype}/float32 (best times, same run): batch 1 {figures['batch1'] / base['batch1']:.2f}, "
                      f"{batch} utterances {figures['batched'] / base['batched']:.2f}, "
                      f"stream_step {figures['step'] / base['step']:.2f}")
    print(f"load average {load_average():.1f}")
    report.print_all()


def served_figures(path, name, utterance, chunk, state_specs, audio_s):
    """Served RTFs (batch 1; `--batch_utts` concurrent clients) and per-stream step cost of concurrent streams;
    returns the best times {"batch1", "batched"} (seconds)."""
    batch = FLAGS.batch_utts
    server = ServerProcess(path.parent, name)  # defaults: the latency figures
    try:
        stub = server.stub()
        served_med, served_best = timed(lambda: predict(stub, name, utterance), FLAGS.repeats)
    finally:
        server.stop()
    print(f"served {name}:")
    print(f"  served gRPC batch 1: median {served_med:.3f} s = RTF {served_med / audio_s:.3f} "
          f"(best {served_best / audio_s:.3f})")
    server = ServerProcess(path.parent, name, *THROUGHPUT_SERVER_ARGS)
    try:
        stub = server.stub()
        with concurrent.futures.ThreadPoolExecutor(batch) as pool:
            # batch_utts clients at once, one utterance each: the batcher joins them into one call.
            served_batch_med, served_batch_best = timed(
                lambda: list(pool.map(lambda _: predict(stub, name, utterance), range(batch))), FLAGS.repeats)
        print(f"  {batch} concurrent gRPC clients: {served_batch_med:.3f} s = throughput RTF "
              f"{served_batch_med / (batch * audio_s):.3f} (server {' '.join(THROUGHPUT_SERVER_ARGS)})")
    finally:
        server.stop()
    server = ServerProcess(path.parent, name)  # defaults: stream_step batches of a model run one at a time
    try:
        stub = server.stub()
        stream_costs = {}
        for count in (int(n) for n in FLAGS.streams):
            stream_costs[count] = served_stream_cost(stub, name, chunk, [n for n, _ in state_specs], count, server)
        single = stream_costs.get(1, (None,))[0]
        print("  served stream_step per-stream cost of concurrent streams (default server: one step batch at a "
              "time, waiting for the streams the last one answered), wall (server CPU): " + ", ".join(
                  f"{count} streams {cost * 1000:.1f} ms" + (f" ({cpu * 1000:.1f} ms)" if cpu is not None else "")
                  + (f" ({cost / single:.2f}x one stream's)" if single else "")
                  for count, (cost, cpu) in stream_costs.items()))
    finally:
        server.stop()
    return {"batch1": served_best, "batched": served_batch_best}


def served_stream_cost(stub, name, chunk, state_names, count, server):
    """(wall seconds, server CPU seconds or None) per stream per step when `count` clients each send
    `--stream_steps` chunks, carrying states."""
    first = {k: v.numpy() for k, v in chunk.items()}
    wanted = ["log_likelihoods", *state_names]

    def stream(_):
        inputs = dict(first)
        for _ in range(FLAGS.stream_steps):
            outputs = predict(stub, name, inputs, "stream_step", wanted)
            inputs = {**inputs, **{n: outputs[n] for n in state_names}}

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        list(pool.map(stream, range(count)))  # warm-up: the batch shapes of this concurrency
        start, cpu_start = time.perf_counter(), server.cpu_seconds()
        list(pool.map(stream, range(count)))
        elapsed, cpu_end = time.perf_counter() - start, server.cpu_seconds()
    steps = FLAGS.stream_steps * count
    return elapsed / steps, None if cpu_start is None else (cpu_end - cpu_start) / steps


def main(argv):
    del argv
    workdir = tempfile.mkdtemp(prefix="crnn-serving-bench-")
    print(f"CPU: {cpu_description()}; load average {load_average():.1f}")
    try:
        errors = load_part(workdir)
        if not FLAGS.skip_big:
            big_part(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if errors:
        raise SystemExit(f"{errors} requests failed")


if __name__ == "__main__":
    app.run(main)
