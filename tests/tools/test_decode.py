"""crnn-decode end to end: oracle log-posteriors from an ark decode to the reference text."""
import json
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


def test_decode_cli_on_a_kaldi_graph_dir_writes_a_kaldi_decode_dir(tiny_alignment, tmp_path):
    # exp/tri1/graph as mkgraph.sh leaves it (const HCLG.fst, no final.mdl: the binary one is in exp/tri1), an LM
    # weight sweep as local/score.sh does it.
    import shutil

    import kaldifst

    from crnn_tf.hmm import model as M
    from tests.data.fixtures import write_kaldi_transition_model

    graph = tmp_path / "exp" / "tri1" / "graph"
    graph.mkdir(parents=True)
    shutil.copy(os.path.join(tiny_alignment.graph_dir, "words.txt"), graph / "words.txt")
    hclg = kaldifst.StdVectorFst.read(os.path.join(tiny_alignment.graph_dir, "HCLG.fst"))
    kaldifst.StdConstFst(hclg).write(str(graph / "HCLG.fst"))
    write_kaldi_transition_model(graph.parent / "final.mdl", M.read_transition_model(tiny_alignment.model), True,
                                 "<Tuples>")
    pdf = read_int32_vectors(tiny_alignment.pdf_ali)
    utts = sorted(pdf)[:4]
    write_matrices(f"ark:{tmp_path / 'post.ark'}",
                   ((u, np.where(np.arange(tiny_alignment.num_pdfs) == pdf[u][:, None], 0.0, -30.0)) for u in utts))
    text = dict(line.split(" ", 1) for line in open(tiny_alignment.corpus / "train" / "text"))
    (tmp_path / "ref.txt").write_text("".join(f"{u} {text[u]}" for u in utts))
    out = tmp_path / "exp" / "tri1" / "decode_test"
    proc = subprocess.run(
        [sys.executable, "-m", "tools.decode", f"--graph_dir={graph}", f"--scores=ark:{tmp_path / 'post.ark'}",
         f"--prior_counts={tiny_alignment.prior_counts}", f"--ref_text={tmp_path / 'ref.txt'}", "--lm_weights=9:11",
         f"--out_dir={out}", "--num_workers=1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for lmwt in (9, 10, 11):
        lines = (out / f"wer_{lmwt}").read_text().splitlines()
        assert lines[0].startswith("%WER 0.00 [ 0 / ") and lines[2] == "Scored 4 sentences, 0 not present in hyp."
        words = dict(line.split() for line in open(graph / "words.txt"))
        tra = dict(line.split(" ", 1) for line in (out / "scoring" / f"{lmwt}.tra").read_text().splitlines())
        assert tra == {u: " ".join(words[w] for w in text[u].split()) for u in utts}
    assert (out / "hyp.txt").read_text() == (tmp_path / "ref.txt").read_text()
    assert '"best_lm_weight": 9' in proc.stdout and "not_in_ref_text" not in proc.stdout
    # A reference text lacking one decoded utterance: said, not silently dropped from the scoring.
    (tmp_path / "ref3.txt").write_text("".join(f"{u} {text[u]}" for u in utts[:3]))
    proc = subprocess.run(
        [sys.executable, "-m", "tools.decode", f"--graph_dir={graph}", f"--scores=ark:{tmp_path / 'post.ark'}",
         f"--prior_counts={tiny_alignment.prior_counts}", f"--ref_text={tmp_path / 'ref3.txt'}",
         f"--out_dir={tmp_path / 'out3'}", "--num_workers=1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    message = f"1 decoded utterances are not in {tmp_path / 'ref3.txt'} and are not scored (first: {utts[3]})"
    assert message in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["not_in_ref_text"] == [utts[3]]
    # Scores one column wider than the model's pdfs: an error naming the utterance, the model and both numbers.
    n = tiny_alignment.num_pdfs
    write_matrices(f"ark:{tmp_path / 'wide.ark'}", [(utts[0], np.zeros((len(pdf[utts[0]]), n + 1), np.float32))])
    proc = subprocess.run(
        [sys.executable, "-m", "tools.decode", f"--graph_dir={graph}", f"--scores=ark:{tmp_path / 'wide.ark'}",
         f"--out_dir={tmp_path / 'bad'}", "--num_workers=1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert (f"crnn-decode: utterance {utts[0]}: network output has shape ({len(pdf[utts[0]])}, {n + 1}) but "
            f"{graph.parent / 'final.mdl'} has {n} pdfs") in proc.stderr
    # --model naming another system's model: the graph does not fit it.
    topo = M.make_topology([1, 2])
    M.write_model(str(tmp_path / "other.mdl"), M.transition_model(topo, M.monophone_tree(topo)))
    proc = subprocess.run(
        [sys.executable, "-m", "tools.decode", f"--graph_dir={graph}", f"--model={tmp_path / 'other.mdl'}",
         f"--scores=ark:{tmp_path / 'post.ark'}", f"--out_dir={tmp_path / 'bad'}", "--num_workers=1"], cwd=ROOT,
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "HCLG.fst uses transition ids up to" in proc.stderr and f"{tmp_path / 'other.mdl'} has 12" in proc.stderr
