"""Export an acoustic model as a TF Serving SavedModel: `EXPORT_BASE/<model_name>/<version>/`.

The SavedModel holds only TensorFlow graph functions and variables (no Keras objects), so it loads with plain
`tf.saved_model.load` in a process that never imports crnn_tf, and in TensorFlow Serving. Signatures:

  serving_default  features [batch, time, dim] float32, lengths [batch] int32
                   → log_likelihoods, log_posteriors [batch, time, senones] (label delay undone, padding zeroed)
  waveform         waveforms [batch, samples] float32 (int16 scale), lengths [batch] int32
                   → log_likelihoods, log_posteriors [batch, frames, senones], num_frames [batch] int32
  stream_step      features [batch, chunk, dim], lengths [batch], <layer>_c / <layer>_r states
                   → log_likelihoods, log_posteriors [batch, chunk, senones] (delayed by label_delay), states

`assets/crnn_metadata.json` describes the model (see `ExportMetadata`). `assets.extra/tf_serving_warmup_requests`
holds one small PredictRequest per signature, which TF Serving and crnn-serve replay at load time, so the first
client request does not pay for the graph's optimisation (about 0.3 s for the paper's best net).
"""
import dataclasses
import json
import logging
import os
import pathlib
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from crnn_tf.export import signatures as sig
from crnn_tf.export.chain import LayerChain, NotStreamableError
from crnn_tf.export.cpu import plan_weights
from crnn_tf.features import FeatureConfig, speaker_cmvn_stats

log = logging.getLogger(__name__)

METADATA_FILE = "crnn_metadata.json"
ALL_SIGNATURES = ("serving_default", "waveform", "stream_step")
WARMUP_FILE = pathlib.Path("assets.extra") / "tf_serving_warmup_requests"  # TF Serving's name and place
WARMUP_FRAMES = 20


@dataclasses.dataclass
class ExportMetadata:
    """What a client or decoder needs to know about an export; written to `assets/crnn_metadata.json`.

    Args:
      num_senones: output classes.
      feature_dim: features per frame.
      label_delay: frames the network's output lags its input (undone by serving_default / waveform). Default 0.
      prior_scale: the scale of the log priors subtracted from log posteriors. Default 1.0.
      log_priors: list of per-senone log priors, or None (no priors: log_likelihoods == log_posteriors).
      prior_counts: optional list of the pdf counts the priors came from.
      prior_floor: the floor used by `crnn_tf.data.priors.log_priors`. Default None.
      feature_config: `FeatureConfig.to_dict()` or None (then there is no `waveform` signature).
      model_spec: the model spec string, or None.
      dropout: the dropout rate the model was built to train with (`AcousticModel.dropout`), or None. A record
        only: dropout is the identity at inference and no signature contains it.
      manifest_hash: the training data manifest's fingerprint, or None.
      num_bands, num_streams: the model's input geometry, or None.
      compute_dtype: "float32", "bfloat16" or "int8": how the large matrices are stored (what the export was
        asked for, after the CPU check: see `crnn_tf.export.cpu.plan_weights`). Default "float32".
      matmul_dtype: "float32" or "bfloat16", the dtype of the network's matrix products. Default "float32".
      requested_compute_dtype: the `--compute_dtype` asked for, or None (the same as compute_dtype). Default None.
      signatures: names of the exported signatures.
      states: for stream_step, list of {"name", "shape"} (shape without batch), in signature order.
      extra: free-form JSON-serialisable dict (e.g. the training config).
    """

    num_senones: int
    feature_dim: int
    label_delay: int = 0
    prior_scale: float = 1.0
    log_priors: list | None = None
    prior_counts: list | None = None
    prior_floor: float | None = None
    feature_config: dict | None = None
    model_spec: str | None = None
    dropout: float | None = None
    manifest_hash: str | None = None
    num_bands: int | None = None
    num_streams: int | None = None
    compute_dtype: str = "float32"
    matmul_dtype: str = "float32"
    requested_compute_dtype: str | None = None
    signatures: list = dataclasses.field(default_factory=list)
    states: list = dataclasses.field(default_factory=list)
    extra: dict = dataclasses.field(default_factory=dict)

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))


def read_metadata(version_dir):
    """The `ExportMetadata` of an export directory (`.../<model_name>/<version>`)."""
    return ExportMetadata.from_json((pathlib.Path(version_dir) / "assets" / METADATA_FILE).read_text())


def next_version(model_base):
    """1 + the largest integer version directory under `model_base` (1 when there is none)."""
    base = pathlib.Path(model_base)
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] if base.is_dir() else []
    return max(versions, default=0) + 1


class _ExportModule(tf.Module):
    """The object graph that gets saved: the chain's variables, the constants, the asset, the functions."""


