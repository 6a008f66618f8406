"""Export of a `crnn-train` model dir: weights, priors, feature config and label delay travel together."""
import json
import os

from absl import logging

from crnn_tf.export.saved_model import ALL_SIGNATURES, export_saved_model


def export_trained(model_dir, export_base, model_name, version=None, *, which="best", prior_scale=1.0,
                   prior_floor=1e-8, compute_dtype=None, signatures=ALL_SIGNATURES, cmvn_stats=None):
    """Exports a trained model dir as `export_base/model_name/version/` (TF Serving layout).

    Args:
      model_dir: a `crnn-train` model dir (train_config.json, feature_config.json, prior_counts.npy, best/, ...).
      export_base, model_name, version: where to write; version None = one more than the newest.
      which: "best" (best dev frame accuracy) or "latest" checkpoint. Default "best".
      prior_scale: scale of the log priors subtracted from the log posteriors. Default 1.0.
      prior_floor: relative prior floor (`crnn_tf.data.priors.log_priors`). Default 1e-8.
      compute_dtype: None/"float32", "bfloat16" or "int8" (see `export_saved_model`). Default None.
      signatures: which of `ALL_SIGNATURES`. Default all.
      cmvn_stats: global CMVN statistics for a `cmvn="global"` feature config's waveform signature. Default None:
        the training data's, saved in the model dir.

    Returns:
      pathlib.Path of the version directory.

    A model trained on a data dir's own feats.scp (`crnn-prepare-data --use_feats_scp`, e.g. Kaldi's MFCCs) gets no
    `waveform` signature: the package's front end computes filterbanks, not those features.
    """
    import numpy as np

    from crnn_tf.features import FeatureConfig
    from crnn_tf.data.priors import log_priors
    from crnn_tf.train.checkpoints import (FEATURE_CONFIG_NAME, PRIOR_COUNTS_NAME, load_trained_model,
                                          read_global_cmvn_stats)

    model, config = load_trained_model(model_dir, which)
    signatures = _signatures_for(config, signatures)
    feature_path = os.path.join(model_dir, FEATURE_CONFIG_NAME)
    feature_config = None
    if os.path.exists(feature_path):
        with open(feature_path) as f:
            feature_config = FeatureConfig.from_json(f.read())
    if cmvn_stats is None:
        cmvn_stats = read_global_cmvn_stats(model_dir)
    counts_path = os.path.join(model_dir, PRIOR_COUNTS_NAME)
    counts = np.load(counts_path) if os.path.exists(counts_path) else None
    if counts is None:
        logging.warning("%s not found: exporting without priors (log_likelihoods = log_posteriors)", counts_path)
    return export_saved_model(
        model, export_base, model_name, version,
        log_prior=None if counts is None else log_priors(counts, prior_floor), prior_scale=prior_scale,
        label_delay=config.output_delay, feature_config=feature_config, cmvn_stats=cmvn_stats,
        model_spec=config.model_spec, manifest_hash=config.train_manifest_hash or None,
        prior_counts=counts, prior_floor=prior_floor, num_bands=config.num_bands,
        num_streams=config.num_streams, compute_dtype=compute_dtype, signatures=signatures,
        extra={"train_config": json.loads(json.dumps(config.__dict__, default=str)), "checkpoint": which})


def _signatures_for(config, signatures):
    """`signatures` without "waveform" when the training features came from a feats.scp (see `export_trained`)."""
    from crnn_tf.data.tfrecords import read_manifest

    if "waveform" not in signatures or not config.train_data:
        return signatures
    try:
        source = read_manifest(config.train_data).source
    except FileNotFoundError:
        return signatures  # the training data moved away; nothing says the features were not ours
    if not source.get("use_feats_scp"):
        return signatures
    logging.warning("%s was prepared from feats.scp (features computed outside crnn_tf): exporting without the "
                    "waveform signature; score features (serving_default) as they were prepared", config.train_data)
    return tuple(name for name in signatures if name != "waveform")
