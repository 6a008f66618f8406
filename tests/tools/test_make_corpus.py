"""crnn-make-corpus end to end (subprocess), including the missing-tool message."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args, env=None):
    return subprocess.run([sys.executable, "-m", "tools.make_corpus", *args], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=300)


def test_make_corpus_cli(tmp_path):
    proc = _run([f"--out_dir={tmp_path}", "--num_utterances=6", "--task=commands", "--num_workers=1"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["counts"]["train"] == 4
    assert (tmp_path / "dict" / "lexicon.txt").exists() and (tmp_path / "test" / "phone_times.ctm").exists()


def test_missing_flite_is_a_usage_error(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # python is called by absolute path; flite is not found
    proc = _run([f"--out_dir={tmp_path / 'c'}", "--num_utterances=3"], env=env)
    assert proc.returncode != 0
    assert "apt-get install flite" in proc.stderr
