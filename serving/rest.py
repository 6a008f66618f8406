"""TF Serving's REST API on the standard library's ThreadingHTTPServer.

Routes (as TF Serving, https://www.tensorflow.org/tfx/serving/api_rest):
  POST /v1/models/NAME[/versions/V]:predict   {"signature_name"?, "instances": [...]} → {"predictions": [...]}
                                              {"signature_name"?, "inputs": {...}|value} → {"outputs": {...}|value}
  GET  /v1/models/NAME[/versions/V]           → {"model_version_status": [...]}
  GET  /v1/models/NAME[/versions/V]/metadata  → {"model_spec": {...}, "metadata": {"signature_def": {...}}}
Ours:
  GET  /healthz                               → 200 {"status": "SERVING", ...} once a version is loaded, else 503
  POST /v1/recognize, /v1/models/NAME[/versions/V]:recognize → text with word times (see serving.recognize)
Errors are `{"error": "..."}` with TF Serving's HTTP status for the gRPC code (serving.errors.HTTP_STATUS).
"""
import http.server
import json
import logging
import re
import threading

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


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    timeout = 60  # idle keep-alive connections are closed after this many seconds
    server_version = "crnn-serve"

    def log_message(self, fmt, *args):  # route access logs through logging at debug level
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status, payload):
        body = json.dumps(payload, default=_json_default).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self, method):
        state = self.server.state
        with state.lock:
            state.active += 1
        self._body_consumed = False
        try:
            try:
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


class _State:
    def __init__(self, service, recognizer, max_body_bytes):
        self.service, self.recognizer, self.max_body_bytes = service, recognizer, max_body_bytes
        self.lock = threading.Lock()
        self.active = 0


class RestServer(http.server.ThreadingHTTPServer):
    """The REST front end.

    Args:
      address: (host, port); port 0 picks a free one (see `port`).
      service: a `ScoringService`.
      recognizer: optional `serving.recognize.Recognizer` for the recognize routes. Default None.
      max_body_bytes: largest accepted request body. Default 64 MiB.
    """

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: 5 (the default) reset fresh connections under a burst

    def __init__(self, address, service, recognizer=None, max_body_bytes=64 << 20):
        super().__init__(address, _Handler)
        self.state = _State(service, recognizer, max_body_bytes)

    @property
    def port(self):
        return self.server_address[1]

    def active_requests(self):
        with self.state.lock:
            return self.state.active


def _json_default(value):
    """numpy scalars (e.g. in recognizer results) as plain JSON numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)
