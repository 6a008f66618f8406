"""crnn-prepare-data CLI: flags → prepare_data_dir, summary on stdout, skipped utterances on stderr; the shared
feature flags → FeatureConfig."""
import json
import os

import numpy as np
import pytest
from absl import app, flags

from crnn_tf.data import kaldi_io
from crnn_tf.data.tfrecords import read_manifest
from crnn_tf.features import FeatureConfig
from tests.data.fixtures import add_utterance, make_data_dir
from tools import common_flags, prepare_data


@pytest.fixture(scope="module", autouse=True)
def tool_flags():
    """crnn-prepare-data's flags, defined as its run() does, and removed again for the other tests of the process."""
    before = set(flags.FLAGS)
    prepare_data.define_flags()
    yield
    for name in set(flags.FLAGS) - before:
        delattr(flags.FLAGS, name)


def test_cli_prepares_and_reports(tmp_path, capsys):
    data_dir, samples = make_data_dir(tmp_path, num_utts=3)
    add_utterance(data_dir, "zz-broken", "false |")
    config = FeatureConfig(sample_rate=8000, num_mel_bins=20)
    alignments = {u: np.zeros(config.num_frames(w.size), np.int32) + 3 for u, w in samples.items()}
    kaldi_io.write_int32_vectors(f"ark:{tmp_path}/ali.ark", alignments.items())
    (tmp_path / "fe.json").write_text(config.to_json())
    out = tmp_path / "out"
    try:
        flags.FLAGS(["crnn-prepare-data", f"--data_dir={data_dir}", f"--output_dir={out}",
                     f"--alignments={tmp_path}/ali.ark", f"--feature_config={tmp_path}/fe.json", "--cmvn=global",
                     "--num_targets=5", "--noprogress", "--allow_wav_pipes"])
        prepare_data.main([])
    finally:
        flags.FLAGS.unparse_flags()
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["utterances"] == 3 and summary["skipped"] == 1 and summary["feature_dim"] == 63
    assert "skipped zz-broken" in captured.err and "exit status 1" in captured.err
    manifest = read_manifest(str(out))
    assert manifest.feature_config == config.replace(cmvn="global")
    assert manifest.prior_counts.tolist() == [0, 0, 0, manifest.num_frames, 0]
    assert os.path.exists(out / "cmvn.scp")


# name: (arguments, whether --feature_config is given, the FeatureConfig expected). The file holds
# FeatureConfig(num_mel_bins=20, low_freq=100): flags not given must leave its values alone.
FEATURE_FLAG_CASES = {
    "flags_only": (["--low_freq=300", "--high_freq=-600", "--cmvn=speaker"], False,
                   FeatureConfig(low_freq=300.0, high_freq=-600.0, cmvn="speaker")),
    "no_flags_is_the_default_config": ([], False, FeatureConfig()),
    "file_changed_by_the_flags_given": (["--sample_rate=16000", "--norm_vars"], True,
                                        FeatureConfig(num_mel_bins=20, low_freq=100.0, sample_rate=16000,
                                                      norm_vars=True)),
}


@pytest.mark.parametrize("name", list(FEATURE_FLAG_CASES))
def test_feature_flags_build_the_config(tmp_path, name):
    args, with_file, expected = FEATURE_FLAG_CASES[name]
    (tmp_path / "fe.json").write_text(FeatureConfig(num_mel_bins=20, low_freq=100.0).to_json())
    try:
        flags.FLAGS(["crnn-prepare-data", *args] + ([f"--feature_config={tmp_path}/fe.json"] if with_file else []))
        assert common_flags.feature_config_from_flags() == expected
    finally:
        flags.FLAGS.unparse_flags()


@pytest.mark.parametrize("args, message", [
    (["--low_freq=5000"], "need 0 ≤ low_freq < high_freq"),
    (["--feature_config=/no/such/fe.json"], "No such file"),
], ids=["impossible_band", "missing_file"])
def test_bad_feature_options_are_a_usage_error(args, message):
    try:
        flags.FLAGS(["crnn-prepare-data", *args])
        with pytest.raises(app.UsageError, match=f"feature options: .*{message}"):
            common_flags.feature_config_from_flags()
    finally:
        flags.FLAGS.unparse_flags()