def export_saved_model(model, export_base, model_name, version=None, *, log_prior=None, prior_scale=1.0,
                       label_delay=0, feature_config=None, cmvn_stats=None, model_spec=None, manifest_hash=None,
                       prior_counts=None, prior_floor=None, num_bands=None, num_streams=None,
                       compute_dtype=None, signatures=ALL_SIGNATURES, extra=None):
    """Writes `model` as `export_base/model_name/version/` with the serving signatures.

    The directory is written under a temporary name and renamed into place, so a server polling `export_base`
    never sees a half-written version.

    Args:
      model: a sequential `keras.Model` (features [batch, time, dim] → logits [batch, time, senones]).
      export_base: the model base path (TF Serving's `--model_base_path` parent).
      model_name: the directory (and served model) name.
      version: int or None (default: next free integer).
      log_prior: float [senones] log priors (`crnn_tf.data.priors.log_priors`) or None (no prior subtraction).
      prior_scale: float, scale of the log priors. Default 1.0.
      label_delay: int, the training label delay. Default 0.
      feature_config: `FeatureConfig` or None; the `waveform` signature needs it.
      cmvn_stats: [2, num_bands + 1] global CMVN statistics, needed by `waveform` when `feature_config.cmvn` is
        "global". Default None. With "speaker", `waveform` takes a third input instead, `cmvn_stats`
        [batch, 2, num_bands + 1] float64: each request's speaker statistics (`speaker_cmvn_stats`).
      model_spec, manifest_hash, prior_counts, prior_floor, num_bands, num_streams, extra: metadata only.
      compute_dtype: None/"float32" (default), "bfloat16" (the large matrices stored in bf16 and multiplied in
        bf16 with float32 accumulation; states, gates and outputs float32) or "int8" (per-channel int8 matrices,
        expanded in the graph to bf16 for the products). On a CPU without AVX512_BF16/AMX a warning says so, and
        "bfloat16" exports float32 while "int8" multiplies in float32 (`crnn_tf.export.cpu.plan_weights`).
      signatures: which of `ALL_SIGNATURES` to export. Default all. A signature the model cannot support is
        skipped with a warning (`waveform` without a usable feature config, `stream_step` for a model that
        splices future frames); asking for none that can be exported is an error.

    Returns:
      pathlib.Path of the version directory.
    """
    unknown = sorted(set(signatures) - set(ALL_SIGNATURES))
    if unknown:
        raise ValueError(f"unknown signatures {unknown}; choose from {ALL_SIGNATURES}")
    if label_delay < 0:
        raise ValueError(f"label_delay must be >= 0, got {label_delay}")
    plan = plan_weights(compute_dtype)
    chain = LayerChain(model, plan.storage, plan.matmul_dtype)
    num_senones = int(model.outputs[0].shape[-1])
    if log_prior is not None and np.shape(log_prior) != (num_senones,):
        raise ValueError(f"log_prior has shape {np.shape(log_prior)}, the model has {num_senones} outputs")
    if isinstance(feature_config, dict):
        feature_config = FeatureConfig.from_dict(feature_config)

    module = _ExportModule()
    module.variables_ = chain.variables  # tracked: the only copy of the weights
    log_prior_value = np.zeros(num_senones, np.float32) if log_prior is None else np.asarray(log_prior, np.float32)
    module.log_prior = tf.Variable(log_prior_value, trainable=False, name="log_prior")
    scale, delay = float(prior_scale), int(label_delay)
    dim = chain.input_dim
    functions = {}

    if "serving_default" in signatures:
        @tf.function(input_signature=[tf.TensorSpec([None, None, dim], tf.float32, name="features"),
                                      tf.TensorSpec([None], tf.int32, name="lengths")])
        def serving_default(features, lengths):
            return sig.score_padded(chain, features, lengths, module.log_prior, scale, delay)
        functions["serving_default"] = serving_default

    if "waveform" in signatures:
        reason = _waveform_problem(feature_config, cmvn_stats, dim)
        if reason:
            log.warning("not exporting the waveform signature: %s", reason)
        else:
            def score_waveforms(waveforms, lengths, stats):
                features, frames = sig.features_from_waveforms(waveforms, lengths, feature_config, stats)
                outputs = sig.score_padded(chain, features, frames, module.log_prior, scale, delay)
                return {**outputs, "num_frames": frames}

            wave_specs = [tf.TensorSpec([None, None], tf.float32, name="waveforms"),
                          tf.TensorSpec([None], tf.int32, name="lengths")]
            if feature_config.cmvn == "speaker":
                # Each request carries its speaker's Kaldi stats (`crnn_tf.features.speaker_cmvn_stats`), as
                # Kaldi's apply-cmvn takes them from cmvn.scp: the signature itself stays stateless.
                @tf.function(input_signature=wave_specs + [
                    tf.TensorSpec([None, 2, feature_config.num_bands + 1], tf.float64, name="cmvn_stats")])
                def waveform(waveforms, lengths, cmvn_stats):
                    with tf.control_dependencies([tf.debugging.assert_equal(
                            tf.shape(cmvn_stats)[0], tf.shape(waveforms)[0],
                            message="cmvn_stats needs one row of speaker statistics per waveform")]):
                        cmvn_stats = tf.identity(cmvn_stats)
                    return score_waveforms(waveforms, lengths, cmvn_stats)
            else:
                stats = None if feature_config.cmvn != "global" else tf.constant(np.asarray(cmvn_stats, np.float64))

                @tf.function(input_signature=wave_specs)
                def waveform(waveforms, lengths):
                    return score_waveforms(waveforms, lengths, stats)
            functions["waveform"] = waveform

    if "stream_step" in signatures:
        if not chain.streamable:
            log.warning("not exporting stream_step: %s", NotStreamableError.__doc__)
        else:
            state_inputs = [tf.TensorSpec([None, *shape], tf.float32, name=name) for name, shape in chain.state_specs]

            @tf.function(input_signature=[tf.TensorSpec([None, None, dim], tf.float32, name="features"),
                                          tf.TensorSpec([None], tf.int32, name="lengths"), *state_inputs])
            def stream_step(features, lengths, *states):
                return sig.stream_step(chain, features, lengths, list(states), module.log_prior, scale)
            functions["stream_step"] = stream_step

    if not functions:
        raise ValueError(f"none of the requested signatures {list(signatures)} can be exported for this model")

    metadata = ExportMetadata(
        num_senones=num_senones, feature_dim=dim, label_delay=delay, prior_scale=scale,
        log_priors=None if log_prior is None else [float(v) for v in log_prior_value],
        prior_counts=None if prior_counts is None else [float(v) for v in np.asarray(prior_counts)],
        prior_floor=prior_floor, feature_config=None if feature_config is None else feature_config.to_dict(),
        model_spec=model_spec or getattr(model, "spec", None), dropout=getattr(model, "dropout", None),
        manifest_hash=manifest_hash,
        num_bands=num_bands, num_streams=num_streams, compute_dtype=plan.storage, matmul_dtype=plan.matmul_dtype,
        requested_compute_dtype=plan.requested,
        signatures=sorted(functions),
        states=[{"name": name, "shape": list(shape)} for name, shape in chain.state_specs]
        if "stream_step" in functions else [],
        extra={**(extra or {}), **({"compute_dtype_note": plan.note} if plan.note else {})})
    return _write(module, functions, metadata, pathlib.Path(export_base) / model_name, version,
                  _warmup_inputs(functions, dim, feature_config, chain.state_specs))


