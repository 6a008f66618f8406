"""Batcher queue bound and merging, and the recognize route's chain (with a stub decoder)."""
import threading
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
