"""crnn-prepare-data CLI: flags → prepare_data_dir, summary on stdout, skipped utterances on stderr."""
import json
import os

import numpy as np
from absl import flags

from crnn_tf.data import kaldi_io
from crnn_tf.data.tfrecords import read_manifest
from crnn_tf.features import FeatureConfig
from tests.data.fixtures import add_utterance, make_data_dir
from tools import prepare_data


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
