"""The TF-Serving-compatible server, called with the official gRPC stubs and plain HTTP on 127.0.0.1."""
import concurrent.futures
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)

from crnn_tf.export import StreamingScorer, read_metadata
from serving.model_manager import wait_for
from serving.server import Server
from tests.export import helpers

ATOL = 1e-5
NAME = helpers.MODEL_NAME
MAX_BODY = 200_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model, export_base, _ = helpers.exported()
    base = tmp_path_factory.mktemp("models")
    shutil.copytree(os.path.join(export_base, NAME, "1"), base / NAME / "1")
    srv = Server(str(base / NAME), NAME, rest_port=0, grpc_port=0, poll_seconds=0.2, max_body_bytes=MAX_BODY,
                 batching=dict(max_batch_size=8, batch_timeout_s=0.005))
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}")
    srv.model, srv.base = model, base
    srv.stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    srv.status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    yield srv
    channel.close()
    srv.stop(grace_seconds=2)


def http_call(srv, method, path, body=None, raw=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.rest_port, timeout=60)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = json.loads(response.read() or b"null")
    conn.close()
    return response.status, payload


def grpc_predict(srv, inputs, signature="", version=None, name=NAME, output_filter=()):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    request.output_filter.extend(output_filter)
    response = srv.stub.Predict(request, timeout=60)
    return response, {key: tf.make_ndarray(t) for key, t in response.outputs.items()}


def test_grpc_predict_equals_in_process(server):
    features, lengths = helpers.batch([10, 4, 7])
    response, outputs = grpc_predict(server, {"features": features, "lengths": lengths})
    want = helpers.reference(server.model, features, lengths)
    assert response.model_spec.version.value == 1 and response.model_spec.signature_name == "serving_default"
    for key in ("log_likelihoods", "log_posteriors"):
        np.testing.assert_allclose(outputs[key], want[key], atol=ATOL)
    _, filtered = grpc_predict(server, {"features": features, "lengths": lengths}, output_filter=["log_posteriors"])
    assert list(filtered) == ["log_posteriors"]


def test_rest_row_and_columnar_equal_in_process(server):
    features, lengths = helpers.batch([6, 3], seed=1)
    want = helpers.reference(server.model, features, lengths)
    instances = [{"features": f.tolist(), "lengths": int(n)} for f, n in zip(features, lengths)]
    status, body = http_call(server, "POST", f"/v1/models/{NAME}:predict", {"instances": instances})
    assert status == 200, body
    assert len(body["predictions"]) == 2 and set(body["predictions"][0]) == {"log_likelihoods", "log_posteriors"}
    np.testing.assert_allclose([p["log_likelihoods"] for p in body["predictions"]], want["log_likelihoods"],
                               atol=ATOL)
    status, body = http_call(server, "POST", f"/v1/models/{NAME}/versions/1:predict",
                             {"signature_name": "serving_default",
                              "inputs": {"features": features.tolist(), "lengths": lengths.tolist()}})
    assert status == 200, body
    np.testing.assert_allclose(body["outputs"]["log_posteriors"], want["log_posteriors"], atol=ATOL)


