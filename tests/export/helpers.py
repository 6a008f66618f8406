"""A tiny exported model shared by the export and serving tests (built once per test process)."""
import atexit
import functools
import shutil
import tempfile

import numpy as np

SPEC = "CLstm8P4+Pool3+Lstm16P8+ReLU16"
NUM_BANDS, NUM_STREAMS, NUM_TARGETS = 11, 3, 7
DIM = NUM_BANDS * NUM_STREAMS
LABEL_DELAY = 2
PRIOR_SCALE = 0.8
MODEL_NAME = "tiny"


def make_model(seed=7, spec=SPEC, dropout=0.0):
    """The tiny model; its weights depend on `seed` and `spec` alone (not on `dropout`)."""
    import keras

    from crnn_tf.models import from_spec

    keras.utils.set_random_seed(seed)
    return from_spec(spec, num_bands=NUM_BANDS, num_streams=NUM_STREAMS, num_targets=NUM_TARGETS, dropout=dropout)


def feature_config():
    from crnn_tf.features import FeatureConfig

    return FeatureConfig(num_mel_bins=NUM_BANDS - 1)


def log_prior():
    from crnn_tf.data.priors import log_priors

    return log_priors(np.arange(1, NUM_TARGETS + 1, dtype=np.float64) ** 2, 1e-8)


def export(model, base, version=None, **kwargs):
    from crnn_tf.export import export_saved_model

    options = dict(log_prior=log_prior(), prior_scale=PRIOR_SCALE, label_delay=LABEL_DELAY,
                   feature_config=feature_config(), manifest_hash="abc123", num_bands=NUM_BANDS,
                   num_streams=NUM_STREAMS)
    options.update(kwargs)
    return export_saved_model(model, base, MODEL_NAME, version, **options)


@functools.lru_cache(maxsize=None)
def exported():
    """(model, export base, version dir) of the tiny model, version 1, all signatures."""
    base = tempfile.mkdtemp(prefix="crnn-export-test-")
    atexit.register(shutil.rmtree, base, True)
    model = make_model()
    return model, base, export(model, base, version=1)


def reference(model, features, lengths):
    """In-process reference (Keras model, one unpadded utterance at a time), padded like the signature output."""
    from crnn_tf.export import score_utterance

    out = {"log_likelihoods": np.zeros(features.shape[:2] + (NUM_TARGETS,), np.float32)}
    out["log_posteriors"] = out["log_likelihoods"].copy()
    for row, length in enumerate(lengths):
        scores = score_utterance(model, features[row, :length], log_prior=log_prior(), prior_scale=PRIOR_SCALE,
                                 label_delay=LABEL_DELAY)
        for name in out:
            out[name][row, :length] = scores[name]
    return out


def batch(lengths, seed=0):
    """Random right-padded features [B, max(lengths), DIM] (zeros past each length) and int32 lengths."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, np.int32)
    features = rng.normal(size=(len(lengths), int(lengths.max()), DIM)).astype(np.float32)
    features *= (np.arange(features.shape[1])[None, :] < lengths[:, None])[..., None]
    return features, lengths
