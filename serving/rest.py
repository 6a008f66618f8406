"""TF Serving's REST API on the standard library's HTTP server, with a bounded pool of connection workers.

Routes (as TF Serving, https://www.tensorflow.org/tfx/serving/api_rest):
  POST /v1/models/NAME[/versions/V]:predict   {"signature_name"?, "instances": [...]} → {"predictions": [...]}
                                              {"signature_name"?, "inputs": {...}|value} → {"outputs": {...}|value}
  GET  /v1/models/NAME[/versions/V]           → {"model_version_status": [...]}
  GET  /v1/models/NAME[/versions/V]/metadata  → {"model_spec": {...}, "metadata": {"signature_def": {...}}}
Ours:
  GET  /healthz                               → 200 {"status": "SERVING", ...} once a version is loaded, else 503
  POST /v1/recognize, /v1/models/NAME[/versions/V]:recognize → text with word times (see serving.recognize)
Errors are `{"error": "..."}` with TF Serving's HTTP status for the gRPC code (serving.errors.HTTP_STATUS).

Memory is bounded by what requests carry and by the pool: at most `max_workers` connections are served at once
(more wait in a bounded queue; idle keep-alive connections give their worker up to them), a body over
`max_body_bytes` is refused (413) and so is a response over `max_response_bytes`.
"""
import collections
import http.server
import json
import logging
import re
import select
import socket
import threading
import time

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from serving.errors import ServingError, invalid, not_found

log = logging.getLogger(__name__)

_MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
    r"(?P<suffix>:predict|:recognize|:classify|:regress|/metadata)?$")


def parse_version(text):
    """A version path component → int (INVALID_ARGUMENT, as TF Serving, when it is not numeric)."""
    if text is None:
        return None
    if not text.isdigit():
        raise invalid(f"Failed to convert version: {text} to numeric.")
    return int(text)


def request_to_inputs(body, signature):
    """Decodes a predict body into (dict name → value, row_format) following TF Serving's JSON rules.

    Args:
      body: the parsed JSON object.
      signature: the `serving.model_manager.Signature` (its input names resolve unnamed values).
    """
    if not isinstance(body, dict):
        raise invalid("JSON Value: the request body must be a JSON object")
    if "instances" in body and "inputs" in body:
        raise invalid("Not both of 'instances' or 'inputs' can be specified")
    names = sorted(signature.inputs)
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise invalid("'instances' must be a non-empty JSON array")
        if all(isinstance(item, dict) for item in instances):
            missing = [i for i, item in enumerate(instances) if set(item) != set(instances[0])]
            if missing:
                raise invalid(f"Failed to process element: {missing[0]} of 'instances' list. Its named inputs "
                              f"differ from element 0's ({sorted(instances[0])})")
            return {name: [item[name] for item in instances] for name in instances[0]}, True
        if any(isinstance(item, dict) for item in instances):
            raise invalid("'instances' mixes named (object) and unnamed elements")
        if len(names) != 1:
            raise invalid(f"The signature has {len(names)} inputs {names}: each element of 'instances' must be "
                          "an object naming them")
        return {names[0]: instances}, True
    if "inputs" in body:
        inputs = body["inputs"]
        if isinstance(inputs, dict):
            return inputs, False
        if len(names) != 1:
            raise invalid(f"The signature has {len(names)} inputs {names}: 'inputs' must be an object naming them")
        return {names[0]: inputs}, False
    raise invalid("Missing 'instances' or 'inputs' key")


def outputs_to_response(outputs, row_format):
    """TF Serving's response body: row → {"predictions": ...}, columnar → {"outputs": ...}."""
    if row_format:
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values())).tolist()}
        batch = next(iter(outputs.values())).shape[0]
        lists = {name: value.tolist() for name, value in outputs.items()}
        return {"predictions": [{name: lists[name][i] for name in lists} for i in range(batch)]}
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values())).tolist()}
    return {"outputs": {name: value.tolist() for name, value in outputs.items()}}


