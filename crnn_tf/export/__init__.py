"""SavedModel export of acoustic models for TensorFlow Serving (see docs/serving.md).

`export_saved_model` writes `EXPORT_BASE/<model_name>/<version>/` with the `serving_default` (features),
`waveform` (PCM) and `stream_step` (chunk + states) signatures and `assets/crnn_metadata.json`;
`score_utterance` is the in-process reference the exported signatures equal; `StreamingScorer` drives
`stream_step` from a client.
"""
from crnn_tf.export.chain import LayerChain, NotStreamableError
from crnn_tf.export.saved_model import (
    ALL_SIGNATURES, METADATA_FILE, ExportMetadata, export_saved_model, next_version, read_metadata)
from crnn_tf.export.signatures import LOG_LIKELIHOODS, LOG_POSTERIORS, score_utterance
from crnn_tf.export.streaming import StreamingScorer
from crnn_tf.export.trained import export_trained

__all__ = [
    "ALL_SIGNATURES", "LOG_LIKELIHOODS", "LOG_POSTERIORS", "METADATA_FILE", "ExportMetadata", "LayerChain",
    "NotStreamableError", "StreamingScorer", "export_saved_model", "export_trained", "next_version", "read_metadata",
    "score_utterance",
]