def test_status_metadata_health(server):
    status, body = http_call(server, "GET", f"/v1/models/{NAME}")
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
    assert body["model_version_status"][0]["status"]["error_code"] == "OK"
    status, body = http_call(server, "GET", f"/v1/models/{NAME}/metadata")
    assert status == 200 and body["model_spec"]["name"] == NAME
    defs = body["metadata"]["signature_def"]["signature_def"]
    assert set(defs) == {"serving_default", "waveform", "stream_step"}
    assert defs["serving_default"]["inputs"]["features"]["dtype"] == "DT_FLOAT"
    assert http_call(server, "GET", "/healthz")[0] == 200

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = NAME
    response = server.stub.GetModelMetadata(request, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    assert set(signature_map.signature_def) == {"serving_default", "waveform", "stream_step"}
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = NAME
    statuses = server.status_stub.GetModelStatus(status_request, timeout=30).model_version_status
    assert statuses[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


def test_concurrent_requests_are_batched_and_exact(server):
    cases = [helpers.batch([n], seed=n) for n in (3, 9, 5, 12, 1, 8, 6, 10)]

    def call(case):
        return grpc_predict(server, {"features": case[0], "lengths": case[1]})[1]["log_likelihoods"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, cases))
    for (features, lengths), got in zip(cases, results):
        assert got.shape == (1, lengths[0], helpers.NUM_TARGETS)
        np.testing.assert_allclose(got, helpers.reference(server.model, features, lengths)["log_likelihoods"],
                                   atol=ATOL)


def test_stream_step_over_grpc_equals_whole(server):
    meta = read_metadata(server.base / NAME / "1")
    features, lengths = helpers.batch([17], seed=9)

    def step(inputs):
        return grpc_predict(server, inputs, signature="stream_step")[1]

    scorer = StreamingScorer(step, meta.states, meta.label_delay)
    streamed = np.concatenate([scorer.push(features[:, i:i + 5]) for i in range(0, 17, 5)] + [scorer.flush()], 1)
    np.testing.assert_allclose(streamed, helpers.reference(server.model, features, lengths)["log_likelihoods"],
                               atol=ATOL)


GOOD = {"inputs": {"features": np.ones((1, 3, helpers.DIM)).tolist(), "lengths": [3]}}


def _inputs(**override):
    body = {"features": np.ones((1, 3, helpers.DIM)).tolist(), "lengths": [3]}
    body.update(override)
    return {"inputs": body}


@pytest.mark.parametrize("path,raw,status,message", [
    (f"/v1/models/{NAME}:predict", b"{not json", 400, "JSON Parse error"),
    (f"/v1/models/{NAME}:predict", json.dumps({"foo": 1}).encode(), 400, "Missing 'instances' or 'inputs'"),
    (f"/v1/models/{NAME}:predict", json.dumps({**GOOD, "instances": [1]}).encode(), 400, "Not both"),
    (f"/v1/models/{NAME}:predict", json.dumps(_inputs(features="abc")).encode(), 400, "expects float"),
    (f"/v1/models/{NAME}:predict", json.dumps(_inputs(features=[1.0, 2.0])).encode(), 400, "must have rank 3"),
    (f"/v1/models/{NAME}:predict", json.dumps(_inputs(features=np.ones((1, 3, 5)).tolist())).encode(), 400,
     "must have shape"),
    (f"/v1/models/{NAME}:predict", json.dumps(_inputs(lengths=[2.5])).encode(), 400, "expects int32"),
    (f"/v1/models/{NAME}:predict", json.dumps(_inputs(lengths=[4])).encode(), 400, "lengths must not exceed"),
    (f"/v1/models/{NAME}:predict", json.dumps(_inputs(extra=[1])).encode(), 400, "alias not found"),
    (f"/v1/models/{NAME}:predict", json.dumps({"inputs": {"features": [[[1.0]]]}}).encode(), 400,
     "Missing input"),
    (f"/v1/models/{NAME}:predict",
     json.dumps(_inputs(features=[[[float("nan")] * helpers.DIM] * 3])).encode(), 400, "NaN or Inf"),
    (f"/v1/models/{NAME}:predict", json.dumps({**GOOD, "signature_name": "nope"}).encode(), 400,
     'Serving signature name: "nope" not found'),
    ("/v1/models/other:predict", json.dumps(GOOD).encode(), 404, "Servable not found for request: Latest(other)"),
    (f"/v1/models/{NAME}/versions/9:predict", json.dumps(GOOD).encode(), 404, f"Specific({NAME}, 9)"),
    (f"/v1/models/{NAME}/versions/x:predict", json.dumps(GOOD).encode(), 400, "Failed to convert version"),
    ("/v2/whatever", json.dumps(GOOD).encode(), 404, "Malformed request"),
    (f"/v1/models/{NAME}:predict", b" " * (MAX_BODY + 1), 413, "exceeds the limit"),
])
def test_bad_rest_requests_then_good_one(server, path, raw, status, message):
    got_status, body = http_call(server, "POST", path, raw=raw)
    assert got_status == status, body
    assert set(body) == {"error"} and message in body["error"]
    assert http_call(server, "POST", f"/v1/models/{NAME}:predict", GOOD)[0] == 200


@pytest.mark.parametrize("kwargs,code,message", [
    (dict(inputs={"features": np.ones((1, 3, 5), np.float32), "lengths": np.array([3], np.int32)}),
     grpc.StatusCode.INVALID_ARGUMENT, "must have shape"),
    (dict(inputs={"features": np.ones((1, 3, helpers.DIM), np.float64) * np.inf, "lengths": np.array([3])}),
     grpc.StatusCode.INVALID_ARGUMENT, "NaN or Inf"),
    (dict(inputs={"features": np.ones((1, 3, helpers.DIM), np.float32), "lengths": np.array([3], np.int32)},
          name="other"), grpc.StatusCode.NOT_FOUND, "Servable not found"),
    (dict(inputs={"features": np.ones((1, 3, helpers.DIM), np.float32), "lengths": np.array([3], np.int32)},
          signature="nope"), grpc.StatusCode.INVALID_ARGUMENT, "not found in signature def"),
    (dict(inputs={"features": np.ones((1, 2000, helpers.DIM), np.float32), "lengths": np.array([3], np.int32)}),
     grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
])
def test_bad_grpc_requests_then_good_one(server, kwargs, code, message):
    with pytest.raises(grpc.RpcError) as error:
        grpc_predict(server, **kwargs)
    assert error.value.code() == code and message in error.value.details()
    features, lengths = helpers.batch([4])
    assert grpc_predict(server, {"features": features, "lengths": lengths})[0].model_spec.version.value >= 1


def test_remote_log_likelihoods_is_what_the_decoder_gets(server):
    from serving.recognize import remote_log_likelihoods

    features, lengths = helpers.batch([9])
    got = remote_log_likelihoods(server.stub, NAME, None, "serving_default",
                                 {"features": features, "lengths": lengths}, timeout=60)
    want = helpers.reference(server.model, features, lengths)["log_likelihoods"][0]
    np.testing.assert_allclose(got, want, atol=ATOL)
    samples = np.random.default_rng(3).normal(scale=300.0, size=1200).astype(np.float32)
    _, full = grpc_predict(server, {"waveforms": samples[None], "lengths": np.array([1200], np.int32)}, "waveform")
    got = remote_log_likelihoods(server.stub, NAME, None, "waveform",
                                 {"waveforms": samples[None], "lengths": np.array([1200], np.int32)}, timeout=60)
    assert got.shape == (int(full["num_frames"][0]), helpers.NUM_TARGETS)  # trimmed to the valid frames
    np.testing.assert_allclose(got, full["log_likelihoods"][0, :got.shape[0]], atol=ATOL)


def test_a_bad_clients_lengths_never_fail_the_good_clients_batched_with_it(server):
    """lengths are checked per request before batching: in a padded batch the graph's check would pass a too-long
    length (the batch is longer) or fail every request of the batch (a negative one)."""
    good = [helpers.batch([n], seed=n) for n in (3, 9, 5, 12, 8, 6)]
    short_features = helpers.batch([4])[0]
    bad = [(short_features, np.array([-1], np.int32)), (short_features, np.array([11], np.int32))] * 3

    def call(case):
        try:
            return grpc_predict(server, {"features": case[0], "lengths": case[1]})[1]["log_likelihoods"]
        except grpc.RpcError as error:
            return error

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(call, [c for pair in zip(good, bad) for c in pair]))
    for (features, lengths), got in zip(good, results[0::2]):
        np.testing.assert_allclose(got, helpers.reference(server.model, features, lengths)["log_likelihoods"],
                                   atol=ATOL)
    for (_, lengths), got in zip(bad, results[1::2]):
        assert isinstance(got, grpc.RpcError) and got.code() == grpc.StatusCode.INVALID_ARGUMENT
        expected = "must be >= 0" if lengths[0] < 0 else "must not exceed the time dimension (4), got 11"
        assert expected in got.details()


@pytest.mark.parametrize("method, path", [
    ("POST", f"/v1/models/{NAME}:classify"), ("POST", f"/v1/models/{NAME}/versions/x:predict"),
    ("POST", f"/v1/models/{NAME}"), ("POST", "/healthz"),
])
def test_early_answers_drop_the_body_so_keep_alive_stays_in_step(server, method, path):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        body = json.dumps({"instances": [[1.0, 2.0]], "padding": "x" * 5000})
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        first = connection.getresponse()
        first.read()
        assert 400 <= first.status < 600
        connection.request("GET", f"/v1/models/{NAME}")  # the same connection
        second = connection.getresponse()
        assert second.status == 200, second.read()[:300]
        assert json.loads(second.read())["model_version_status"]
    finally:
        connection.close()


def test_a_content_length_that_is_not_ascii_digits_is_a_400(server):
    import socket

    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
        sock.sendall(f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: x\r\nContent-Length: \u0663\r\n\r\n{{}}"
                     .encode())
        chunks = []
        while chunk := sock.recv(4096):  # the server closes this connection: where its body ends is unknown
            chunks.append(chunk)
        reply = b"".join(chunks).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 400") and "bad Content-Length" in reply


def test_a_tiny_tensorproto_declaring_a_huge_shape_is_refused_before_it_is_expanded(server):
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in (1, 3_000_000, helpers.DIM)])
    huge = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0], tensor_shape=shape)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    request.inputs["features"].CopyFrom(huge)
    request.inputs["lengths"].CopyFrom(tf.make_tensor_proto(np.array([3], np.int32)))
    assert request.ByteSize() < 200
    with pytest.raises(grpc.RpcError) as error:
        server.stub.Predict(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "declares shape [1, 3000000, 33]" in error.value.details()


@contextlib.contextmanager
def extra_rest(server, **kwargs):
    """Another REST front end over the fixture's service, with its own settings (`serving.rest.RestServer` args)."""
    from serving.rest import RestServer

    rest = RestServer(("127.0.0.1", 0), server.service, **kwargs)
    rest.rest_port = rest.port  # what http_call reads
    threading.Thread(target=rest.serve_forever, daemon=True).start()
    try:
        yield rest
    finally:
        rest.begin_shutdown()
        rest.wait_closed(5)
        rest.server_close()


def test_a_client_that_stalls_inside_its_headers_is_disconnected(server):
    import socket

    with extra_rest(server, header_timeout=0.5, max_workers=1) as rest:
        with socket.create_connection(("127.0.0.1", rest.port), timeout=10) as sock:
            sock.sendall(f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: x\r\n".encode())  # never finished
            assert _closed_by_peer(sock), "a client stalled inside its headers kept its connection"
        assert http_call(rest, "GET", "/healthz")[0] == 200  # the only worker is free again


def test_a_response_over_the_limit_is_a_413_naming_it(server):
    features, lengths = helpers.batch([5])
    body = {"inputs": {"features": features.tolist(), "lengths": lengths.tolist()}}
    values = 2 * 5 * helpers.NUM_TARGETS  # log_likelihoods and log_posteriors
    # Refused before the reply is built (fewer than 2 bytes a value), and after it is built (just too long).
    for limit in (values, 2 * values + 10):
        with extra_rest(server, max_response_bytes=limit) as rest:
            status, reply = http_call(rest, "POST", f"/v1/models/{NAME}:predict", body)
            assert status == 413 and f"exceed the limit of {limit} bytes" in reply["error"], reply
            assert http_call(rest, "GET", "/healthz")[0] == 200


def test_rest_connections_share_a_bounded_pool_of_workers(server):
    """More keep-alive clients than workers are all served (idle connections give their worker up); the thread
    count stays at the bound."""
    def client(port):
        connection, statuses = None, []
        for _ in range(3):
            for _attempt in range(20):  # a keep-alive client reconnects when the server closed an idle connection
                connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                try:
                    connection.request("GET", f"/v1/models/{NAME}")
                    response = connection.getresponse()
                    response.read()
                    statuses.append(response.status)
                    break
                except (http.client.RemoteDisconnected, ConnectionError):
                    connection.close()
                    connection = None
        if connection:
            connection.close()
        return statuses

    with extra_rest(server, max_workers=2) as rest, concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(client, [rest.port] * 12))
        assert results == [[200] * 3] * 12
        assert rest.num_workers() == 2


def test_mixed_good_and_bad_clients_over_rest_and_grpc(server):
    """The loopback soak (bench/serving_soak.py, `make soak`) in small: every good request is answered with the
    unbatched scores and every malformed one with its own error, whatever it was batched or interleaved with."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "serving_soak", os.path.join(os.path.dirname(__file__), "..", "..", "bench", "serving_soak.py"))
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    signature = server.manager.get(NAME).signature("serving_default")
    cases = soak.make_cases(240, helpers.DIM, NAME, lambda features, lengths: signature(
        {"features": features, "lengths": lengths})["log_likelihoods"], bad_fraction=0.1, num_distinct=8)
    result = soak.run_mixed(server.rest_port, server.grpc_port, cases, NAME, concurrency=16)
    assert result["good_failures"] == [] and result["bad_mismatches"] == []
    assert result["sent"] == 240 and result["bad"] >= 10


def test_new_version_is_picked_up_without_restart(server):
    # Swaps the served model: tests that compare against server.model belong above this one.
    other = helpers.make_model(seed=99)
    helpers.export(other, server.base, version=2, signatures=("serving_default",))
    assert wait_for(lambda: server.manager.get(NAME).version == 2, timeout=20)
    features, lengths = helpers.batch([5])
    response, outputs = grpc_predict(server, {"features": features, "lengths": lengths})
    assert response.model_spec.version.value == 2
    np.testing.assert_allclose(outputs["log_likelihoods"], helpers.reference(other, features, lengths)
                               ["log_likelihoods"], atol=ATOL)
    status, body = http_call(server, "GET", f"/v1/models/{NAME}")
    assert [(s["version"], s["state"]) for s in body["model_version_status"]] == [("2", "AVAILABLE"), ("1", "END")]


def test_cli_serves_and_shuts_down_on_sigterm(tmp_path):
    _, export_base, _ = helpers.exported()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.server", f"--model_base_path={os.path.join(export_base, NAME)}",
         f"--model_name={NAME}", "--rest_port=0", "--grpc_port=0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=os.getcwd())
    try:
        line = process.stdout.readline()
        assert line.startswith("crnn-serve ready"), line
        ports = dict(item.split("=") for item in line.split()[2:])
        conn = http.client.HTTPConnection("127.0.0.1", int(ports["rest_port"]), timeout=30)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "crnn-serve stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()


def test_serves_on_the_ipv6_loopback(tmp_path):
    _, export_base, _ = helpers.exported()
    shutil.copytree(os.path.join(export_base, NAME, "1"), tmp_path / NAME / "1")
    srv = Server(str(tmp_path / NAME), NAME, host="::1", rest_port=0, grpc_port=0, poll_seconds=0)
    try:
        connection = http.client.HTTPConnection("::1", srv.rest_port, timeout=30)
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
        connection.close()
        with grpc.insecure_channel(f"[::1]:{srv.grpc_port}") as channel:
            srv.stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            features, lengths = helpers.batch([4])
            assert grpc_predict(srv, {"features": features, "lengths": lengths})[0].model_spec.version.value == 1
    finally:
        srv.stop(2)


def _closed_by_peer(sock):
    """True when the peer has closed `sock` (EOF or reset) within its timeout; False when it is still open."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_shutdown_closes_idle_keep_alive_connections_and_finishes_in_flight_requests(tmp_path):
    """What SIGTERM runs: idle keep-alive connections are closed at once, new connections refused, the request in
    flight answered (with Connection: close), all well within the grace period."""
    import socket

    _, export_base, _ = helpers.exported()
    shutil.copytree(os.path.join(export_base, NAME, "1"), tmp_path / NAME / "1")
    srv = Server(str(tmp_path / NAME), NAME, rest_port=0, grpc_port=-1, poll_seconds=0)
    entered, release = threading.Event(), threading.Event()
    predict = srv.service.predict

    def slow_predict(*args, **kwargs):
        entered.set()
        assert release.wait(30)
        return predict(*args, **kwargs)

    srv.service.predict = slow_predict
    idle = http.client.HTTPConnection("127.0.0.1", srv.rest_port, timeout=30)
    busy = http.client.HTTPConnection("127.0.0.1", srv.rest_port, timeout=30)
    stopper = None
    try:
        idle.request("GET", f"/v1/models/{NAME}")
        assert idle.getresponse().read() and idle.sock is not None  # kept alive, now idle
        busy.request("POST", f"/v1/models/{NAME}:predict", json.dumps(GOOD).encode())
        assert entered.wait(30)
        grace = 20.0
        stopper = threading.Thread(target=srv.stop, args=(grace,))
        started = time.monotonic()
        stopper.start()
        idle.sock.settimeout(5)
        assert _closed_by_peer(idle.sock), "an idle keep-alive connection stayed open after shutdown began"
        with pytest.raises((ConnectionRefusedError, ConnectionResetError)):  # refused, or reset from the backlog
            socket.create_connection(("127.0.0.1", srv.rest_port), timeout=5).close()
        release.set()
        response = busy.getresponse()
        assert response.status == 200 and json.loads(response.read())["outputs"]
        assert response.getheader("Connection") == "close"
        stopper.join(grace)
        assert not stopper.is_alive() and time.monotonic() - started < grace
    finally:
        release.set()
        idle.close()
        busy.close()
        if stopper is None:
            srv.stop(2)


def test_a_request_arriving_on_a_keep_alive_connection_after_shutdown_began_is_refused(server):
    from serving.rest import RestServer

    rest = RestServer(("127.0.0.1", 0), server.service)
    threading.Thread(target=rest.serve_forever, daemon=True).start()
    connection = http.client.HTTPConnection("127.0.0.1", rest.port, timeout=30)
    try:
        connection.request("GET", f"/v1/models/{NAME}")
        assert connection.getresponse().read()
        rest.begin_shutdown()
        try:
            connection.request("GET", f"/v1/models/{NAME}")
            response = connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            response = None  # closed while idle: not accepted either
        if response is not None:
            assert response.status == 503 and "shutting down" in json.loads(response.read())["error"]
            assert response.getheader("Connection") == "close"
        assert rest.wait_closed(10)
    finally:
        connection.close()
        rest.server_close()


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("0", "0")], ids=["unset_turns_on", "opt_out_kept"])
def test_prefer_onednn_respects_an_explicit_choice(monkeypatch, preset, expected):
    from serving.server import prefer_onednn

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "placeholder")  # records the original, restored afterwards
    if preset is None:
        monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    else:
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", preset)
    prefer_onednn()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == expected

