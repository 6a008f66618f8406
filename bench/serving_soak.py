"""Loopback soak of crnn-serve: many REST and gRPC clients at once, some of them malformed, against one server.

Exports a small model, starts `python -m serving.server` on 127.0.0.1 (free ports), and sends `--requests`
requests from `--concurrency` clients: REST (keep-alive connections) and gRPC mixed half and half, a fraction
`--bad_fraction` of them malformed (bad JSON, wrong shape, negative or too long `lengths`, NaN, unknown signature,
model or version, a TensorProto declaring a huge shape). Every good request's scores are checked against the same
SavedModel called in this process, one request at a time; every bad one must get its own 4xx status / gRPC code.
Then SIGTERM, and the server must exit 0 within its grace period.

Prints the good requests' p50/p99 latency and throughput, the server's peak RSS (VmHWM) and its RSS after the
warm-up, at the end and over the run (the largest sample in each quarter: flat when memory is bounded); exits 1
when any good request failed, any bad one got the wrong answer, or the server did not exit 0. Bounded: it stops
sending after `--requests` or `--max_seconds`, whichever comes first.

Example:
  python bench/serving_soak.py                                  # 10,000 requests at concurrency 32 (make soak)
  python bench/serving_soak.py --requests 500 --concurrency 8   # smoke
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

ATOL = 1e-4  # batched (padded, concatenated) against unbatched scores
MIN_FRAMES, MAX_FRAMES = 20, 80


class Case:
    """One request: protocol ("rest" or "grpc"), what to send, and what must come back.

    Attributes:
      good: True for a well-formed request (its scores are checked), False for a malformed one.
      expect: for a bad request, the HTTP status (REST) or `grpc.StatusCode` name (gRPC) it must get.
    """

    def __init__(self, protocol, good, send, expect=None, want=None):
        self.protocol, self.good, self.send, self.expect, self.want = protocol, good, send, expect, want


def _tensor_proto_with_huge_shape(dim):
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in (1, 3_000_000, dim)])
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0], tensor_shape=shape)


def make_cases(count, dim, name, reference, bad_fraction=0.05, num_distinct=32, seed=0):
    """`count` shuffled `Case`s, half REST and half gRPC, `bad_fraction` of them malformed.

    Args:
      count: how many requests.
      dim: the model's feature dimension.
      name: the served model name.
      reference: callable(features [1, T, dim], lengths [1]) → log_likelihoods [1, T, S] (the unbatched truth).
      bad_fraction: share of malformed requests. Default 0.05.
      num_distinct: distinct good utterances (their references are computed once). Default 32.
      seed: random seed. Default 0.
    """
    rng = np.random.default_rng(seed)
    good = []
    for _ in range(num_distinct):
        frames = int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
        features = rng.normal(size=(1, frames, dim)).astype(np.float32)
        lengths = np.array([frames], np.int32)
        good.append((features, lengths, reference(features, lengths)))
    short = rng.normal(size=(1, 4, dim)).astype(np.float32)

    def rest_body(features, lengths, **extra):
        return json.dumps({"inputs": {"features": features.tolist(), "lengths": lengths.tolist()}, **extra})

    path = f"/v1/models/{name}:predict"
    bad_rest = [
        (path, "{not json", 400),
        (path, rest_body(short[..., :-1], np.array([4])), 400),  # wrong feature dimension
        (path, rest_body(short, np.array([-1])), 400),
        (path, rest_body(short, np.array([11])), 400),  # longer than its own frames
        (path, rest_body(short * np.nan, np.array([4])), 400),
        (path, rest_body(short, np.array([4]), signature_name="nope"), 400),
        (f"/v1/models/{name}/versions/x:predict", rest_body(short, np.array([4])), 400),
        (f"/v1/models/{name}-other:predict", rest_body(short, np.array([4])), 404),
    ]
    bad_grpc = [
        ({"features": short[..., :-1], "lengths": np.array([4], np.int32)}, name, "INVALID_ARGUMENT"),
        ({"features": short, "lengths": np.array([-1], np.int32)}, name, "INVALID_ARGUMENT"),
        ({"features": short, "lengths": np.array([11], np.int32)}, name, "INVALID_ARGUMENT"),
        ({"features": _tensor_proto_with_huge_shape(dim), "lengths": np.array([4], np.int32)}, name,
         "RESOURCE_EXHAUSTED"),
        ({"features": short, "lengths": np.array([4], np.int32)}, f"{name}-other", "NOT_FOUND"),
    ]
    cases = []
    for index in range(count):
        protocol = "rest" if index % 2 == 0 else "grpc"
        if rng.random() < bad_fraction:
            if protocol == "rest":
                target, body, status = bad_rest[int(rng.integers(len(bad_rest)))]
                cases.append(Case("rest", False, (target, body.encode()), expect=status))
            else:
                inputs, model, code = bad_grpc[int(rng.integers(len(bad_grpc)))]
                cases.append(Case("grpc", False, (inputs, model), expect=code))
            continue
        features, lengths, want = good[int(rng.integers(len(good)))]
        if protocol == "rest":
            cases.append(Case("rest", True, (path, rest_body(features, lengths).encode()), want=want))
        else:
            cases.append(Case("grpc", True, ({"features": features, "lengths": lengths}, name), want=want))
    return cases


class _Clients(threading.local):
    """Per-thread REST keep-alive connection and a shared gRPC stub."""

    def __init__(self, rest_port, stub):
        self.rest_port, self.stub, self.connection = rest_port, stub, None

    def rest(self, target, body, timeout):
        for attempt in range(3):  # a keep-alive client reconnects when the server closed its idle connection
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=timeout)
            try:
                self.connection.request("POST", target, body, {"Content-Type": "application/json"})
                response = self.connection.getresponse()
                return response.status, json.loads(response.read())
            except (http.client.RemoteDisconnected, ConnectionError):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _one(clients, case, name, timeout):
    """Sends `case`; returns (seconds, problem or None)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    start = time.perf_counter()
    try:
        if case.protocol == "rest":
            status, payload = clients.rest(*case.send, timeout)
            if not case.good:
                ok = status == case.expect and isinstance(payload.get("error"), str) and payload["error"]
                return time.perf_counter() - start, None if ok else f"REST got {status} {payload}, want {case.expect}"
            if status != 200:
                return time.perf_counter() - start, f"REST good request got {status}: {payload}"
            got = np.asarray(payload["outputs"]["log_likelihoods"], np.float32)
        else:
            inputs, model = case.send
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(value if not isinstance(value, np.ndarray)
                                             else tf.make_tensor_proto(value))
            request.output_filter.append("log_likelihoods")
            try:
                response = clients.stub.Predict(request, timeout=timeout)
            except grpc.RpcError as error:
                if case.good or error.code().name != case.expect or not error.details():
                    return time.perf_counter() - start, f"gRPC got {error.code().name} {error.details()!r}"
                return time.perf_counter() - start, None
            if not case.good:
                return time.perf_counter() - start, f"gRPC bad request succeeded, want {case.expect}"
            got = tf.make_ndarray(response.outputs["log_likelihoods"])
        seconds = time.perf_counter() - start
        if got.shape != case.want.shape or not np.allclose(got, case.want, atol=ATOL):
            return seconds, f"{case.protocol} scores differ from the unbatched reference"
        return seconds, None
    except Exception as error:  # noqa: BLE001 - every failure is counted and reported
        return time.perf_counter() - start, f"{case.protocol} {type(error).__name__}: {error}"


