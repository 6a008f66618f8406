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
         "--num_utterances=90", "--epochs=1", "--gmm_iters=4", "--max_gauss=150", f"--nets={NETS}"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.mark.slow
def test_recipe_runs_every_stage_and_resumes(tmp_path):
    work, report = tmp_path / "exp", tmp_path / "report"
    first = _recipe(work, report)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-4000:]
    stages = [line.split()[-1] for line in first.stdout.splitlines() if line.startswith("== stage")]
    assert stages[:4] == ["corpus", "hmm", "features", "train_FFNN"]
    assert {f"decode_{net}" for net in ("FFNN", "LSTMP", "CLSTM")} <= set(stages)

    rows = json.loads((report / "results.json").read_text())
    assert [row["net"] for row in rows] == ["FFNN", "LSTMP", "CLSTM"]
    for row in rows:
        assert row["params"] > 0 and 0.0 < row["dev_frame_accuracy"] <= 1.0
        for key in ("dev_wer", "dev_cer", "test_wer", "test_cer"):
            assert 0.0 <= row[key] < float("inf")  # insertions can take a toy net's WER past 100%
    table = (report / "results.md").read_text()
    assert "| CLSTM | `CLstm8P8+Pool3+Lstm32P16+ReLU64` |" in table and table in first.stdout + table
    for chart in ("learning_curves.png", "error_rates.png"):
        assert (report / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The served exports are TF Serving layout: <base>/<name>/<version>/saved_model.pb.
    assert (work / "export" / "CLSTM" / "1" / "saved_model.pb").exists()

    again = _recipe(work, report)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "== stage" not in again.stdout  # every stage was already done
    assert "| CLSTM |" in again.stdout
