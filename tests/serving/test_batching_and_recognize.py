"""Batcher queue bound and merging, and the recognize route's chain (with a stub decoder)."""
import shutil
import threading
import time
import types

import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving.batching import Batcher
from serving.errors import ServingError
from serving.recognize import Recognizer


class _Sig:
    def __init__(self, name, fn):
        self.name, self._fn = name, fn
        self.inputs = {"features": tf.TensorSpec([None, None, 2], tf.float32)}
        self.outputs = {"y": tf.TensorSpec([None, None, 2], tf.float32)}
        self.calls = []

    def __call__(self, inputs):
        self.calls.append(inputs["features"].shape)
        return self._fn(inputs)


def test_full_queue_is_resource_exhausted_and_batches_pad_time():
    release = threading.Event()

    def slow(inputs):
        release.wait(10)
        return {"y": inputs["features"] * 2}

    servable = types.SimpleNamespace(metadata={})
    signature = _Sig("serving_default", slow)
    batcher = Batcher(max_batch_size=4, batch_timeout_s=0.05, max_enqueued=2, num_threads=1)
    results = {}

    def submit(key, frames):
        results[key] = batcher.submit(servable, signature, {"features": np.full((1, frames, 2), key, np.float32)})

    threads = [threading.Thread(target=submit, args=(k, k + 1)) for k in range(1, 3)]
    for thread in threads:
        thread.start()
    # Wait until the worker holds one batch and the queue is full again.
    for _ in range(200):
        if len(signature.calls) == 1:
            break
        threading.Event().wait(0.01)
    blockers = [threading.Thread(target=submit, args=(k, 2)) for k in (5, 6)]
    for thread in blockers:
        thread.start()
    threading.Event().wait(0.1)
    with pytest.raises(ServingError) as error:
        batcher.submit(servable, signature, {"features": np.zeros((1, 2, 2), np.float32)})
    assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.value.http_status == 503
    release.set()
    for thread in threads + blockers:
        thread.join(10)
    batcher.close()
    for key, frames in ((1, 2), (2, 3), (5, 2), (6, 2)):
        np.testing.assert_array_equal(results[key]["y"], np.full((1, frames, 2), 2 * key, np.float32))
    assert max(shape[0] for shape in signature.calls) >= 2  # something was batched


