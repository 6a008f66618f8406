"""Loads the newest SavedModel version(s) under a model base path and picks up new ones by polling.

Layout as in TF Serving: `model_base_path/<integer version>/saved_model.pb`. Like TF Serving's default
"latest" version policy, the newest `num_versions` versions are served; older ones are unloaded once a newer one
is AVAILABLE. A version that fails to load is reported in the status and the previous one keeps serving.
"""
import json
import logging
import pathlib
import re
import threading
import time

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from serving.errors import ServingError, invalid, not_found

log = logging.getLogger(__name__)

METADATA_ASSET = "crnn_metadata.json"  # written by crnn_tf.export (read as a plain file: no crnn_tf import)
WARMUP_FILE = pathlib.Path("assets.extra") / "tf_serving_warmup_requests"  # TF Serving's fixed location
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit


class Signature:
    """One callable signature of a loaded version.

    Attributes:
      name: signature key.
      fn: the concrete function (keyword tensors → dict of tensors).
      inputs / outputs: dict name → `tf.TensorSpec` (shape may have None dims).
    """

    def __init__(self, name, fn):
        self.name = name
        self.fn = fn
        self.inputs = dict(fn.structured_input_signature[1])
        self.outputs = dict(fn.structured_outputs)

    def validate(self, inputs):
        """Converts and checks request inputs against the signature.

        Args:
          inputs: dict name → numpy array (or nested lists).

        Returns:
          dict name → numpy array of the signature's dtype.

        Raises:
          ServingError INVALID_ARGUMENT: missing/unknown input, wrong dtype, rank or shape, NaN/Inf, batch sizes
            that disagree.
        """
        unknown = sorted(set(inputs) - set(self.inputs))
        if unknown:
            raise invalid(f"input tensor alias not found in signature: {unknown[0]}. Inputs expected to be in "
                          f"the set {{{','.join(sorted(self.inputs))}}}.")
        missing = sorted(set(self.inputs) - set(inputs))
        if missing:
            raise invalid(f"Missing input(s) {missing} for signature '{self.name}'; expected "
                          f"{{{','.join(sorted(self.inputs))}}}.")
        converted = {}
        for name, spec in self.inputs.items():
            converted[name] = _convert(name, inputs[name], spec)
        batch_sizes = {name: value.shape[0] for name, value in converted.items()}
        if len(set(batch_sizes.values())) > 1:
            raise invalid(f"inputs disagree on the batch size (dimension 0): {batch_sizes}")
        self._check_lengths(converted)
        return converted

    def _check_lengths(self, converted):
        """`lengths` within [0, this request's own time axis], checked before the request can join a batch: in a
        batch the graph's own check sees the batch's padded time axis, and its failure would fail every request
        batched with this one."""
        if "lengths" not in converted:
            return
        lengths = converted["lengths"]
        times = [value.shape[1] for name, value in converted.items()
                 if name != "lengths" and self.inputs[name].shape.rank and self.inputs[name].shape.rank >= 2
                 and self.inputs[name].shape[1] is None]
        if lengths.size and lengths.min() < 0:
            raise invalid(f"lengths must be >= 0, got {int(lengths.min())}")
        if times and lengths.size and lengths.max() > max(times):
            raise invalid(f"lengths must not exceed the time dimension ({max(times)}), got {int(lengths.max())}")

    def __call__(self, inputs):
        """Runs the function on validated numpy inputs; TF argument errors become INVALID_ARGUMENT."""
        try:
            outputs = self.fn(**{name: tf.constant(value) for name, value in inputs.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            raise invalid(_error_message(error)) from None
        return {name: value.numpy() for name, value in outputs.items()}


def _error_message(error):
    """The client-facing part of a TF runtime error (the failed in-graph assertion's message when there is one)."""
    message = getattr(error, "message", None) or str(error) or repr(error)
    assertion = re.search(r"assertion failed: \[([^\]]*)\]", message)
    if assertion:
        return assertion.group(1)
    lines = [line for line in message.splitlines()
             if line.strip() and not line.startswith(("Graph execution error", "Detected at node"))]
    return lines[0].strip() if lines else message


def _convert(name, value, spec):
    dtype = spec.dtype.as_numpy_dtype
    array = value if isinstance(value, np.ndarray) else None
    if array is None:
        try:
            array = np.asarray(value)
        except ValueError:
            raise invalid(f"input '{name}' is ragged: all rows must have the same shape") from None
    if array.dtype == object:
        raise invalid(f"input '{name}' is ragged or not numeric: all rows must have the same shape")
    if spec.dtype.is_floating:
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise invalid(f"input '{name}' expects {spec.dtype.name} but got values of type {array.dtype}")
        array = array.astype(dtype, copy=False)
        if not np.all(np.isfinite(array)):
            raise invalid(f"input '{name}' contains NaN or Inf")
    elif spec.dtype.is_integer:
        # JSON has one number type: 3.0 is an acceptable integer, 3.5 or "3" are not.
        integral_floats = array.dtype.kind == "f" and np.all(np.mod(array, 1) == 0)
        if array.dtype.kind not in "iu" and not integral_floats:
            raise invalid(f"input '{name}' expects {spec.dtype.name} but got values of type {array.dtype}")
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise invalid(f"input '{name}' has values outside the range of {spec.dtype.name}")
        array = array.astype(dtype, copy=False)
    else:
        array = array.astype(dtype, copy=False)
    if array.ndim != spec.shape.rank:
        raise invalid(f"input '{name}' must have rank {spec.shape.rank} (shape {_shape(spec.shape)}), "
                      f"got shape {list(array.shape)}")
    for axis, (want, got) in enumerate(zip(spec.shape.as_list(), array.shape)):
        if want is not None and want != got:
            raise invalid(f"input '{name}' must have shape {_shape(spec.shape)}, got {list(array.shape)} "
                          f"(dimension {axis})")
    return array


def _shape(shape):
    return "[" + ", ".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


def slow_product_warning(metadata):
    """Why this CPU serves the export slower than a float32 one (its products are bf16 and the CPU has no native
    bf16), or "" when it does not; the export chose its products on the machine that exported it."""
    if not metadata or metadata.get("matmul_dtype") != "bfloat16":
        return ""
    from crnn_tf.export.cpu import BF16_FLAGS, has_fast_bfloat16

    if has_fast_bfloat16():
        return ""
    return (f"exported with bf16 products ({metadata.get('compute_dtype')} weights), but this CPU has none of "
            f"{', '.join(f.upper() for f in BF16_FLAGS)}: they are emulated, slower than float32; re-export with "
            "--compute_dtype=float32 for this machine")


class Servable:
    """One loaded version.

    Attributes:
      name, version (int), path (pathlib.Path).
      signatures: dict key → `Signature`.
      signature_def_map: dict key → `SignatureDef` proto (from saved_model.pb, for metadata responses).
      metadata: the crnn_tf export metadata (dict) or None for other SavedModels.
    """

    def __init__(self, name, version, path):
        self.name, self.version, self.path = name, int(version), pathlib.Path(path)
        self._loaded = tf.saved_model.load(str(self.path))
        self.signatures = {key: Signature(key, fn) for key, fn in self._loaded.signatures.items()}
        saved_model = saved_model_pb2.SavedModel()
        saved_model.ParseFromString((self.path / "saved_model.pb").read_bytes())
        meta_graph = saved_model.meta_graphs[0] if saved_model.meta_graphs else meta_graph_pb2.MetaGraphDef()
        self.signature_def_map = {key: meta_graph.signature_def[key] for key in meta_graph.signature_def
                                  if key in self.signatures}
        metadata_file = self.path / "assets" / METADATA_ASSET
        self.metadata = json.loads(metadata_file.read_text()) if metadata_file.exists() else None
        self.cpu_warning = slow_product_warning(self.metadata)
        if self.cpu_warning:
            log.warning("%s version %d: %s", self.name, self.version, self.cpu_warning)
        self.warmup_requests = self._warm_up()

    def _warm_up(self):
        """Replays the version's warm-up requests as TF Serving does at load; returns how many ran.

        Reads `assets.extra/tf_serving_warmup_requests` (a TFRecord of PredictionLog; crnn-export writes one
        PredictRequest per signature) and runs each request through its signature once, so the first client
        request does not pay for the graph's optimisation. As in TF Serving, a record that fails, is not a
        PredictLog, or is past the 1000th fails the load.
        """
        from tensorflow_serving.apis import prediction_log_pb2

        path = self.path / WARMUP_FILE
        if not path.exists():
            return 0
        count = 0
        for index, record in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
            if index >= MAX_WARMUP_RECORDS:
                raise ValueError(f"{path}: more than {MAX_WARMUP_RECORDS} warm-up records")
            entry = prediction_log_pb2.PredictionLog.FromString(record)
            kind = entry.WhichOneof("log_type")
            if kind != "predict_log":
                raise ValueError(f"{path}: warm-up record {index} is a {kind}; this server replays only predict_log")
            request = entry.predict_log.request
            try:
                signature = self.signature(request.model_spec.signature_name)
                signature(signature.validate({name: tf.make_ndarray(t) for name, t in request.inputs.items()}))
            except ServingError as error:
                raise ValueError(f"{path}: warm-up record {index} failed: {error.message}") from None
            count += 1
        log.info("%s version %d: replayed %d warm-up requests", self.name, self.version, count)
        return count

    def signature(self, key):
        """The signature `key` ("" means serving_default); INVALID_ARGUMENT when absent (as TF Serving)."""
        key = key or "serving_default"
        if key not in self.signatures:
            raise invalid(f'Serving signature name: "{key}" not found in signature def')
        return self.signatures[key]


class ModelManager:
    """Serves the newest versions of one model and polls its base path for new ones.

    Args:
      model_base_path: directory holding integer version subdirectories.
      model_name: the served name.
      poll_seconds: seconds between file-system polls; <= 0 disables polling. Default 1.0 (TF Serving's
        `--file_system_poll_wait_seconds` default).
      num_versions: how many of the newest versions to keep loaded. Default 1 (TF Serving's latest policy).
      on_load: optional callable(Servable) run after a version loads (e.g. warm-up). Default None.
    """

    def __init__(self, model_base_path, model_name, poll_seconds=1.0, num_versions=1, on_load=None):
        self.base = pathlib.Path(model_base_path)
        self.name = model_name
        self.poll_seconds = poll_seconds
        self.num_versions = max(1, int(num_versions))
        self._on_load = on_load
        self._lock = threading.Lock()
        self._servables = {}  # version → Servable
        self._status = {}  # version → (state, error message)
        self._failed = {}  # version → fingerprint of its files when its load failed: retried once they change
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        """Loads what is on disk now, then polls in a daemon thread."""
        self.poll()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="model-poller", daemon=True)
            self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=max(5.0, 2 * self.poll_seconds))

    def _poll_loop(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - the poller must survive anything a file system does
                log.exception("polling %s failed", self.base)

    def versions_on_disk(self):
        """Integer versions with a saved_model.pb, ascending."""
        if not self.base.is_dir():
            return []
        return sorted(int(p.name) for p in self.base.iterdir()
                      if p.name.isdigit() and (p / "saved_model.pb").exists())

    def _fingerprint(self, version):
        """(path, size, mtime) of every file of a version dir: what a re-copy or a completed copy changes."""
        root = self.base / str(version)
        return tuple(sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                            for p in root.rglob("*") if p.is_file()))

    def poll(self):
        """One poll: load the newest versions not loaded yet, unload versions that fell out of the policy.

        A version whose load failed is skipped until its files change (a copy that was still running, or a
        replaced directory), then tried again.
        """
        on_disk = self.versions_on_disk()
        for version in [v for v in self._failed if v not in on_disk or self._fingerprint(v) != self._failed[v]]:
            del self._failed[version]
        wanted = [v for v in on_disk if v not in self._failed][-self.num_versions:]
        for version in wanted:
            if version in self._servables:
                continue
            self._status[version] = ("LOADING", "")
            fingerprint = self._fingerprint(version)
            try:
                servable = Servable(self.name, version, self.base / str(version))
                if self._on_load:
                    self._on_load(servable)
            except Exception as error:  # noqa: BLE001 - report, keep serving the previous version
                log.exception("loading %s version %d failed", self.name, version)
                self._failed[version] = fingerprint
                self._status[version] = ("END", f"{type(error).__name__}: {error}")
                continue
            with self._lock:
                self._servables[version] = servable
            self._status[version] = ("AVAILABLE", "")
            log.info("serving %s version %d from %s", self.name, version, servable.path)
        if any(v in self._servables for v in wanted):
            with self._lock:
                for version in [v for v in self._servables if v not in wanted]:
                    del self._servables[version]  # in-flight requests keep their reference
                    self._status[version] = ("END", "")
                    log.info("unloaded %s version %d", self.name, version)

    def get(self, name, version=None):
        """The servable for `name` and `version` (None: the newest); NOT_FOUND in TF Serving's words."""
        with self._lock:
            if name == self.name and self._servables:
                if version is None:
                    return self._servables[max(self._servables)]
                if int(version) in self._servables:
                    return self._servables[int(version)]
        request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        raise not_found(f"Servable not found for request: {request}")

    def status(self, name, version=None):
        """TF Serving's GetModelStatus body: list of {"version", "state", "status"}."""
        if name != self.name:
            raise not_found(f"Could not find any versions of model {name}")
        versions = sorted(self._status) if version is None else [int(version)]
        if version is not None and int(version) not in self._status:
            raise not_found(f"Could not find version {version} of model {name}")
        return [{"version": str(v), "state": self._status[v][0],
                 "status": {"error_code": "OK" if not self._status[v][1] else "UNKNOWN",
                            "error_message": self._status[v][1]}}
                for v in reversed(versions)]

    @property
    def ready(self):
        """True once at least one version is AVAILABLE."""
        with self._lock:
            return bool(self._servables)


def wait_for(predicate, timeout, interval=0.05):
    """Polls `predicate` until it is true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
