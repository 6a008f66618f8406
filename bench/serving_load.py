"""Loopback load test of crnn-serve, and scoring real-time factors of the paper's best net (served vs in-process).

Three parts, each bounded (the whole default run takes about 10 minutes on 2 cores):
  1. load: a small model served by `crnn-serve` (a subprocess on 127.0.0.1), `--requests` gRPC Predict calls at
     `--concurrency`, each a random utterance of `--min_frames`..`--max_frames`; prints throughput, p50/p99 latency
     and the error count (must be 0).
  2. rtf: the paper's best net (`--big_spec`, 93 dims, 5529 senones, random weights) exported in float32 and bf16;
     real-time factor (scoring seconds / audio seconds, 10 ms frames) of one `--utt_frames` utterance, served (gRPC)
     next to in-process (the same SavedModel called directly); and the throughput RTF of `--batch_utts` such
     utterances, in one in-process call and from as many concurrent gRPC clients (a server tuned for throughput,
     THROUGHPUT_SERVER_ARGS).
  3. streaming: `stream_step` latency of a `--chunk_frames` chunk (150 ms) at batch 1, in-process and served, and
     of `--batch_utts` streams' chunks in one call.

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
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "RTF part: compute dtypes.")
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


def predict(stub, name, inputs, signature=""):
    """One Predict call; asks only for what a decoder reads, except on `stream_step` (whose states it needs)."""
    output_filter = () if signature == "stream_step" else decoder_outputs(signature)
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
    import tensorflow as tf

    frames, audio_s = FLAGS.utt_frames, FLAGS.utt_frames * 0.01
    rng = np.random.default_rng(1)
    utterance = {"features": rng.normal(size=(1, frames, 93)).astype(np.float32),
                 "lengths": np.array([frames], np.int32)}
    for dtype in FLAGS.dtypes:
        name = f"best_{dtype}"
        start = time.perf_counter()
        _, path = export(FLAGS.big_spec, workdir, name, 31, 5529, dtype=dtype)
        export_s = time.perf_counter() - start
        loaded = tf.saved_model.load(str(path))
        score = loaded.signatures["serving_default"]
        step = loaded.signatures["stream_step"]
        tensors = {k: tf.constant(v) for k, v in utterance.items()}
        local_med, local_best = timed(lambda: score(**tensors), FLAGS.repeats)
        batched = {"features": tf.constant(np.repeat(utterance["features"], FLAGS.batch_utts, axis=0)),
                   "lengths": tf.constant(np.repeat(utterance["lengths"], FLAGS.batch_utts))}
        batch_med, _ = timed(lambda: score(**batched), FLAGS.repeats)
        meta_states = [(spec.name, spec.shape) for spec in step.structured_input_signature[1].values()
                       if spec.name not in ("features", "lengths")]
        chunk = {"features": tf.constant(utterance["features"][:, :FLAGS.chunk_frames]),
                 "lengths": tf.constant([FLAGS.chunk_frames], tf.int32),
                 **{n: tf.zeros([1, *s[1:]]) for n, s in meta_states}}
        step_med, step_best = timed(lambda: step(**chunk), max(FLAGS.repeats, 10))
        streams = {k: tf.repeat(v, FLAGS.batch_utts, axis=0) for k, v in chunk.items()}  # concurrent streams
        streams_med, _ = timed(lambda: step(**streams), max(FLAGS.repeats, 10))
        del loaded, score, step
        server = ServerProcess(path.parent, name)  # defaults: the latency figures
        try:
            stub = server.stub()
            served_med, served_best = timed(lambda: predict(stub, name, utterance), FLAGS.repeats)
            chunk_np = {k: v.numpy() for k, v in chunk.items()}
            sstep_med, _ = timed(lambda: predict(stub, name, chunk_np, "stream_step"), max(FLAGS.repeats, 10))
        finally:
            server.stop()
        server = ServerProcess(path.parent, name, *THROUGHPUT_SERVER_ARGS)
        try:
            stub = server.stub()
            with concurrent.futures.ThreadPoolExecutor(FLAGS.batch_utts) as pool:
                # batch_utts clients at once, one utterance each: the batcher joins them into one call.
                served_batch_med, _ = timed(
                    lambda: list(pool.map(lambda _: predict(stub, name, utterance), range(FLAGS.batch_utts))),
                    FLAGS.repeats)
        finally:
            server.stop()
        print(f"rtf {dtype}: {FLAGS.big_spec}, {frames} frames ({audio_s:.1f} s): in-process "
              f"{local_med:.3f} s = RTF {local_med / audio_s:.3f} (best {local_best / audio_s:.3f}); served gRPC "
              f"{served_med:.3f} s = RTF {served_med / audio_s:.3f} (best {served_best / audio_s:.3f}); "
              f"export took {export_s:.0f} s")
        print(f"rtf {dtype} batched: {FLAGS.batch_utts} utterances per call in-process {batch_med:.3f} s = "
              f"throughput RTF {batch_med / (FLAGS.batch_utts * audio_s):.3f}; {FLAGS.batch_utts} concurrent "
              f"gRPC clients {served_batch_med:.3f} s = throughput RTF "
              f"{served_batch_med / (FLAGS.batch_utts * audio_s):.3f} (server {' '.join(THROUGHPUT_SERVER_ARGS)})")
        print(f"stream_step {dtype}: {FLAGS.chunk_frames}-frame chunk, batch 1: in-process median "
              f"{step_med * 1000:.1f} ms (best {step_best * 1000:.1f}); served gRPC median {sstep_med * 1000:.1f} ms; "
              f"{FLAGS.batch_utts} streams in one call: {streams_med * 1000:.1f} ms in-process")


def main(argv):
    del argv
    workdir = tempfile.mkdtemp(prefix="crnn-serving-bench-")
    with open("/proc/cpuinfo") as f:
        flags_line = next((line for line in f if line.startswith("flags")), "")
    print(f"CPU: {os.cpu_count()} threads; AVX512_BF16 {'yes' if 'avx512_bf16' in flags_line else 'no'} "
          f"(without it bf16 matrix products are emulated and slower than float32)")
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
