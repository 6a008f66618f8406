"""Data: audio decoding, Kaldi data dirs and tables, TFRecord shards + manifest, and tf.data pipelines.

Modules: `audio` (tensorflow-io decoding), `kaldi_io` (ark/scp, CMVN stats, alignments, final.mdl),
`datadir` (Kaldi data directories), `tfrecords` (schema, `Manifest`, `read_manifest`), `prepare`
(`prepare_data_dir`, behind `crnn-prepare-data`), `pipelines` (recurrent / feed-forward / eval datasets).

The names below are imported on first use, so `crnn_tf.data.kaldi_io` (used by the HMM side and its tools) loads
without TensorFlow.
"""
import importlib

_EXPORTS = {"AudioDecodeError": "audio", "decode_audio": "audio", "DataDir": "datadir", "eval_dataset": "pipelines",
            "feedforward_dataset": "pipelines", "recurrent_dataset": "pipelines", "utterance_dataset": "pipelines",
            "Manifest": "tfrecords", "read_manifest": "tfrecords"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
