"""Server-side batching of concurrent Predict requests (bounded queue, max batch size, timeout, time padding).

Requests for the same (version, signature) whose inputs agree in dtype and in every dimension but the batch
dimension — and, for time-aligned signatures, the time dimension — are concatenated along the batch axis, run
once, and split again. Time-aligned signatures (crnn_tf exports: `serving_default`, `stream_step`, whose outputs have
the inputs' time axis) are padded with zeros to the longest request's time; each request's outputs are trimmed back
to its own time, and since every valid frame depends only on that request's valid frames (lengths), the result equals
the unbatched one. Other signatures (e.g. `waveform`) only batch requests of identical shapes.
"""
import collections
import concurrent.futures
import logging
import threading
import time

import grpc
import numpy as np

from serving.errors import ServingError

log = logging.getLogger(__name__)

TIME_ALIGNED_SIGNATURES = ("serving_default", "stream_step")
# Signatures whose batches for one key run one at a time: concurrent streams' steps that arrive while a step batch
# runs all join the next one, so each step reads the weights once for every stream instead of once per worker.
SERIAL_SIGNATURES = ("stream_step",)


class _Task:
    __slots__ = ("servable", "signature", "inputs", "rows", "time", "future", "enqueued")

    def __init__(self, servable, signature, inputs, time_aligned):
        self.servable, self.signature, self.inputs = servable, signature, inputs
        self.rows = next(iter(inputs.values())).shape[0] if inputs else 0
        self.time = _time_length(signature, inputs) if time_aligned else None
        self.future = concurrent.futures.Future()
        self.enqueued = time.monotonic()

    def key(self):
        """Tasks with equal keys can share a batch."""
        shapes = tuple(sorted(
            (name, value.dtype.str, value.shape[2:] if self.time is not None and _has_time(self.signature, name)
             else value.shape[1:]) for name, value in self.inputs.items()))
        return (id(self.servable), self.signature.name, self.time is None, shapes)


def _has_time(signature, name):
    spec = signature.inputs[name]
    return spec.shape.rank is not None and spec.shape.rank >= 2 and spec.shape[1] is None


def _has_time_output(signature, name):
    spec = signature.outputs[name]
    return spec.shape.rank is not None and spec.shape.rank >= 2 and spec.shape[1] is None


def _time_length(signature, inputs):
    lengths = {value.shape[1] for name, value in inputs.items() if _has_time(signature, name)}
    return max(lengths) if lengths else None


