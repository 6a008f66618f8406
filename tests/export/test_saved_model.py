"""SavedModel export: layout, metadata, signatures equal in-process scoring, streaming, plain-TF reload."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from crnn_tf.export import (
    ExportMetadata, StreamingScorer, export_saved_model, next_version, read_metadata, score_utterance)
from tests.export import helpers

ATOL = 1e-5


@pytest.fixture(scope="module")
def exported():
    model, base, path = helpers.exported()
    return model, path, tf.saved_model.load(str(path))


def _call(signature, **inputs):
    return {name: value.numpy() for name, value in signature(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def test_layout_and_metadata(exported):
    _, path, _ = exported
    assert path.name == "1" and path.parent.name == helpers.MODEL_NAME
    assert {"assets", "saved_model.pb", "variables"} <= set(os.listdir(path))
    meta = read_metadata(path)
    assert meta.num_senones == helpers.NUM_TARGETS and meta.feature_dim == helpers.DIM
    assert meta.label_delay == helpers.LABEL_DELAY and meta.prior_scale == pytest.approx(helpers.PRIOR_SCALE)
    np.testing.assert_allclose(meta.log_priors, helpers.log_prior(), rtol=1e-6)
    assert meta.feature_config["num_mel_bins"] == helpers.NUM_BANDS - 1
    assert meta.model_spec == helpers.SPEC and meta.manifest_hash == "abc123"
    assert meta.signatures == ["serving_default", "stream_step", "waveform"]
    # CLSTM state per patch: (11 - 8 + 1) = 4 patches; then the Lstm16P8.
    assert [(s["name"].rsplit("_", 1)[1], s["shape"]) for s in meta.states] == [
        ("c", [4, 8]), ("r", [4, 4]), ("c", [16]), ("r", [8])]
    assert not [p for p in os.listdir(path.parent) if p.startswith(".tmp")]  # staging dir cleaned up
    assert next_version(path.parent) == 2


def test_serving_default_equals_in_process_scoring(exported):
    model, _, loaded = exported
    features, lengths = helpers.batch([13, 7, 1])
    got = _call(loaded.signatures["serving_default"], features=features, lengths=lengths)
    want = helpers.reference(model, features, lengths)
    for name in ("log_likelihoods", "log_posteriors"):
        assert got[name].shape == (3, 13, helpers.NUM_TARGETS)
        np.testing.assert_allclose(got[name], want[name], atol=ATOL)
    assert not got["log_likelihoods"][1, 7:].any()  # padding masked
    # prior relation: log_likelihoods = log_posteriors - scale * log_prior on valid frames
    np.testing.assert_allclose(got["log_likelihoods"][0], got["log_posteriors"][0]
                               - helpers.PRIOR_SCALE * helpers.log_prior(), atol=ATOL)


def test_padding_content_does_not_matter(exported):
    _, _, loaded = exported
    features, lengths = helpers.batch([9, 4])
    noisy = features.copy()
    noisy[1, 4:] = 1e3
    a = _call(loaded.signatures["serving_default"], features=features, lengths=lengths)
    b = _call(loaded.signatures["serving_default"], features=noisy, lengths=lengths)
    np.testing.assert_allclose(a["log_likelihoods"], b["log_likelihoods"], atol=ATOL)


def test_bad_lengths_are_invalid_argument(exported):
    _, _, loaded = exported
    features, _ = helpers.batch([5])
    with pytest.raises(tf.errors.InvalidArgumentError, match="lengths must not exceed"):
        _call(loaded.signatures["serving_default"], features=features, lengths=np.array([6], np.int32))


@pytest.mark.parametrize("chunk", [4, 15])
def test_stream_step_chunks_equal_whole_utterance(exported, chunk):
    _, path, loaded = exported
    meta = read_metadata(path)
    features, lengths = helpers.batch([23])
    whole = _call(loaded.signatures["serving_default"], features=features, lengths=lengths)["log_likelihoods"]
    scorer = StreamingScorer(lambda inputs: _call(loaded.signatures["stream_step"], **inputs), meta.states,
                             meta.label_delay)
    parts = [scorer.push(features[:, start:start + chunk]) for start in range(0, 23, chunk)]
    parts.append(scorer.flush())
    streamed = np.concatenate(parts, axis=1)
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=ATOL)


def test_waveform_signature_equals_features_path(exported):
    from crnn_tf.features import compute_features

    _, _, loaded = exported
    rng = np.random.default_rng(3)
    waves = (rng.normal(size=(2, 3000)) * 1000).astype(np.float32)
    lengths = np.array([3000, 1900], np.int32)
    got = _call(loaded.signatures["waveform"], waveforms=waves, lengths=lengths)
    feats, frames = compute_features(waves, lengths, helpers.feature_config())
    assert got["num_frames"].tolist() == frames.numpy().tolist() == [36, 22]
    want = _call(loaded.signatures["serving_default"], features=feats.numpy(), lengths=frames.numpy())
    assert got["log_likelihoods"].shape == (2, 36, helpers.NUM_TARGETS)
    np.testing.assert_allclose(got["log_likelihoods"], want["log_likelihoods"], atol=ATOL)


def test_fresh_process_without_crnn_tf_and_saved_model_cli(exported, tmp_path):
    model, path, _ = exported
    features, lengths = helpers.batch([11, 6], seed=5)
    np.savez(tmp_path / "in.npz", features=features, lengths=lengths)
    script = textwrap.dedent(f"""
        import sys, numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({str(path)!r})
        data = np.load({str(tmp_path / 'in.npz')!r})
        out = loaded.signatures["serving_default"](features=tf.constant(data["features"]),
                                                   lengths=tf.constant(data["lengths"]))
        np.save({str(tmp_path / 'out.npy')!r}, out["log_likelihoods"].numpy())
        assert not [m for m in sys.modules if m.startswith("crnn_tf")], "crnn_tf was imported"
        print("OK", sorted(loaded.signatures))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            cwd=str(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK ['serving_default', 'stream_step', 'waveform']" in result.stdout
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"),
                               helpers.reference(model, features, lengths)["log_likelihoods"], atol=ATOL)

    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", str(path), "--all"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for key in ("signature_def['serving_default']", "signature_def['waveform']", "signature_def['stream_step']",
                "outputs['log_likelihoods']", "inputs['lengths']"):
        assert key in shown.stdout