def run_mixed(rest_port, grpc_port, cases, name, concurrency=32, timeout=60.0, max_seconds=None):
    """Sends `cases` from `concurrency` threads; returns a dict of what happened.

    Returns:
      dict: sent, good, bad, good_failures / bad_mismatches (lists of messages), latencies_s (good requests),
      seconds, stopped_early (True when `max_seconds` ran out first).
    """
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    clients = _Clients(rest_port, prediction_service_pb2_grpc.PredictionServiceStub(channel))
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    start = time.perf_counter()

    def one(case):
        if deadline is not None and time.monotonic() > deadline:
            return None
        return _one(clients, case, name, timeout)

    try:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, cases))
    finally:
        channel.close()
    done = [(case, result) for case, result in zip(cases, results) if result is not None]
    return {
        "sent": len(done), "good": sum(case.good for case, _ in done), "bad": sum(not case.good for case, _ in done),
        "good_failures": [problem for case, (_, problem) in done if case.good and problem],
        "bad_mismatches": [problem for case, (_, problem) in done if not case.good and problem],
        "latencies_s": [seconds for case, (seconds, _) in done if case.good],
        "seconds": time.perf_counter() - start, "stopped_early": len(done) < len(cases),
    }


def _rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    """Samples a process's resident set size (KiB) every `interval` seconds until `stop()`."""

    def __init__(self, pid, interval=0.5):
        super().__init__(daemon=True)
        self.pid, self.interval, self.samples, self._done = pid, interval, [], threading.Event()

    def run(self):
        while not self._done.wait(self.interval):
            self.samples.append(_rss_kib(self.pid, "VmRSS"))

    def stop(self):
        self._done.set()
        self.join()

    def quarters_mib(self):
        """The largest sample of each quarter of the run, MiB: flat when memory is bounded."""
        parts = np.array_split(np.asarray(self.samples or [0]), 4)
        return [int(part.max() / 1024) if part.size else 0 for part in parts]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--bad_fraction", type=float, default=0.05)
    parser.add_argument("--max_seconds", type=float, default=1800.0, help="stop sending after this long")
    parser.add_argument("--grace_seconds", type=float, default=10.0, help="the server's shutdown grace")
    parser.add_argument("--spec", default="CLstm8P4+Pool3+Lstm16P8+ReLU16")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from crnn_tf.export import export_saved_model
    from crnn_tf.models import from_spec

    name, num_bands, num_streams, targets = "soak", 11, 3, 7
    workdir = tempfile.mkdtemp(prefix="crnn-soak-")
    keras.utils.set_random_seed(0)
    model = from_spec(args.spec, num_bands=num_bands, num_streams=num_streams, num_targets=targets)
    version_dir = export_saved_model(model, workdir, name, 1, label_delay=2)
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]

    def reference(features, lengths):
        return signature(features=tf.constant(features), lengths=tf.constant(lengths))["log_likelihoods"].numpy()

    cases = make_cases(args.requests, num_bands * num_streams, name, reference, args.bad_fraction)
    server = subprocess.Popen(
        [sys.executable, "-m", "serving.server", f"--model_base_path={version_dir.parent}", f"--model_name={name}",
         "--rest_port=0", "--grpc_port=0", f"--shutdown_grace_seconds={args.grace_seconds}"],
        stdout=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
    try:
        line = server.stdout.readline()
        if not line.startswith("crnn-serve ready"):
            raise RuntimeError(f"server did not start: {line!r}")
        ports = {key: int(value) for key, value in (item.split("=") for item in line.split()[2:])}
        warm = run_mixed(ports["rest_port"], ports["grpc_port"], cases[:64], name, args.concurrency)
        rss_warm = _rss_kib(server.pid, "VmRSS")
        sampler = RssSampler(server.pid)
        sampler.start()
        result = run_mixed(ports["rest_port"], ports["grpc_port"], cases, name, args.concurrency,
                           max_seconds=args.max_seconds)
        sampler.stop()
        rss_end, rss_peak = _rss_kib(server.pid, "VmRSS"), _rss_kib(server.pid, "VmHWM")
        stop_start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=args.grace_seconds + 30)
        stop_seconds = time.monotonic() - stop_start
    finally:
        if server.poll() is None:
            server.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    latencies = np.asarray(result["latencies_s"]) * 1000.0
    print(f"soak: {result['sent']} requests ({result['good']} good, {result['bad']} malformed; REST and gRPC "
          f"half each) at concurrency {args.concurrency} in {result['seconds']:.1f} s "
          f"({result['sent'] / result['seconds']:.0f} req/s)" + (" STOPPED EARLY (--max_seconds)"
                                                                 if result["stopped_early"] else ""))
    print(f"good requests: p50 {np.percentile(latencies, 50):.1f} ms, p99 {np.percentile(latencies, 99):.1f} ms, "
          f"failures {len(result['good_failures'])}; malformed answered wrongly: {len(result['bad_mismatches'])}")
    print(f"server RSS: peak (VmHWM) {rss_peak / 1024:.0f} MiB, after warm-up {rss_warm / 1024:.0f} MiB, "
          f"at the end {rss_end / 1024:.0f} MiB, largest in each quarter of the run {sampler.quarters_mib()} MiB; "
          f"SIGTERM: exit {exit_code} after {stop_seconds:.1f} s")
    for problem in (warm["good_failures"] + warm["bad_mismatches"] + result["good_failures"]
                    + result["bad_mismatches"])[:10]:
        print(f"  {problem}")
    failed = (result["good_failures"] or result["bad_mismatches"] or warm["good_failures"] or warm["bad_mismatches"]
              or exit_code != 0 or result["stopped_early"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
