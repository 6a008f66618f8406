"""The demo recipe end to end at toy scale: every stage runs, the table and charts appear, a re-run skips it all."""
import json
import os
import subprocess
import sys

import pytest

NETS = "FFNN=ReLU64,LSTMP=Lstm32P16+ReLU64,CLSTM=CLstm8P8+Pool3+Lstm32P16+ReLU64"


def _recipe(work, report):
    return subprocess.run(
        [sys.executable, "-m", "tools.recipe", f"--work_dir={work}", f"--report_dir={report}",
         "--num_utterances=90", "--epochs=1", "--gmm_iters=4", "--max_gauss=150", f"--nets={NETS}",
         "--combine=ENS=FFNN+CLSTM", "--chunk_length=20", "--chunk_overlap=4"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.mark.slow
def test_recipe_runs_every_stage_and_resumes(tmp_path):
    work, report = tmp_path / "exp", tmp_path / "report"
    first = _recipe(work, report)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-4000:]
    stages = [line.split()[-1] for line in first.stdout.splitlines() if line.startswith("== stage")]
    assert stages[:4] == ["data", "hmm", "features", "train_FFNN"]
    assert {f"decode_{net}" for net in ("FFNN", "LSTMP", "CLSTM", "ENS", "GMM")} <= set(stages)

    results = json.loads((report / "results.json").read_text())
    assert results["sets"] == ["dev_synthetic", "synthetic"]
    rows = results["rows"]
    assert [row["net"] for row in rows] == ["FFNN", "LSTMP", "CLSTM", "ENS", "GMM-HMM"]
    for row in rows[:3]:
        assert row["params"] > 0 and 0.0 < row["dev_frame_accuracy"] <= 1.0
    for row in rows:
        for name in results["sets"]:
            cell = row["results"][name]
            assert cell["interval"][0] <= cell["wer"] <= cell["interval"][1]
            assert cell["wer"] == pytest.approx(100 * cell["errors"] / cell["words"])
    # Toy scale: the GMM-HMM that labels the frames already recognises unseen voices (measured 9.6 %); the nets,
    # after one epoch on 72 utterances, only have to beat chance.
    assert rows[-1]["results"]["synthetic"]["wer"] < 25.0
    assert all(row["results"]["synthetic"]["wer"] < 100.0 for row in rows[:3])
    table = (report / "results.md").read_text()
    assert "| CLSTM | `CLstm8P8+Pool3+Lstm32P16+ReLU64` |" in table and table in first.stdout + table
    for chart in ("learning_curves.png", "error_rates.png"):
        assert (report / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    hyps = (work / "decode" / "FFNN" / "synthetic" / "hyp.txt").read_text().splitlines()
    assert len(hyps) == rows[0]["results"]["synthetic"]["utterances"]
    # The combination decodes the members' saved log-likelihoods: their mean, on every utterance.
    assert rows[3]["params"] == rows[0]["params"] + rows[2]["params"]
    _check_combination(work, ["FFNN", "CLSTM"])
    # The recurrent nets trained on the chunks the flags asked for, and the report says so.
    config = json.loads((work / "models" / "CLSTM" / "train_config.json").read_text())
    assert (config["chunk_length"], config["chunk_overlap"], config["label_delay"]) == (20, 4, 5)
    assert "recurrent nets on 20-frame chunks (overlap 4, labels delayed 5)" in first.stdout
    # The served exports are TF Serving layout: <base>/<name>/<version>/saved_model.pb.
    assert (work / "export" / "CLSTM" / "1" / "saved_model.pb").exists()

    again = _recipe(work, report)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "== stage" not in again.stdout  # every stage was already done
    assert "| CLSTM |" in again.stdout
    _recognize_with_the_client(work, tmp_path)


def _check_combination(work, members):
    import numpy as np

    from crnn_tf.data.kaldi_io import read_matrices

    scored = [dict(read_matrices(f"ark:{work / 'decode' / m / 'loglikes' / 'synthetic.ark'}")) for m in members]
    assert scored[0].keys() == scored[1].keys() and len(scored[0]) > 0
    for utt, first in scored[0].items():
        assert first.shape == scored[1][utt].shape and np.isfinite(first).all()
    assert (work / "decode" / "ENS" / "synthetic" / "hyp.txt").exists()


def _recognize_with_the_client(work, tmp_path):
    """crnn-recognize against the served FFNN: speaker stats sent along, a bad file reported, the rest recognised."""
    import numpy as np

    from crnn_tf.data.datadir import DataDir
    from crnn_tf.export.saved_model import read_metadata
    from crnn_tf.features import FeatureConfig, speaker_cmvn_stats
    from serving.server import Server

    test = DataDir.load(str(work / "corpus" / "test"))
    speaker, utts = max(test.spk2utt.items(), key=lambda item: len(item[1]))
    config = FeatureConfig.from_dict(read_metadata(str(work / "export" / "FFNN" / "1")).feature_config)
    np.save(tmp_path / "spk.npy", speaker_cmvn_stats([test.load_audio(u) for u in utts], config))
    (tmp_path / "bad.wav").write_bytes(b"RIFF broken")
    wavs = [test.wav[utts[0]], str(tmp_path / "bad.wav"), test.wav[utts[-1]]]
    server = Server(str(work / "export" / "FFNN"), "FFNN", rest_port=-1, grpc_port=0, poll_seconds=0)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "serving.recognize", f"--server=127.0.0.1:{server.grpc_port}", "--model_name=FFNN",
             f"--graph_dir={work / 'hmm' / 'graph'}", f"--cmvn_stats={tmp_path / 'spk.npy'}", *wavs],
            capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    finally:
        server.stop()
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 1 and "1 input(s) failed" in done.stderr
    assert [line["utt"] for line in lines] == wavs
    assert "error" in lines[1] and "bad.wav" in lines[1]["error"]
    assert all(line["words"] and "error" not in line for line in (lines[0], lines[2]))


def test_real_recordings_join_the_synthetic_corpus_by_speaker(tmp_path):
    """Stages 0-1 with an FSDD-shaped checkout: combined data dirs, a GMM bootstrapped on the synthetic timings that
    aligns the recordings, the union retrained, and a digit-loop graph; the stage range is honoured."""
    import pathlib

    import kaldifst

    from crnn_tf.corpus.fsdd import DIGIT_WORDS
    from crnn_tf.data.kaldi_io import read_int32_vectors, read_text_table
    from crnn_tf.hmm.graph import make_word_loop_graph
    from crnn_tf.hmm.lang import read_symbols
    from tests.corpus.test_fsdd import _fake_fsdd

    fsdd = _fake_fsdd(tmp_path / "fsdd", takes=2)
    work = tmp_path / "exp"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = [sys.executable, "-m", "tools.recipe", f"--work_dir={work}", f"--report_dir={tmp_path / 'report'}",
            "--num_utterances=60", "--gmm_iters=3", "--max_gauss=100", f"--fsdd={fsdd}",
            "--fsdd_test_speakers=carol", "--fsdd_dev_takes=0"]
    done = subprocess.run(args + ["--stop_stage=1"], capture_output=True, text=True, timeout=600, cwd=root,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    stages = [line.split()[-1] for line in done.stdout.splitlines() if line.startswith("== stage")]
    assert stages == ["data", "hmm"]
    data = json.loads((work / "done" / "data").read_text())
    train = read_text_table(os.path.join(data["train"], "text"))
    assert sum(u.startswith("fsdd_") for u in train) == 20 and len(train) > 20  # alice + bob, takes 1
    assert data["tests"]["fsdd"].endswith("test") and set(data["tests"]) == {"synthetic", "fsdd"}
    assert (work / "hmm" / "bootstrap" / "final.mdl").exists()
    aligned = read_int32_vectors(str(work / "hmm" / "mono" / "pdf_ali.ark"))
    hmm = json.loads((work / "done" / "hmm").read_text())
    assert len(aligned) + hmm["failed_utts"] == len(train)
    assert (work / "hmm" / "graph" / "HCLG.fst").exists()
    # FSDD's sets are decoded with a loop over its ten digits, the synthetic ones over the whole lexicon (with OH).
    assert data["vocabularies"] == {"fsdd": list(DIGIT_WORDS), "dev_fsdd": list(DIGIT_WORDS)}
    graph = pathlib.Path(make_word_loop_graph(hmm["lang"], hmm["model"], str(tmp_path / "digits"),
                                              data["vocabularies"]["fsdd"]))
    words = {v: k for k, v in read_symbols(str(graph.parent / "lang" / "words.txt")).items()}
    grammar = kaldifst.StdVectorFst.read(str(graph.parent / "lang" / "G.fst"))
    assert (graph / "HCLG.fst").exists()
    loop = {words[arc.olabel] for state in range(grammar.num_states) for arc in kaldifst.ArcIterator(grammar, state)}
    assert loop == set(DIGIT_WORDS) and "OH" in words.values()
    later = subprocess.run(args + ["--stage=3"], capture_output=True, text=True, timeout=600, cwd=root)
    assert later.returncode != 0 and "stage features (2) has not run yet" in later.stderr