def test_spliced_model_has_no_stream_step_and_scores_exactly(tmp_path):
    model = helpers.make_model(spec="ReLU16+ReLU16")
    path = helpers.export(model, tmp_path, signatures=("serving_default", "stream_step"), label_delay=0)
    meta = read_metadata(path)
    assert meta.signatures == ["serving_default"] and meta.states == []
    loaded = tf.saved_model.load(str(path))
    features, lengths = helpers.batch([12, 5])
    got = _call(loaded.signatures["serving_default"], features=features, lengths=lengths)
    for row, length in enumerate(lengths):  # edge replication at each utterance's own end
        ref = score_utterance(model, features[row, :length], log_prior=helpers.log_prior(),
                              prior_scale=helpers.PRIOR_SCALE, label_delay=0)
        np.testing.assert_allclose(got["log_likelihoods"][row, :length], ref["log_likelihoods"], atol=ATOL)


def _op_types(concrete_function):
    graph = concrete_function.graph.as_graph_def()
    return {node.op for node in graph.node} | {node.op for f in graph.library.function for node in f.node_def}


def test_dropout_model_exports_its_inference_graph(exported, tmp_path):
    plain, plain_path, plain_loaded = exported
    model = helpers.make_model(dropout=0.4)  # the weights of `plain`, with a Dropout after each block
    assert [layer.name for layer in model.layers if layer.name.endswith("_dropout")] == [
        f"{layer.name}_dropout" for layer in plain.layers if layer.name.startswith("layer")]
    path = helpers.export(model, tmp_path, version=1)
    loaded = tf.saved_model.load(str(path))
    meta = read_metadata(path)
    assert meta.dropout == 0.4 and read_metadata(plain_path).dropout == 0.0
    assert meta.states == read_metadata(plain_path).states  # the same recurrent layers, the same stream states
    features, lengths = helpers.batch([13, 7, 1])
    got = _call(loaded.signatures["serving_default"], features=features, lengths=lengths)
    want = helpers.reference(model, features, lengths)  # Keras, inference mode
    np.testing.assert_allclose(got["log_likelihoods"], want["log_likelihoods"], atol=ATOL)
    # Dropout is left out of the export: every signature is the graph of the model without it, and draws nothing.
    for name in meta.signatures:
        assert not [op for op in _op_types(loaded.signatures[name]) if "Random" in op], name
    plain_got = _call(plain_loaded.signatures["serving_default"], features=features, lengths=lengths)
    np.testing.assert_array_equal(got["log_likelihoods"], plain_got["log_likelihoods"])
    scorer = StreamingScorer(lambda inputs: _call(loaded.signatures["stream_step"], **inputs), meta.states,
                             meta.label_delay)
    one, length = features[:1], lengths[:1]
    streamed = np.concatenate([scorer.push(one[:, start:start + 4]) for start in range(0, 13, 4)]
                              + [scorer.flush()], axis=1)
    np.testing.assert_allclose(streamed, got["log_likelihoods"][:1, :length[0]], atol=ATOL)


def test_export_refuses_bad_arguments(tmp_path):
    model = helpers.make_model()
    with pytest.raises(ValueError, match="unknown signatures"):
        export_saved_model(model, tmp_path, "m", signatures=("nope",))
    with pytest.raises(ValueError, match="log_prior has shape"):
        export_saved_model(model, tmp_path, "m", log_prior=np.zeros(3))
    with pytest.raises(ValueError, match="none of the requested signatures"):
        export_saved_model(model, tmp_path, "m", signatures=("waveform",))  # no feature config