class Batcher:
    """Groups concurrent requests into batches run by worker threads.

    Args:
      max_batch_size: most rows (sum of request batch sizes) per run. Default 16.
      batch_timeout_s: longest a request waits for others to join its batch. Default 0.002.
      max_enqueued: most requests waiting; more get RESOURCE_EXHAUSTED. Default 256.
      num_threads: worker threads running batches. Default 2.
      max_time_padding: a request joins a padded batch only if padding wastes at most this fraction of frames.
        Default 0.5.
      serial_signatures: signatures whose batches of one (version, shapes) key never run side by side on two
        workers (see SERIAL_SIGNATURES). Default SERIAL_SIGNATURES.
      stream_gather_timeout_s: after a serial-signature batch, the next batch of its key waits for the streams
        that batch answered to send their next step, until none has come for this long (0: no wait). Default 0.05.
    """

    def __init__(self, max_batch_size=16, batch_timeout_s=0.002, max_enqueued=256, num_threads=2,
                 max_time_padding=0.5, serial_signatures=SERIAL_SIGNATURES, stream_gather_timeout_s=0.05):
        self.max_batch_size = max(1, int(max_batch_size))
        self.batch_timeout_s = float(batch_timeout_s)
        self.max_enqueued = int(max_enqueued)
        self.max_time_padding = float(max_time_padding)
        self.serial_signatures = tuple(serial_signatures)
        self.stream_gather_timeout_s = float(stream_gather_timeout_s)
        self._pending = collections.deque()
        self._running_serial = set()  # keys of serial-signature batches now running
        self._streams_back = {}  # serial key -> (rows expected in its next batch, when its last batch ended)
        self._gathering = set()  # keys whose next batch a worker is waiting to fill
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"batcher-{i}", daemon=True)
                         for i in range(max(1, int(num_threads)))]
        for thread in self._threads:
            thread.start()

    def submit(self, servable, signature, inputs, timeout=None):
        """Runs `signature` on validated numpy `inputs` as part of a batch; returns its dict of numpy outputs.

        Raises:
          ServingError: RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE after `close`, DEADLINE_EXCEEDED
            after `timeout` seconds, or what the signature raised.
        """
        time_aligned = signature.name in TIME_ALIGNED_SIGNATURES and servable.metadata is not None
        task = _Task(servable, signature, inputs, time_aligned)
        with self._cond:
            if self._closed:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
            if len(self._pending) >= self.max_enqueued:
                raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   "The batch scheduling queue to which this task was submitted is full")
            self._pending.append(task)
            self._cond.notify_all()  # a worker gathering one key must not swallow the wake-up another needs
        try:
            return task.future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None

    def close(self, timeout=30.0):
        """Stops accepting work; pending requests are still run; waits up to `timeout` seconds for the workers."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _take_batch(self):
        """Blocks until a batch is due; returns its tasks, at least one (None when closed and drained)."""
        with self._cond:
            while (head := self._next_head()) is None:
                if self._closed and not self._pending:
                    return None
                self._cond.wait()
            key = head.key()
            self._gathering.add(key)  # the other workers serve other keys meanwhile
            try:
                while not self._closed:
                    waiting = [t for t in self._pending if t.key() == key]
                    rows = sum(t.rows for t in waiting)
                    target, deadline = self._batch_goal(head, key, waiting)
                    remaining = deadline - time.monotonic()
                    if rows >= target or remaining <= 0:
                        break
                    self._cond.wait(remaining)
            finally:
                self._gathering.discard(key)
                self._cond.notify_all()
            # No other worker can have taken `head` or started a batch of its key: `_next_head` skips gathered keys.
            batch, rows, longest = [], 0, 0
            for task in list(self._pending):
                if task.key() != key or (batch and rows + task.rows > self.max_batch_size):
                    continue
                if batch and task.time is not None:
                    new_longest = max(longest, task.time)
                    frames = sum(t.time * t.rows for t in batch) + task.time * task.rows
                    if frames < (1 - self.max_time_padding) * new_longest * (rows + task.rows):
                        continue
                batch.append(task)
                rows += task.rows
                longest = max(longest, task.time or 0)
                self._pending.remove(task)
            if head.signature.name in self.serial_signatures:
                self._running_serial.add(key)
            return batch

    def _batch_goal(self, head, key, waiting):
        """(rows to wait for, when to stop waiting) for the batch that `head` starts; `waiting`: the queued tasks
        of its key.

        Concurrent streams send their next step only once their last one is answered. A serial-signature batch that
        started as soon as the previous one ended would hold only the steps that queued while it ran, and the
        streams would settle into groups whose batches alternate (14 + 2 rows, each reading all the weights). So
        the next batch of a serial key waits until the rows that batch answered and the rows queued behind it are
        back, or until no step of its key has come for stream_gather_timeout_s (the streams that ended). The
        answered streams come back one after another (16 gRPC streams on two cores: from 10 to 60 ms after the
        answers), hence a pause since the latest arrival rather than one deadline; the wait is at most that pause
        times the rows expected.
        """
        deadline = head.enqueued + self.batch_timeout_s
        expected = self._streams_back.get(key)
        if expected is None:
            return self.max_batch_size, deadline
        rows, ended = expected
        latest = max([ended, *(t.enqueued for t in waiting)])
        return min(rows, self.max_batch_size), max(deadline, latest + self.stream_gather_timeout_s)

    def _serial_batch_ended(self, key, batch, answered):
        """Called under the lock once a serial-signature batch of `key` has answered its requests at `answered`
        (the steps its streams sent since then are already queued, and are not counted twice)."""
        self._running_serial.discard(key)
        queued = sum(t.rows for t in self._pending if t.key() == key and t.enqueued < answered)
        self._streams_back[key] = (sum(t.rows for t in batch) + queued, answered)
        for stale in [k for k, (_, ended) in self._streams_back.items() if answered - ended > 60.0]:
            del self._streams_back[stale]  # keys of unloaded versions, shapes no longer sent

    def _is_blocked(self, task):
        return task.signature.name in self.serial_signatures and task.key() in self._running_serial

    def _next_head(self):
        """The oldest pending task that may start a batch now, and whose key no other worker is gathering (None
        when there is none)."""
        return next((task for task in self._pending
                     if not self._is_blocked(task) and task.key() not in self._gathering), None)

    def _work(self):
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            answered = time.monotonic()
            try:
                answered = self._run(batch)
            finally:
                with self._cond:
                    if batch[0].key() in self._running_serial:
                        self._serial_batch_ended(batch[0].key(), batch, answered)
                    self._cond.notify_all()  # the tasks its run held back may start a batch now

    def _run(self, batch):
        """Runs `batch` and answers its requests; returns the time.monotonic() just before the first answer."""
        log.debug("running %d requests, %d rows", len(batch), sum(t.rows for t in batch))
        try:
            if len(batch) == 1:
                outputs = [batch[0].signature(batch[0].inputs)]
            else:
                outputs = _run_merged(batch)
        except ServingError as error:
            outputs = [error] * len(batch)
        except Exception as error:  # noqa: BLE001 - a failing batch must answer every waiting request
            log.exception("batch of %d failed", len(batch))
            outputs = [ServingError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")] * len(batch)
        answered = time.monotonic()
        for task, result in zip(batch, outputs):
            if isinstance(result, Exception):
                task.future.set_exception(result)
            else:
                task.future.set_result(result)
        return answered


def _run_merged(batch):
    signature = batch[0].signature
    longest = max((t.time or 0) for t in batch)
    merged = {}
    for name in batch[0].inputs:
        parts = [t.inputs[name] for t in batch]
        if batch[0].time is not None and _has_time(signature, name):
            parts = [np.pad(p, [(0, 0), (0, longest - p.shape[1])] + [(0, 0)] * (p.ndim - 2)) for p in parts]
        merged[name] = np.concatenate(parts, axis=0)
    outputs = signature(merged)
    results, start = [], 0
    for task in batch:
        result = {}
        for name, value in outputs.items():
            part = value[start:start + task.rows]
            if task.time is not None and _has_time_output(signature, name):
                part = part[:, :task.time]
            result[name] = part
        results.append(result)
        start += task.rows
    return results
