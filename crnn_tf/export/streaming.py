"""Client side of the `stream_step` protocol: feeds chunks, carries states, undoes the label delay.

The server is stateless: every `stream_step` call takes a chunk of frames plus all recurrent states and returns the
chunk's outputs plus the new states, which the client sends with the next chunk (start: all-zero states of the shapes
in the export's metadata). The network's output at stream frame t belongs to input frame t − d (d = label_delay), so

  - the first d outputs of a stream are dropped (they belong to no frame),
  - at the end the client sends a flush chunk of d copies of the last frame; its d outputs are the last d frames'.

After the flush, the frames returned equal whole-utterance scoring (`serving_default`) of the same features.
The streaming latency is therefore chunk length + d frames. Models that splice future frames (feed-forward nets with
`Splice`) have no `stream_step`.
"""
import numpy as np


class StreamingScorer:
    """Scores one or more utterances chunk by chunk through any `stream_step` implementation.

    Args:
      step_fn: callable(dict of numpy inputs) → dict of numpy outputs; e.g. a loaded SavedModel's
        `signatures["stream_step"]` wrapped to convert tensors, or a gRPC/REST call.
      states: list of {"name", "shape"} from the export metadata (`ExportMetadata.states`).
      label_delay: int, from the metadata. Default 0.
      batch: number of parallel streams. Default 1.
      output: which output to collect. Default "log_likelihoods".

    Example:
      scorer = StreamingScorer(step, meta.states, meta.label_delay)
      for chunk in chunks: ready = scorer.push(chunk)   # [1, n_ready, senones], n_ready <= len(chunk)
      rest = scorer.flush()
    """

    def __init__(self, step_fn, states, label_delay=0, batch=1, output="log_likelihoods"):
        self._step = step_fn
        self._names = [state["name"] for state in states]
        self._states = {s["name"]: np.zeros([batch, *s["shape"]], np.float32) for s in states}
        self._delay = int(label_delay)
        self._to_drop = self._delay
        self._output = output
        self._last_frame = None
        self._batch = batch

    def push(self, chunk, lengths=None):
        """Scores a chunk [batch, frames, dim]; returns the outputs that are ready ([batch, <= frames, senones]).

        Args:
          chunk: float32 [batch, frames, dim].
          lengths: optional int [batch] valid frames per stream (default: all); for a batch of streams all
            streams must advance equally for the delay bookkeeping, so pass it only for the final, shorter chunk.
        """
        chunk = np.asarray(chunk, np.float32)
        if lengths is None:
            lengths = np.full([chunk.shape[0]], chunk.shape[1], np.int32)
        lengths = np.asarray(lengths, np.int32)
        if chunk.shape[1]:
            rows = np.arange(chunk.shape[0])
            self._last_frame = chunk[rows, np.maximum(lengths - 1, 0)][:, None]
        outputs = self._step({"features": chunk, "lengths": lengths, **self._states})
        self._states = {name: np.asarray(outputs[name], np.float32) for name in self._names}
        scores = np.asarray(outputs[self._output])[:, :int(lengths.max(initial=0))]
        drop = min(self._to_drop, scores.shape[1])
        self._to_drop -= drop
        return scores[:, drop:]

    def flush(self):
        """Sends d copies of the last frame and returns the last d frames' outputs (none when d = 0)."""
        if self._delay == 0 or self._last_frame is None:
            return np.zeros([self._batch, 0, 0], np.float32)
        return self.push(np.repeat(self._last_frame, self._delay, axis=1))