def metadata_response(servable):
    """TF Serving's GetModelMetadata as JSON (signature defs from saved_model.pb)."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature_def in servable.signature_def_map.items():
        signature_map.signature_def[key].CopyFrom(signature_def)
    return {
        "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
        "metadata": {"signature_def": json_format.MessageToDict(signature_map, preserving_proto_field_name=True)},
    }


SHUTTING_DOWN = "the server is shutting down"
_IDLE_POLL_S = 0.1  # how often an idle keep-alive connection looks for connections waiting for a worker


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    timeout = 60  # idle keep-alive connections are closed after this many seconds (and so is a stalled read)
    server_version = "crnn-serve"

    def log_message(self, fmt, *args):  # route access logs through logging at debug level
        log.debug("%s " + fmt, self.address_string(), *args)

    def handle(self):
        """Serves this connection's requests until the client closes it, it idles past `timeout`, the server shuts
        down, or a waiting connection needs the worker."""
        self.close_connection = False
        while not self.close_connection and self._next_request_arrives():
            self.server.reading_started(self.connection)
            try:
                self.handle_one_request()
            finally:
                self.server.reading_done(self.connection)

    def _peek(self):
        """The next byte without consuming or blocking: b"" when none has arrived (or the client closed), None on
        a socket error."""
        self.connection.settimeout(0.0)
        try:
            return self.rfile.peek(1)[:1]
        except OSError:
            return None
        finally:
            self.connection.settimeout(self.timeout)

    def _next_request_arrives(self):
        """Waits while the connection is idle; True once the next request's first bytes are there.

        Keeping the wait here, not inside a blocking read, is what lets shutdown close idle keep-alive connections
        at once (a request already sent is still answered, with 503 and `Connection: close`), and lets an idle
        connection hand its worker to a connection queued for one.
        """
        state = self.server.state
        deadline = time.monotonic() + self.timeout
        poller = select.poll()  # not select.select: it fails on descriptors past 1023
        poller.register(self.connection, select.POLLIN)
        poller.register(state.wake_fd, select.POLLIN)
        while True:
            pending = self._peek()
            if pending is None:
                return False
            if pending:
                return True
            remaining = deadline - time.monotonic()
            if state.closing or self.server.starved() or remaining <= 0:
                return False
            events = poller.poll(1000 * min(remaining, _IDLE_POLL_S))
            if any(fd == self.connection.fileno() for fd, _ in events) and not self._peek():
                return False  # readable with nothing to read: the client closed the connection

    def _send(self, status, payload):
        state = self.server.state
        body = json.dumps(payload, default=_json_default).encode()
        if status == 200 and len(body) > state.max_response_bytes:
            status, body = 413, json.dumps({"error": _response_too_large(
                f"{len(body)} bytes", state.max_response_bytes)}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if state.closing:
            self.send_header("Connection", "close")  # sets close_connection: the client reconnects elsewhere
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self, method):
        if not self.server.reading_done(self.connection):  # cut off mid-headers: what was parsed is incomplete
            self.close_connection = True
            return
        state = self.server.state
        with state.lock:
            state.active += 1
        self._body_consumed = False
        try:
            try:
                if state.closing:  # a request that arrived after shutdown began is not started
                    raise ServingError(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
                payload, status = self._route(method), 200
            except ServingError as error:
                payload, status = {"error": error.message}, error.http_status
            except Exception as error:  # noqa: BLE001 - one bad request must not take the server down
                log.exception("%s %s failed", method, self.path)
                payload, status = {"error": f"{type(error).__name__}: {error}"}, 500
            # A request answered before its body was read (a bad path or version, an unsupported method) still
            # has that body in the stream: drop it, or the next request on this keep-alive connection would be
            # parsed from its bytes.
            self._consume_body()
            self._send(status, payload)
        finally:
            with state.lock:
                state.active -= 1

    def _content_length(self):
        """The Content-Length as an int (None when absent); only ASCII digits count."""
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        if not (length.isascii() and length.isdigit()):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"bad Content-Length {length!r}: not a number",
                               http_status=400)
        return int(length)

    def _consume_body(self):
        if self._body_consumed:
            return
        self._body_consumed = True
        try:
            length = self._content_length()
        except ServingError:
            self.close_connection = True  # where the body ends is unknown: this connection cannot go on
            return
        if length:
            self._discard(length)

    def do_GET(self):  # noqa: N802 (http.server naming)
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def _read_json(self):
        length = self._content_length()
        if length is None:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "a Content-Length header is required",
                               http_status=411)
        limit = self.server.state.max_body_bytes
        if length > limit:
            self._body_consumed = True
            self._discard(length)
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"request body of {length} bytes exceeds the limit of {limit} bytes",
                               http_status=413)
        self._body_consumed = True
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise invalid(f"JSON Parse error: {error}") from None

    def _discard(self, length):
        """Reads (and drops) an oversize body so the client sees the answer, unless it is absurdly large."""
        if length > 16 * self.server.state.max_body_bytes:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)

    def _route(self, method):
        state = self.server.state
        path = self.path.split("?", 1)[0]
        if path in ("/healthz", "/v1/healthz") and method == "GET":
            if not state.service.manager.ready:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "no model version is loaded yet")
            return {"status": "SERVING", "model": state.service.manager.name,
                    "versions": [s["version"] for s in state.service.manager.status(state.service.manager.name)
                                 if s["state"] == "AVAILABLE"]}
        if path == "/v1/recognize" and method == "POST":
            return self._recognize(state.service.manager.name, None)
        match = _MODEL_PATH.match(path)
        if not match:
            raise not_found(f"Malformed request: {method} {path}")
        name, version, suffix = match["name"], parse_version(match["version"]), match["suffix"]
        if method == "GET" and suffix is None:
            return {"model_version_status": state.service.manager.status(name, version)}
        if method == "GET" and suffix == "/metadata":
            return metadata_response(state.service.manager.get(name, version))
        if method == "POST" and suffix == ":predict":
            body = self._read_json()
            servable = state.service.manager.get(name, version)
            signature_name = body.get("signature_name", "") if isinstance(body, dict) else ""
            if not isinstance(signature_name, str):
                raise invalid("'signature_name' must be a string")
            inputs, row_format = request_to_inputs(body, servable.signature(signature_name))
            _, _, outputs = state.service.predict(name, version, signature_name, inputs)
            # At least two bytes of JSON per value ("0,"): refuse before building a reply known to be too large.
            values = sum(int(value.size) for value in outputs.values())
            if 2 * values > state.max_response_bytes:
                raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   _response_too_large(f"{values} values", state.max_response_bytes),
                                   http_status=413)
            return outputs_to_response(outputs, row_format)
        if method == "POST" and suffix == ":recognize":
            return self._recognize(name, version)
        if suffix in (":classify", ":regress"):
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{suffix[1:]} is not supported by this server")
        raise not_found(f"Malformed request: {method} {path}")

    def _recognize(self, name, version):
        recognizer = self.server.state.recognizer
        if recognizer is None:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                               "recognition is not configured: start crnn-serve with --graph_dir")
        body = self._read_json()
        return recognizer.recognize_request(body, model_name=name, version=version)


def _response_too_large(size, limit):
    return (f"the response ({size}) would exceed the limit of {limit} bytes (--max_response_bytes): send shorter "
            "inputs, fewer instances, or name the outputs you need with the gRPC output_filter")


class _State:
    def __init__(self, service, recognizer, max_body_bytes, max_response_bytes):
        self.service, self.recognizer = service, recognizer
        self.max_body_bytes, self.max_response_bytes = max_body_bytes, max_response_bytes
        self.lock = threading.Lock()
        self.active = 0
        self.closing = False
        # Written once at shutdown and never read, so it stays readable: wakes every idle connection's select.
        self._wake_read, self._wake_write = socket.socketpair()
        self.wake_fd = self._wake_read

    def begin_closing(self):
        self.closing = True
        self._wake_write.send(b"x")

    def close(self):
        self._wake_read.close()
        self._wake_write.close()


class RestServer(http.server.HTTPServer):
    """The REST front end: an accept thread (`serve_forever`) and a bounded pool of connection workers.

    A connection is served by one worker from its first request to its end. When all `max_workers` are busy, new
    connections wait in a queue of `request_queue_size` (and idle keep-alive connections are closed to free their
    workers); past that they are answered 503 and closed. Threads and memory are thus bounded by `max_workers`,
    `max_body_bytes` and `max_response_bytes`, not by the number of clients. A client that has not sent its
    request line and headers within `header_timeout` seconds of starting them is disconnected, so slow clients
    cannot hold the workers.

    Args:
      address: (host, port); port 0 picks a free one (see `port`).
      service: a `ScoringService`.
      recognizer: optional `serving.recognize.Recognizer` for the recognize routes. Default None.
      max_body_bytes: largest accepted request body (413 above). Default 64 MiB.
      max_workers: connections served at once. Default 32.
      max_response_bytes: largest response body (413 above, e.g. a waveform's scores for many senones). Default
        64 MiB.
      header_timeout: seconds a client may take over a request's line and headers. Default 10.

    Example:
      >>> rest = RestServer(("127.0.0.1", 0), service)  # doctest: +SKIP
      >>> threading.Thread(target=rest.serve_forever, daemon=True).start()  # doctest: +SKIP
      >>> rest.begin_shutdown(); rest.wait_closed(10.0)  # doctest: +SKIP
    """

    request_queue_size = 128  # the listen backlog (5, the default, reset fresh connections under a burst); also
    # the most connections waiting for a worker

    def __init__(self, address, service, recognizer=None, max_body_bytes=64 << 20, max_workers=32,
                 max_response_bytes=64 << 20, header_timeout=10.0):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        self.state = _State(service, recognizer, max_body_bytes, max_response_bytes)
        self.max_workers = max(1, int(max_workers))
        self._cond = threading.Condition()
        self._waiting = collections.deque()  # accepted connections waiting for a worker
        self._serving = set()  # connections a worker is serving
        self._workers = []
        self._idle_workers = 0
        self._stopped = False
        self.header_timeout = float(header_timeout)
        self._reading = {}  # connection → deadline for its request line and headers
        self._cut = set()  # connections disconnected for missing that deadline

    @property
    def port(self):
        return self.server_address[1]

    def active_requests(self):
        with self.state.lock:
            return self.state.active

    def starved(self):
        """True when more connections wait than there are free workers to take them."""
        return len(self._waiting) > self._idle_workers

    def num_workers(self):
        return len(self._workers)

    def reading_started(self, connection):
        with self._cond:
            self._reading[connection] = time.monotonic() + self.header_timeout

    def reading_done(self, connection):
        """Ends the header deadline of `connection`; False when it was disconnected for missing it."""
        with self._cond:
            self._reading.pop(connection, None)
            return connection not in self._cut

    def service_actions(self):
        """Run by `serve_forever` between accepts: disconnects clients past their header deadline."""
        now = time.monotonic()
        with self._cond:
            late = [connection for connection, deadline in self._reading.items() if deadline < now]
            for connection in late:
                del self._reading[connection]
                self._cut.add(connection)
        for connection in late:
            log.warning("a client took over %.0f s to send its request headers: disconnected", self.header_timeout)
            try:
                connection.shutdown(socket.SHUT_RDWR)  # its worker's read returns and the worker is free again
            except OSError:
                pass

    def process_request(self, request, client_address):
        """Queues an accepted connection for a worker (starting one while fewer than `max_workers` run)."""
        with self._cond:
            accepted = not self._stopped and len(self._waiting) < self.request_queue_size
            if accepted:
                self._waiting.append((request, client_address))
                if len(self._waiting) > self._idle_workers and len(self._workers) < self.max_workers:
                    worker = threading.Thread(target=self._work, name=f"rest-{len(self._workers)}", daemon=True)
                    self._workers.append(worker)
                    self._idle_workers += 1  # free until it takes a connection, though not waiting yet
                    worker.start()
                self._cond.notify()
        if not accepted:
            self._refuse(request)

    def _refuse(self, request):
        reason = SHUTTING_DOWN if self.state.closing else "too many connections; try again later"
        body = json.dumps({"error": reason}).encode()
        try:
            request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        self.shutdown_request(request)

    def _work(self):
        while True:
            with self._cond:
                while not self._waiting and not self._stopped:
                    self._cond.wait()
                self._idle_workers -= 1
                if not self._waiting:
                    return
                request, client_address = self._waiting.popleft()
                self._serving.add(request)
            try:
                self.finish_request(request, client_address)
            except Exception:  # noqa: BLE001 - one connection's failure must not end the worker
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                with self._cond:
                    self._serving.discard(request)
                    self._cut.discard(request)
                    self._idle_workers += 1
                    self._cond.notify_all()

    def begin_shutdown(self):
        """Stops taking connections and requests: the listening socket is closed, idle keep-alive connections are
        closed at once, a request already waiting on a connection is answered 503 with `Connection: close`, and
        requests in flight finish (their responses carry `Connection: close`)."""
        self.shutdown()  # the accept loop ends (within its poll interval)
        self.socket.close()  # connecting clients are refused, not left in the backlog
        self.state.begin_closing()

    def wait_closed(self, timeout):
        """Waits up to `timeout` seconds for every connection to end, then cuts off those left and stops the
        workers; returns True when none had to be cut off."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._serving or self._waiting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            left = list(self._serving) + [request for request, _ in self._waiting]
            self._stopped = True
            self._cond.notify_all()
        for request in left:
            try:
                request.shutdown(socket.SHUT_RDWR)  # unblocks its worker's read or write
            except OSError:
                pass
        if left:
            log.warning("shutdown grace over: %d connection(s) cut off", len(left))
        return not left

    def server_close(self):
        super().server_close()
        self.state.close()


def _json_default(value):
    """numpy scalars (e.g. in recognizer results) as plain JSON numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)