def _warmup_inputs(functions, dim, feature_config, state_specs):
    """One small deterministic batch-1 input per exported signature: signature name → dict of numpy inputs."""
    rng = np.random.default_rng(0)
    frames = np.array([WARMUP_FRAMES], np.int32)
    features = rng.normal(size=(1, WARMUP_FRAMES, dim)).astype(np.float32)
    inputs = {"serving_default": {"features": features, "lengths": frames},
              "stream_step": {"features": features, "lengths": frames,
                              **{name: np.zeros((1, *shape), np.float32) for name, shape in state_specs}}}
    if "waveform" in functions:
        samples = feature_config.frame_length + (WARMUP_FRAMES - 1) * feature_config.frame_shift
        waveforms = (100.0 * rng.normal(size=(1, samples))).astype(np.float32)
        inputs["waveform"] = {"waveforms": waveforms, "lengths": np.array([samples], np.int32)}
        if feature_config.cmvn == "speaker":
            inputs["waveform"]["cmvn_stats"] = speaker_cmvn_stats([waveforms[0]], feature_config)[None]
    return {name: inputs[name] for name in functions}


def write_warmup_requests(version_dir, model_name, inputs):
    """Writes TF Serving's warm-up file: a TFRecord of PredictionLogs, one PredictRequest per signature.

    Args:
      version_dir: the SavedModel directory.
      model_name: the served name recorded in the requests.
      inputs: signature name → dict of numpy inputs.
    """
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path = pathlib.Path(version_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature_name, values in inputs.items():
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature_name
            for name, value in values.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            record = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(record.SerializeToString())


def _waveform_problem(feature_config, cmvn_stats, dim):
    """Why the waveform signature cannot be built (None when it can)."""
    if feature_config is None:
        return "no feature config"
    if feature_config.feature_dim != dim:
        return f"the feature config gives {feature_config.feature_dim} dims per frame, the model takes {dim}"
    if feature_config.cmvn == "global" and cmvn_stats is None:
        return "cmvn='global' but no cmvn_stats were given"
    return None


def _write(module, functions, metadata, model_base, version, warmup_inputs):
    model_base.mkdir(parents=True, exist_ok=True)
    version = next_version(model_base) if version is None else int(version)
    final = model_base / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists; choose another --version")
    for name, function in functions.items():
        setattr(module, f"fn_{name}", function)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_base))
    try:
        metadata_file = staging / METADATA_FILE
        metadata_file.write_text(metadata.to_json())
        # An Asset is copied into <export>/assets/ by tf.saved_model.save.
        module.metadata_asset = tf.saved_model.Asset(str(metadata_file))
        export_dir = staging / "export"
        tf.saved_model.save(module, str(export_dir),
                            signatures={name: fn.get_concrete_function() for name, fn in functions.items()})
        write_warmup_requests(export_dir, model_base.name, warmup_inputs)
        os.rename(export_dir, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported %s (signatures %s)", final, ", ".join(sorted(functions)))
    return final