def test_metadata_round_trip():
    meta = ExportMetadata(num_senones=3, feature_dim=9, states=[{"name": "a_c", "shape": [2]}])
    assert ExportMetadata.from_json(meta.to_json()) == meta
    assert json.loads(meta.to_json())["num_senones"] == 3


def _warmup_requests(path):
    from tensorflow_serving.apis import prediction_log_pb2

    records = tf.data.TFRecordDataset(str(path / "assets.extra" / "tf_serving_warmup_requests"))
    return [prediction_log_pb2.PredictionLog.FromString(r).predict_log.request for r in records.as_numpy_iterator()]


def test_warmup_requests_cover_every_signature_and_replay(exported):
    model, path, loaded = exported
    requests = _warmup_requests(path)
    assert sorted(r.model_spec.signature_name for r in requests) == ["serving_default", "stream_step", "waveform"]
    assert {r.model_spec.name for r in requests} == {helpers.MODEL_NAME}
    for request in requests:
        inputs = {name: tf.make_ndarray(t) for name, t in request.inputs.items()}
        assert inputs["lengths"].shape == (1,) and all(np.isfinite(v).all() for v in inputs.values())
        outputs = _call(loaded.signatures[request.model_spec.signature_name], **inputs)
        assert np.isfinite(outputs["log_likelihoods"]).all()
        if request.model_spec.signature_name == "serving_default":  # the request is a real utterance
            want = helpers.reference(model, inputs["features"], inputs["lengths"])
            np.testing.assert_allclose(outputs["log_likelihoods"], want["log_likelihoods"], atol=ATOL)


def test_speaker_cmvn_waveform_signature_takes_each_speakers_stats(tmp_path):
    from crnn_tf.features import compute_features, speaker_cmvn_stats

    config = helpers.feature_config().replace(cmvn="speaker", norm_vars=True)
    model = helpers.make_model()
    path = helpers.export(model, tmp_path, feature_config=config, signatures=("serving_default", "waveform"))
    loaded = tf.saved_model.load(str(path))
    rng = np.random.default_rng(5)
    speakers = [[(rng.normal(size=n) * scale).astype(np.float32) for n in (2500, 3100, 1800)]
                for scale in (300.0, 3000.0)]
    stats = np.stack([speaker_cmvn_stats(waves, config) for waves in speakers])
    # The second speaker's stats are those of his three utterances: normalised, his first one has mean ~ 0.
    waves = np.stack([speakers[0][0], speakers[1][0][:2500]])
    lengths = np.array([2500, 2500], np.int32)
    got = _call(loaded.signatures["waveform"], waveforms=waves, lengths=lengths, cmvn_stats=stats)
    feats, frames = compute_features(waves, lengths, config, cmvn_stats=stats)
    want = _call(loaded.signatures["serving_default"], features=feats.numpy(), lengths=frames.numpy())
    np.testing.assert_allclose(got["log_likelihoods"], want["log_likelihoods"], atol=ATOL)
    assert abs(float(np.mean(feats.numpy()[1, :, : config.num_bands]))) < 0.5
    # Stats of another speaker give other scores: the input is really used.
    swapped = _call(loaded.signatures["waveform"], waveforms=waves, lengths=lengths, cmvn_stats=stats[::-1].copy())
    assert np.abs(swapped["log_likelihoods"] - got["log_likelihoods"]).max() > 1e-2
    with pytest.raises(tf.errors.InvalidArgumentError, match="one row of speaker statistics per waveform"):
        _call(loaded.signatures["waveform"], waveforms=waves, lengths=lengths, cmvn_stats=stats[:1])
    requests = _warmup_requests(path)
    assert {r.model_spec.signature_name for r in requests} == {"serving_default", "waveform"}
    wave_request = next(r for r in requests if r.model_spec.signature_name == "waveform")
    assert tf.make_ndarray(wave_request.inputs["cmvn_stats"]).shape == (1, 2, config.num_bands + 1)


def test_model_dir_keeps_the_training_data_global_cmvn_stats(tmp_path):
    from crnn_tf.train.checkpoints import GLOBAL_CMVN_NAME, read_global_cmvn_stats, write_side_files

    config = helpers.feature_config().replace(cmvn="global")
    with pytest.raises(ValueError, match="global CMVN but the training data has no global stats"):
        write_side_files(str(tmp_path / "m"), config, np.ones(helpers.NUM_TARGETS))
    stats = np.zeros([2, helpers.NUM_BANDS + 1])
    stats[0, -1], stats[1, :-1] = 10.0, 40.0
    write_side_files(str(tmp_path / "m"), config, np.ones(helpers.NUM_TARGETS), stats)
    np.testing.assert_array_equal(read_global_cmvn_stats(str(tmp_path / "m")), stats)
    assert (tmp_path / "m" / GLOBAL_CMVN_NAME).exists()
    assert read_global_cmvn_stats(str(tmp_path / "none")) is None