@pytest.mark.parametrize("signature_name,most_at_once", [("stream_step", 1), ("serving_default", 2)])
def test_stream_steps_of_one_model_run_one_batch_at_a_time(signature_name, most_at_once):
    """Two workers: while one stream_step batch runs, the steps that arrive wait and then run as ONE batch (one read
    of the weights for all streams); other signatures may run two batches side by side."""
    running, most, lock = [0], [0], threading.Lock()
    first_started = threading.Event()

    def step(inputs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        first_started.set()
        threading.Event().wait(0.2)
        with lock:
            running[0] -= 1
        return {"y": inputs["features"] + 1}

    servable = types.SimpleNamespace(metadata={})
    signature = _Sig(signature_name, step)
    batcher = Batcher(max_batch_size=16, batch_timeout_s=0.001, num_threads=2)
    results = {}

    def submit(key):
        results[key] = batcher.submit(servable, signature, {"features": np.full((1, 3, 2), key, np.float32)})

    first = threading.Thread(target=submit, args=(0,))
    first.start()
    assert first_started.wait(10)
    others = [threading.Thread(target=submit, args=(k,)) for k in range(1, 5)]
    for thread in others:
        thread.start()
        threading.Event().wait(0.01)  # one by one, as independent streams' steps arrive
    for thread in [first, *others]:
        thread.join(10)
    batcher.close()
    assert most[0] == most_at_once
    if signature_name == "stream_step":
        assert [shape[0] for shape in signature.calls] == [1, 4]
    for key, outputs in results.items():
        np.testing.assert_array_equal(outputs["y"], np.full((1, 3, 2), key + 1, np.float32))


def test_recognizer_scores_then_decodes():
    seen = {}

    class StubDecoder:
        def decode(self, loglik, utt):
            seen["shape"] = loglik.shape
            return types.SimpleNamespace(utt=utt, words=["HELLO", "WORLD"], start_frames=[0, 5],
                                         end_frames=[5, 9], likelihood=-1.5, partial=False, num_frames=len(loglik))

    class StubService:
        def predict(self, name, version, signature, inputs, output_filter=()):
            seen["signature"] = signature
            seen["output_filter"] = list(output_filter)
            frames = np.asarray(inputs["lengths"])[0] if signature == "serving_default" else 9
            servable = types.SimpleNamespace(version=3, metadata={"feature_config": {"frame_shift_ms": 10.0}})
            outputs = {"log_likelihoods": np.zeros((1, 12, 4), np.float32)}
            if signature == "waveform":
                outputs["num_frames"] = np.array([frames])
            return servable, None, outputs

    recognizer = Recognizer(decoder=StubDecoder())
    recognizer.bind(StubService())
    result = recognizer.recognize_request({"waveform": [0.0] * 800, "utt": "u1"}, "m")
    assert seen == {"shape": (9, 4), "signature": "waveform",
                    "output_filter": ["log_likelihoods", "num_frames"]}  # no log-posteriors for the decoder
    assert result["text"] == "HELLO WORLD" and result["model_version"] == 3
    assert result["words"][1] == {"word": "WORLD", "start": 0.05, "end": 0.09}
    with pytest.raises(ServingError, match="exactly one of"):
        recognizer.recognize_request({"features": [[1.0]], "waveform": [1.0]}, "m")


def _warmup_record(signature_name, inputs=None, kind="predict_log"):
    from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_log_pb2

    if kind != "predict_log":
        return prediction_log_pb2.PredictionLog(
            classify_log=prediction_log_pb2.ClassifyLog(request=classification_pb2.ClassificationRequest()))
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature_name
    for name, value in (inputs or {}).items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def test_load_replays_the_exports_warmup_requests():
    from serving.model_manager import Servable
    from tests.export import helpers

    _, _, path = helpers.exported()
    servable = Servable(helpers.MODEL_NAME, 1, path)
    assert servable.warmup_requests == 3  # one per signature


@pytest.mark.parametrize("record, message", [
    (("nope",), 'signature name: "nope" not found'),
    (("serving_default", {"features": np.full((1, 4, 33), np.nan, np.float32), "lengths": np.array([4], np.int32)}),
     "NaN"),
    (("serving_default", None, "classify_log"), "replays only predict_log"),
], ids=["unknown_signature", "nan_input", "not_a_predict_log"])
def test_failing_warmup_fails_the_load_and_the_previous_version_keeps_serving(tmp_path, record, message):
    from serving.model_manager import WARMUP_FILE, ModelManager
    from tests.export import helpers

    _, _, path = helpers.exported()
    shutil.copytree(path, tmp_path / "1")
    manager = ModelManager(tmp_path, helpers.MODEL_NAME, poll_seconds=0)
    manager.poll()
    shutil.copytree(path, tmp_path / "2")
    with tf.io.TFRecordWriter(str(tmp_path / "2" / WARMUP_FILE)) as writer:
        writer.write(_warmup_record(*record).SerializeToString())
    manager.poll()
    state = {s["version"]: (s["state"], s["status"]["error_message"]) for s in manager.status(helpers.MODEL_NAME)}
    assert state["2"][0] == "END" and "warm-up record 0" in state["2"][1], state
    assert message.lower() in state["2"][1].lower(), state
    assert state["1"][0] == "AVAILABLE" and manager.get(helpers.MODEL_NAME).version == 1


def test_a_failed_version_is_retried_once_its_files_change(tmp_path):
    """A version copied non-atomically fails to load; it is loaded once the copy is complete, without a restart,
    and is not retried while its files stay as they were."""
    from serving.model_manager import ModelManager
    from tests.export import helpers

    _, _, path = helpers.exported()
    shutil.copytree(path, tmp_path / "1")
    manager = ModelManager(tmp_path, helpers.MODEL_NAME, poll_seconds=0)
    manager.poll()
    shutil.copytree(path, tmp_path / "2")
    variables = tmp_path / "2" / "variables"
    saved = {p.name: p.read_bytes() for p in variables.iterdir()}
    for name in saved:
        (variables / name).write_bytes(b"")  # half-copied: the variables are not there yet
    manager.poll()
    assert manager.status(helpers.MODEL_NAME, 2)[0]["state"] == "END"
    loads = []
    manager._on_load = loads.append
    manager.poll()
    assert loads == []  # unchanged files: not retried
    for name, data in saved.items():
        (variables / name).write_bytes(data)  # the copy completes
    manager.poll()
    assert [s.version for s in loads] == [2]
    assert manager.status(helpers.MODEL_NAME, 2)[0]["state"] == "AVAILABLE"
    assert manager.get(helpers.MODEL_NAME).version == 2


def _lockstep_streams(batcher, signature, num_streams, steps, return_delay_s):
    """`num_streams` clients that each send `steps` steps, the next one `return_delay_s * i` seconds after the last
    answer (stream i): the staggered round trips of concurrent gRPC streams. Returns each stream's outputs."""
    servable = types.SimpleNamespace(metadata={})
    outputs = {}

    def stream(i):
        threading.Event().wait(return_delay_s * i)
        value = np.full((1, 2, 2), i, np.float32)
        for _ in range(steps):
            value = batcher.submit(servable, signature, {"features": value})["y"]
            threading.Event().wait(return_delay_s * i)
        outputs[i] = value

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(num_streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    batcher.close()
    return outputs


@pytest.mark.parametrize("gather_timeout_s,all_gathered", [
    pytest.param(0.2, True, id="gathered"), pytest.param(0.0, False, id="no_wait")])
def test_lockstep_streams_stay_in_one_batch(gather_timeout_s, all_gathered):
    """Streams whose steps come back staggered after each answer: the batch after a stream_step batch waits for
    them, so every step but the first and last runs all six streams at once; without that wait the streams split
    into alternating batches (the 14 + 2 rows measured through gRPC)."""

    def step(inputs):
        threading.Event().wait(0.05)
        return {"y": inputs["features"] + 1}

    signature = _Sig("stream_step", step)
    batcher = Batcher(max_batch_size=16, batch_timeout_s=0.001, num_threads=2,
                      stream_gather_timeout_s=gather_timeout_s)
    outputs = _lockstep_streams(batcher, signature, num_streams=6, steps=5, return_delay_s=0.005)
    rows = [shape[0] for shape in signature.calls]
    assert sum(rows) == 30
    for i in range(6):  # every step of every stream ran once, in order
        np.testing.assert_array_equal(outputs[i], np.full((1, 2, 2), i + 5, np.float32))
    assert (set(rows[1:-1]) == {6}) == all_gathered, rows


def test_a_stream_that_ends_delays_the_next_step_once():
    """Two streams, one ends after its first step: the other's next step waits one gather pause for it, and its
    later steps none (the batcher now expects one row)."""
    pause = 0.3

    def step(inputs):
        return {"y": inputs["features"] + 1}

    servable = types.SimpleNamespace(metadata={})
    signature = _Sig("stream_step", step)
    batcher = Batcher(batch_timeout_s=0.05, num_threads=1, stream_gather_timeout_s=pause)
    both = [threading.Thread(target=batcher.submit, args=(servable, signature,
                                                         {"features": np.zeros((1, 2, 2), np.float32)}))
            for _ in range(2)]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join(10)
    assert [shape[0] for shape in signature.calls] == [2]
    times = []
    for _ in range(4):
        start = time.monotonic()
        batcher.submit(servable, signature, {"features": np.zeros((1, 2, 2), np.float32)})
        times.append(time.monotonic() - start)
    batcher.close()
    assert times[0] >= pause * 0.9, times
    assert max(times[1:]) < pause / 2, times


def test_other_signatures_are_served_while_stream_steps_gather():
    """While a worker waits for the streams of the last step batch to come back, another worker runs other requests:
    a serving_default request is not held up by the stream pause."""
    pause = 0.5

    def run(inputs):
        return {"y": inputs["features"] + 1}

    servable = types.SimpleNamespace(metadata={})
    step, score = _Sig("stream_step", run), _Sig("serving_default", run)
    batcher = Batcher(batch_timeout_s=0.05, num_threads=2, stream_gather_timeout_s=pause)
    features = {"features": np.zeros((1, 2, 2), np.float32)}
    both = [threading.Thread(target=batcher.submit, args=(servable, step, features)) for _ in range(2)]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join(10)
    assert [shape[0] for shape in step.calls] == [2]
    lone = threading.Thread(target=batcher.submit, args=(servable, step, features))  # waits for the other stream
    lone.start()
    threading.Event().wait(0.05)
    start = time.monotonic()
    batcher.submit(servable, score, features)
    took = time.monotonic() - start
    lone.join(10)
    batcher.close()
    assert took < pause / 2, took
    assert [shape[0] for shape in step.calls] == [2, 1] and [shape[0] for shape in score.calls] == [1]
