"""crnn-align end to end on the tiny corpus (subprocess), and its Kaldi-alignment mode."""
import json
import os
import subprocess
import sys

import numpy as np

from crnn_tf.data.kaldi_io import read_int32_vectors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(module, args):
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_align_cli(tiny_corpus, tmp_path):
    out = _run("tools.align", [f"--data={tiny_corpus / 'train'}", f"--exp={tmp_path}", "--num_iters=4",
                               "--max_gauss=120"])
    assert out["phone_agreement"] > 0.8 and not out["failed_utts"]
    assert os.path.exists(os.path.join(out["graph"], "HCLG.fst"))
    kaldi = _run("tools.align", [f"--kaldi_ali={tmp_path / 'mono' / 'ali.ark'}", f"--kaldi_model={out['model']}",
                                 f"--exp={tmp_path / 'k'}"])
    a, b = read_int32_vectors(out["pdf_ali"]), read_int32_vectors(kaldi["pdf_ali"])
    assert all(np.array_equal(a[u], b[u]) for u in a)
    # --stage=tri1 on the same exp dir: the tree, the triphone system and its graph, as train_deltas.sh leaves them.
    tri1 = _run("tools.align", [f"--data={tiny_corpus / 'train'}", f"--exp={tmp_path}", "--stage=tri1",
                                "--num_leaves=80", "--tot_gauss=200", "--tri_iters=2"])
    for name in ("final.mdl", "tree", "ali.ark", "pdf_ali.ark", "prior_counts", "graph/HCLG.fst"):
        assert os.path.exists(tmp_path / "tri1" / name), name
    assert out["num_pdfs"] < tri1["num_pdfs"] <= 80 and not tri1["failed_utts"]
    assert tri1["loglik_per_frame"] > out["loglik_per_frame"]


def test_align_cli_tri1_needs_a_monophone_system_first(tiny_corpus, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.align", f"--data={tiny_corpus / 'train'}",
                           f"--exp={tmp_path}", "--stage=tri1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and f"needs {tmp_path}/mono/final.mdl" in proc.stderr and "--stage=mono" in proc.stderr


def test_align_cli_names_what_it_skips_and_fails_when_nothing_is_left(tiny_corpus, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_corpus / "dev", data)
    texts = sorted((data / "text").read_text().splitlines())
    (data / "text").write_text("".join(f"{line}\n" for line in texts[1:]))
    dropped = texts[0].split()[0]
    args = [f"--data={data}", f"--dict={tiny_corpus / 'dict'}", "--num_iters=2", "--max_gauss=60"]
    proc = subprocess.run([sys.executable, "-m", "tools.align", *args, f"--exp={tmp_path / 'exp'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [item["utt"] for item in out["skipped_utts"]] == [dropped]
    assert f"skipped {dropped}: no transcript in {data / 'text'}" in proc.stderr
    assert "1 utterance(s) skipped" in proc.stderr
    assert dropped not in read_int32_vectors(out["pdf_ali"]) and len(read_int32_vectors(out["pdf_ali"])) == 11
    (data / "text").write_text("nobody ONE\n")  # the LM still has a sentence; no recording has a transcript
    proc = subprocess.run([sys.executable, "-m", "tools.align", *args, f"--exp={tmp_path / 'none'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "crnn-align:" in proc.stderr and "none of its 13 utterances" in proc.stderr
    assert "Traceback" not in proc.stderr
    (data / "text").write_text("")
    proc = subprocess.run([sys.executable, "-m", "tools.align", *args, f"--exp={tmp_path / 'empty'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and f"crnn-align: no transcripts in {data / 'text'}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_align_cli_realigns_with_a_networks_log_likelihoods(tiny_alignment, tmp_path):
    # crnn-decode's loglik.ark (here the GMM's own scores of dev, one utterance left out) -> the GMM's dev alignment.
    from crnn_tf.data.kaldi_io import write_matrices
    from crnn_tf.hmm import align as A

    dev = tiny_alignment.corpus / "dev"
    _, feats, _ = A.alignable_features(str(dev))
    _, gmm = A.read_gmm_model(tiny_alignment.model)
    unscored, *scored = sorted(feats)
    write_matrices(f"ark:{tmp_path / 'loglik.ark'}", ((u, gmm.loglik(feats[u])) for u in scored))
    reference = read_int32_vectors(A.align_with_model(str(dev), tiny_alignment.lang_dir, tiny_alignment.model,
                                                      str(tmp_path / "gmm"))["pdf_ali"])
    proc = subprocess.run([sys.executable, "-m", "tools.align", f"--loglikes=ark:{tmp_path / 'loglik.ark'}",
                           f"--model={tiny_alignment.model}", f"--data={dev}", f"--exp={tmp_path / 'net_ali'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = read_int32_vectors(out["pdf_ali"])
    assert sorted(ours) == scored and all(np.array_equal(ours[u], reference[u]) for u in scored)
    assert f"1 utterance(s) of {dev}/text have no scores in ark:{tmp_path / 'loglik.ark'} (first: {unscored})" \
        in proc.stderr
    counts = A.read_prior_counts(out["prior_counts"])
    assert len(counts) == tiny_alignment.num_pdfs and counts.sum() == sum(len(v) for v in ours.values())
    proc = subprocess.run([sys.executable, "-m", "tools.align", f"--loglikes=ark:{tmp_path / 'loglik.ark'}",
                           f"--data={dev}", f"--exp={tmp_path / 'x'}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode != 0 and "--loglikes needs --model" in proc.stderr
