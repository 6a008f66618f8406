"""prepare_data_dir end to end: features equal direct computation, resumability, every kind of bad input."""
import os

import numpy as np
import pytest

from crnn_tf.data import kaldi_io
from crnn_tf.data.pipelines import utterance_dataset
from crnn_tf.data.prepare import prepare_data_dir
from crnn_tf.data.tfrecords import read_manifest
from crnn_tf.features import FeatureConfig, apply_cmvn, cmvn_stats, compute_features, fbank, add_deltas
from tests.data.fixtures import add_utterance, make_data_dir, synth, write_wav

CONFIG = FeatureConfig()
NUM_TARGETS = 7


def _labels(frames, seed):
    return np.random.default_rng(seed).integers(0, NUM_TARGETS, size=frames).astype(np.int32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """5 good utterances (one via a sox pipe), one within ±2 frames, and one of each bad kind."""
    root = tmp_path_factory.mktemp("corpus")
    data_dir, samples = make_data_dir(root, num_utts=5)
    good = open(os.path.join(root, "wav", "spk0-utt0.wav"), "rb").read()
    bad = {"bad-corrupt": bytes(range(256)) * 8, "bad-empty": b"", "bad-truncated": good[:500],
           "bad-unsupported": b"RIFF but really just text\n" * 30}
    for utt, content in bad.items():
        path = os.path.join(root, "wav", f"{utt}.wav")
        open(path, "wb").write(content)
        add_utterance(data_dir, utt, path)
    add_utterance(data_dir, "bad-missing", os.path.join(root, "wav", "nowhere.wav"))
    add_utterance(data_dir, "bad-pipe", "sox /nonexistent.wav -t wav - |")
    for utt, seconds in (("mismatch", 0.4), ("trimmed", 0.4)):
        samples[utt] = synth(seconds, seed=9)
        add_utterance(data_dir, utt, write_wav(os.path.join(root, "wav", f"{utt}.wav"), samples[utt]))
    labels = {}
    for i, (utt, wav) in enumerate(samples.items()):
        frames = CONFIG.num_frames(wav.size)
        labels[utt] = _labels(frames + {"mismatch": 3, "trimmed": -2}.get(utt, 0), i)
    for utt in bad:
        labels[utt] = _labels(10, 0)
    kaldi_io.write_int32_vectors(f"ark:{root}/ali.ark", sorted(labels.items()))
    return root, data_dir, samples, labels


@pytest.fixture(scope="module")
def prepared(corpus):
    root, data_dir, _, _ = corpus
    out = os.path.join(root, "out")
    manifest = prepare_data_dir(data_dir, out, alignments=f"{root}/ali.ark", config=CONFIG,
                                num_targets=NUM_TARGETS, utterances_per_shard=2, progress=False, allow_pipes=True)
    return out, manifest


def _records(path_or_manifest):
    return {ex["utt_id"].numpy().decode(): ex for ex in utterance_dataset(path_or_manifest)}


def test_features_equal_direct_computation(corpus, prepared):
    _, _, samples, labels = corpus
    out, manifest = prepared
    records = _records(out)
    good = {utt: wav for utt, wav in samples.items() if utt != "mismatch"}
    assert sorted(records) == sorted(good) and manifest.num_utterances == len(good)
    for utt, wav in good.items():
        expected, _ = compute_features(wav[None].astype(np.float32), [wav.size], CONFIG)
        frames = min(expected.shape[1], labels[utt].size)
        np.testing.assert_allclose(records[utt]["features"].numpy(), expected[0, :frames].numpy(), atol=1e-4)
        assert records[utt]["labels"].numpy().tolist() == labels[utt][:frames].tolist()
    assert records["trimmed"]["num_frames"] == labels["trimmed"].size  # 2 frames short: trimmed, kept


def test_manifest_priors_and_cmvn(corpus, prepared):
    _, _, samples, labels = corpus
    out, _ = prepared
    manifest = read_manifest(out)
    assert (manifest.feature_dim, manifest.num_targets, manifest.feature_config) == (93, NUM_TARGETS, CONFIG)
    assert manifest.num_frames == sum(int(r["num_frames"]) for r in _records(manifest).values())
    assert len(manifest.shards) == 3 and sum(s["num_utterances"] for s in manifest.shards) == len(samples) - 1
    manifest.verify()
    assert manifest.prior_counts.sum() == manifest.num_frames and manifest.prior_counts.shape == (NUM_TARGETS,)
    speakers = kaldi_io.read_cmvn_stats(os.path.join(out, "cmvn.scp"))
    static = {utt: fbank(wav.astype(np.float32))[0] for utt, wav in samples.items() if utt != "mismatch"}
    expected = sum(cmvn_stats(static[u]).numpy() for u in static if u.startswith("spk1"))
    np.testing.assert_allclose(speakers["spk1"], expected, rtol=1e-5)
    np.testing.assert_allclose(manifest.global_cmvn_stats, sum(cmvn_stats(s).numpy() for s in static.values()),
                               rtol=1e-5)


@pytest.mark.parametrize("utt,reason", [
    ("bad-corrupt", "unsupported audio format"), ("bad-empty", "empty"), ("bad-truncated", "truncated"),
    ("bad-unsupported", "unsupported audio format"), ("bad-missing", "nowhere.wav.*file not found"),
    ("bad-pipe", "/nonexistent.wav -t wav - |.*exit status"),
    ("mismatch", r"length mismatch: 38 frames vs 41 labels")])
def test_bad_inputs_are_skipped_with_the_utterance_and_reason(prepared, utt, reason):
    _, manifest = prepared
    skipped = {item["utt_id"]: item["reason"] for item in manifest.skipped}
    assert len(skipped) == 7
    assert utt in skipped[utt]
    assert __import__("re").search(reason, skipped[utt]), skipped[utt]


def test_rerun_keeps_finished_shards(corpus, prepared):
    root, data_dir, _, _ = corpus
    out, manifest = prepared
    paths = read_manifest(out).shard_paths
    before = {p: os.stat(p).st_mtime_ns for p in paths}
    os.remove(paths[1])
    again = prepare_data_dir(data_dir, out, alignments=f"{root}/ali.ark", config=CONFIG, num_targets=NUM_TARGETS,
                             utterances_per_shard=2, progress=False, allow_pipes=True)
    after = {p: os.stat(p).st_mtime_ns for p in paths}
    assert [p for p in paths if before[p] != after[p]] == [paths[1]]
    assert again.shards == manifest.shards  # the rewritten shard is byte-identical


def test_audio_mode_and_speaker_cmvn(corpus, tmp_path):
    root, data_dir, samples, labels = corpus
    config = CONFIG.replace(cmvn="speaker")
    kwargs = dict(alignments=f"{root}/ali.ark", config=config, num_targets=NUM_TARGETS, progress=False,
                  allow_pipes=True)
    features = _records(prepare_data_dir(data_dir, str(tmp_path / "f"), **kwargs))
    audio = _records(prepare_data_dir(data_dir, str(tmp_path / "a"), mode="audio", **kwargs))
    assert sorted(audio) == sorted(u for u in samples if u != "mismatch")
    spk0 = [u for u in samples if u.startswith("spk0")]
    stats = sum(cmvn_stats(fbank(samples[u].astype(np.float32))[0]).numpy() for u in spk0)
    static = fbank(samples["spk0-utt2"].astype(np.float32))[0]
    expected = add_deltas(apply_cmvn(static, stats)).numpy()
    np.testing.assert_allclose(features["spk0-utt2"]["features"].numpy(), expected, atol=1e-4)
    for utt in audio:
        np.testing.assert_allclose(audio[utt]["features"].numpy(), features[utt]["features"].numpy(), atol=1e-4)
        assert audio[utt]["labels"].numpy().tolist() == features[utt]["labels"].numpy().tolist()


def test_nan_features_from_feats_scp_are_skipped(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    rng = np.random.default_rng(0)
    feats = {f"u{i}": rng.normal(size=(20 + i, 31)).astype(np.float32) for i in range(3)}
    feats["u1"][5, 3] = np.nan
    kaldi_io.write_matrices(f"ark,scp:{data_dir}/feats.ark,{data_dir}/feats.scp", sorted(feats.items()))
    (data_dir / "utt2spk").write_text("".join(f"{u} {u}\n" for u in feats))
    manifest = prepare_data_dir(str(data_dir), str(tmp_path / "out"), use_feats_scp=True, progress=False)
    assert manifest.skipped == [{"utt_id": "u1", "reason": "u1: features contain NaN or infinity"}]
    records = _records(manifest)
    assert sorted(records) == ["u0", "u2"] and manifest.num_targets == 0
    expected = add_deltas(apply_cmvn(feats["u2"], cmvn_stats(feats["u2"]))).numpy()
    np.testing.assert_allclose(records["u2"]["features"].numpy(), expected, atol=1e-4)


def test_a_dir_where_every_utterance_fails_is_an_error_not_an_empty_manifest(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    (data_dir / "wav.scp").write_text(f"u1 {tmp_path / 'bad.wav'}\nu2 {tmp_path / 'missing.wav'}\n")
    (data_dir / "utt2spk").write_text("u1 s\nu2 s\n")
    with pytest.raises(ValueError, match=r"none of its 2 utterances could be prepared \(first reasons: .*u1.*u2"):
        prepare_data_dir(str(data_dir), str(tmp_path / "out"), progress=False)


def test_rerun_after_the_alignment_changed_in_place_takes_the_new_labels(corpus, tmp_path):
    root, data_dir, _, labels = corpus
    ali = tmp_path / "ali.ark"
    kaldi_io.write_int32_vectors(f"ark:{ali}", sorted(labels.items()))
    out = str(tmp_path / "out")
    prepare_data_dir(data_dir, out, alignments=str(ali), config=CONFIG, num_targets=NUM_TARGETS, progress=False,
                     allow_pipes=True)
    shifted = {u: (np.asarray(l) + 1) % NUM_TARGETS for u, l in labels.items()}
    kaldi_io.write_int32_vectors(f"ark:{ali}", sorted(shifted.items()))  # same path, new content
    again = prepare_data_dir(data_dir, out, alignments=str(ali), config=CONFIG, num_targets=NUM_TARGETS,
                             progress=False, allow_pipes=True)
    records = _records(again)
    for utt, want in shifted.items():
        if utt in records:
            np.testing.assert_array_equal(records[utt]["labels"].numpy(), want[: len(records[utt]["labels"])])
    np.testing.assert_array_equal(again.prior_counts, np.bincount(
        np.concatenate([records[u]["labels"].numpy() for u in records]), minlength=NUM_TARGETS))


def test_kaldi_feats_scp_compressed_with_kaldi_cmvn_scp(tmp_path):
    # A data dir as make_mfcc.sh + compute_cmvn_stats.sh leave it: 13 MFCCs, CM-compressed, scp with byte offsets,
    # per-speaker double stats; apply-cmvn (means only) with those stats, not recomputed ones.
    from tests.data.fixtures import decompress_cm, write_compressed_ark

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    rng = np.random.default_rng(0)
    utt2spk = {"a-1": "a", "a-2": "a", "b-1": "b"}
    feats = {u: (rng.normal(size=(30 + 5 * i, 13)) * 3 + 7).astype(np.float32) for i, u in enumerate(utt2spk)}
    ark = tmp_path / "mfcc" / "raw_mfcc_train.1.ark"
    ark.parent.mkdir()
    offsets = write_compressed_ark(ark, [(u, feats[u], "CM") for u in utt2spk])
    (data_dir / "feats.scp").write_text("".join(f"{u} {ark}:{offsets[u]}\n" for u in utt2spk))
    (data_dir / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utt2spk.items()))
    stored = {u: decompress_cm(ark.read_bytes()[offsets[u] + 2:]) for u in utt2spk}
    # Kaldi's stats of the stored features, shifted so that using them (not recomputed ones) is visible.
    stats = {}
    for spk in ("a", "b"):
        x = np.concatenate([stored[u] for u in utt2spk if utt2spk[u] == spk]).astype(np.float64)
        stats[spk] = np.stack([np.append(x.sum(0) + len(x), len(x)), np.append((x * x).sum(0), 0.0)])
    kaldi_io.write_matrices(f"ark,scp:{tmp_path}/cmvn_train.ark,{data_dir}/cmvn.scp", sorted(stats.items()),
                            double=True)
    config = FeatureConfig(num_mel_bins=12, cmvn="speaker")
    manifest = prepare_data_dir(str(data_dir), str(tmp_path / "out"), config=config, use_feats_scp=True,
                                progress=False)
    assert manifest.feature_dim == 39 and not manifest.skipped
    records = _records(manifest)
    for utt, spk in utt2spk.items():
        mean = stats[spk][0, :-1] / stats[spk][0, -1]
        expected = add_deltas((stored[utt] - mean).astype(np.float32)).numpy()
        np.testing.assert_allclose(records[utt]["features"].numpy(), expected, atol=1e-4)
    kaldi_io.write_matrices(f"ark,scp:{tmp_path}/cmvn_a.ark,{data_dir}/cmvn.scp", [("a", stats["a"])], double=True)
    with pytest.raises(ValueError, match=r"cmvn\.scp: no statistics for speaker 'b' of utterance 'b-1'"):
        prepare_data_dir(str(data_dir), str(tmp_path / "out2"), config=config, use_feats_scp=True, progress=False)
