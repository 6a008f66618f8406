"""Data: audio decoding, Kaldi data dirs and tables, TFRecord shards + manifest, and tf.data pipelines.

Modules: `audio` (tensorflow-io decoding), `kaldi_io` (ark/scp, CMVN stats, alignments, final.mdl),
`datadir` (Kaldi data directories), `tfrecords` (schema, `Manifest`, `read_manifest`), `prepare`
(`prepare_data_dir`, behind `crnn-prepare-data`), `pipelines` (recurrent / feed-forward / eval datasets).
"""
from crnn_tf.data.audio import AudioDecodeError, decode_audio
from crnn_tf.data.datadir import DataDir
from crnn_tf.data.pipelines import eval_dataset, feedforward_dataset, recurrent_dataset, utterance_dataset
from crnn_tf.data.tfrecords import Manifest, read_manifest

__all__ = ["AudioDecodeError", "DataDir", "Manifest", "decode_audio", "eval_dataset", "feedforward_dataset",
           "read_manifest", "recurrent_dataset", "utterance_dataset"]
