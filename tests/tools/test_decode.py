"""crnn-decode end to end: oracle log-posteriors from an ark decode to the reference text."""
import os
import subprocess
import sys

import numpy as np

from crnn_tf.data.kaldi_io import read_int32_vectors, read_matrices, write_matrices
from crnn_tf.data.priors import log_priors
from crnn_tf.hmm.align import read_prior_counts

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_decode_cli_with_oracle_posteriors(tiny_alignment, tmp_path):
    pdf = read_int32_vectors(tiny_alignment.pdf_ali)
    utts = sorted(pdf)[:10]
    post = {}
    for u in utts:
        x = np.full((len(pdf[u]), tiny_alignment.num_pdfs), np.log(1e-30), np.float32)
        x[np.arange(len(x)), pdf[u]] = 0.0
        post[u] = x
    write_matrices(f"ark:{tmp_path / 'post.ark'}", post.items())
    ref = tmp_path / "ref.txt"
    text = dict(line.split(" ", 1) for line in open(tiny_alignment.corpus / "train" / "text"))
    ref.write_text("".join(f"{u} {text[u]}" for u in utts))
    proc = subprocess.run(
        [sys.executable, "-m", "tools.decode", f"--graph_dir={tiny_alignment.graph_dir}",
         f"--scores=ark:{tmp_path / 'post.ark'}", f"--prior_counts={tiny_alignment.prior_counts}",
         f"--ref_text={ref}", f"--out_dir={tmp_path / 'out'}", "--num_workers=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "%WER 0.00 [ 0 /" in proc.stdout
    assert (tmp_path / "out" / "hyp.txt").read_text() == ref.read_text()
    # The written log-likelihoods are posteriors minus log priors, readable as a Kaldi matrix ark.
    ll = dict(read_matrices(str(tmp_path / "out" / "loglik.ark")))
    lp = log_priors(read_prior_counts(tiny_alignment.prior_counts))
    np.testing.assert_allclose(ll[utts[0]], post[utts[0]] - lp, rtol=1e-6)
    assert len((tmp_path / "out" / "words.ctm").read_text().splitlines()) == sum(len(text[u].split()) for u in utts)
