"""The recipe on triphone senones (CD-DNN-HMM) at toy scale: tree, tri1 GMM-HMM, a net on its pdfs, both GMMs."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_recipe_trains_and_decodes_a_net_on_tri1_senones(tmp_path):
    from crnn_tf.export import read_metadata
    from crnn_tf.hmm import model as hmm_model

    work, report = tmp_path / "exp", tmp_path / "report"
    run = subprocess.run(
        [sys.executable, "-m", "tools.recipe", f"--work_dir={work}", f"--report_dir={report}",
         "--num_utterances=90", "--epochs=1", "--gmm_iters=4", "--max_gauss=150", "--nets=FFNN=ReLU64",
         "--senones=tri1", "--num_leaves=90", "--tot_gauss=250", "--tri_iters=4", "--tree_thresh=50",
         "--tree_edge_as_silence"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    hmm = json.loads((work / "done" / "hmm").read_text())
    tree = hmm_model.read_tree(str(work / "hmm" / "tri1" / "tree"))
    assert hmm["senones"] == "tri1" and tree.num_pdfs == hmm["num_pdfs"] > hmm["mono"]["num_pdfs"]
    assert hmm["loglik_per_frame"] > hmm["mono"]["loglik_per_frame"] and hmm["tree"]["edge_as_silence"]
    # The net predicts the tree's pdfs, and is decoded with the tri1 graph beside the two GMM-HMMs.
    export = next((work / "export" / "FFNN").iterdir())
    assert read_metadata(str(export)).num_senones == hmm["num_pdfs"]
    results = json.loads((report / "results.json").read_text())
    rows = {row["net"]: row for row in results["rows"]}
    assert list(rows) == ["FFNN", "GMM-HMM", "GMM-HMM mono"]
    assert rows["GMM-HMM"]["results"]["synthetic"]["wer"] < 30.0  # toy scale; the monophone one gets ~10 %
    assert rows["FFNN"]["results"]["synthetic"]["wer"] < 100.0
    table = (report / "results.md").read_text()
    assert f"{hmm['num_pdfs']} senones (tied triphone states of a decision tree" in table
    assert "the utterance edge asked as silence" in table
