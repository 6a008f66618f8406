"""A Kaldi user's experiment directory, as Kaldi 5.5 writes it, used unchanged from data prep to decoding.

The fixture lays out `data/{train,test}` (make_mfcc.sh's CM-compressed 13-dim MFCCs behind feats.scp byte offsets,
compute_cmvn_stats.sh's per-speaker cmvn.scp), `exp/tri1/{final.mdl (binary), tree, num_jobs, ali.{1,2}.gz}` and
`exp/tri1/graph/{HCLG.fst (const), words.txt, phones.txt, phones/}` (mkgraph.sh: no model in the graph dir) from the
tiny GMM-HMM system; then crnn-prepare-data → crnn-train → crnn-export → crnn-decode --graph_dir=exp/tri1/graph
run on it with no file converted or copied.
"""
import gzip
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(tool, *args, timeout=600):
    proc = subprocess.run([sys.executable, "-m", f"tools.{tool}", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, f"{tool}: {proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def _kaldi_data_dir(source, target, mfcc_dir, name):
    """make_mfcc.sh + compute_cmvn_stats.sh: CM-compressed MFCCs in raw_mfcc_<name>.1.ark, per-speaker stats."""
    from crnn_tf.data import kaldi_io
    from crnn_tf.data.datadir import DataDir
    from crnn_tf.hmm.features import mfcc
    from tests.data.fixtures import write_compressed_ark

    os.makedirs(target)
    for table in ("wav.scp", "text", "utt2spk", "spk2utt"):
        shutil.copy(os.path.join(source, table), os.path.join(target, table))
    data = DataDir.load(source)
    feats = {utt: mfcc(*data.read_audio(utt)) for utt in data.utterances}
    ark = os.path.join(mfcc_dir, f"raw_mfcc_{name}.1.ark")
    offsets = write_compressed_ark(ark, [(utt, feats[utt], "CM") for utt in sorted(feats)])
    with open(os.path.join(target, "feats.scp"), "w") as f:
        f.writelines(f"{utt} {ark}:{offsets[utt]}\n" for utt in sorted(feats))
    stored = dict(kaldi_io.read_matrices(os.path.join(target, "feats.scp")))
    stats = {}
    for utt, x in stored.items():
        spk = data.utt2spk[utt]
        x = x.astype(np.float64)
        add = np.stack([np.append(x.sum(0), len(x)), np.append((x * x).sum(0), 0.0)])
        stats[spk] = stats.get(spk, 0) + add
    kaldi_io.write_matrices(f"ark,scp:{mfcc_dir}/cmvn_{name}.ark,{target}/cmvn.scp", sorted(stats.items()),
                            double=True)


@pytest.fixture(scope="module")
def kaldi_exp(tiny_alignment, tmp_path_factory):
    """The Kaldi 5.5 layout of the tiny system; returns its root (pathlib.Path)."""
    import kaldifst

    from crnn_tf.data import kaldi_io
    from crnn_tf.hmm.align import read_gmm_model
    from tests.data.fixtures import write_kaldi_transition_model

    root = tmp_path_factory.mktemp("kaldi_s5")
    mfcc_dir = root / "mfcc"
    mfcc_dir.mkdir()
    for name in ("train", "test"):
        _kaldi_data_dir(str(tiny_alignment.corpus / name), str(root / "data" / name), str(mfcc_dir), name)
    tri1 = root / "exp" / "tri1"
    (tri1 / "graph" / "phones").mkdir(parents=True)
    tm, gmm = read_gmm_model(tiny_alignment.model)
    write_kaldi_transition_model(tri1 / "final.mdl", tm, True, "<Tuples>", gmm=gmm)
    shutil.copy(os.path.join(os.path.dirname(tiny_alignment.model), "tree"), tri1 / "tree")
    ali = sorted(kaldi_io.read_int32_vectors(os.path.join(os.path.dirname(tiny_alignment.model), "ali.ark")).items())
    for job in (1, 2):
        plain = tri1 / f"ali.{job}"
        kaldi_io.write_int32_vectors(f"ark:{plain}", ali[job - 1::2])
        with open(plain, "rb") as f, gzip.open(f"{plain}.gz", "wb") as packed:
            shutil.copyfileobj(f, packed)
        plain.unlink()
    (tri1 / "num_jobs").write_text("2\n")
    graph = tri1 / "graph"
    hclg = kaldifst.StdVectorFst.read(os.path.join(tiny_alignment.graph_dir, "HCLG.fst"))
    kaldifst.StdConstFst(hclg).write(str(graph / "HCLG.fst"))
    for table in ("words.txt", "phones.txt"):
        shutil.copy(os.path.join(tiny_alignment.graph_dir, table), graph / table)
    for table in os.listdir(os.path.join(tiny_alignment.lang_dir, "phones")):
        shutil.copy(os.path.join(tiny_alignment.lang_dir, "phones", table), graph / "phones" / table)
    with open(os.path.join(tiny_alignment.graph_dir, "lexicon.txt")) as f:
        (graph / "phones" / "align_lexicon.txt").write_text(
            "".join(f"{line.split()[0]} {line.strip()}\n" for line in f if line.strip()))
    return root


@pytest.mark.slow
def test_kaldi_exp_dir_from_data_prep_to_decoding(kaldi_exp, tiny_alignment, tmp_path):
    import tensorflow as tf

    from crnn_tf.data import kaldi_io
    from crnn_tf.data.pipelines import utterance_dataset

    data, tri1, work = kaldi_exp / "data", kaldi_exp / "exp" / "tri1", tmp_path
    assert (tri1 / "final.mdl").read_bytes().startswith(b"\0B<TransitionModel>")
    assert (tri1 / "graph" / "HCLG.fst").read_bytes()[8:13] == b"const"
    assert not (tri1 / "graph" / "final.mdl").exists()

    prepared = json.loads(_run(
        "prepare_data", f"--data_dir={data / 'train'}", f"--output_dir={work / 'prep_train'}", "--use_feats_scp",
        "--cmvn=speaker", f"--alignments={tri1}", f"--transition_model={tri1 / 'final.mdl'}",
        "--noprogress").stdout.splitlines()[-1])
    assert prepared["feature_dim"] == 39 and prepared["skipped"] == 0  # 13 MFCCs + deltas, every utterance
    assert prepared["num_targets"] == tiny_alignment.num_pdfs  # final.mdl's pdf count, what the graph expects
    _run("prepare_data", f"--data_dir={data / 'test'}", f"--output_dir={work / 'prep_test'}", "--use_feats_scp",
         "--cmvn=speaker", "--noprogress")
    _run("train", "--model_spec=2xReLU64", f"--train_data={work / 'prep_train'}", f"--model_dir={work / 'model'}",
         "--epochs=3", "--batch_size=8", "--lr_initial=0.02", "--lr_final=0.002", "--noprogress")
    _run("export", f"--model_dir={work / 'model'}", f"--export_base={work / 'export'}", "--model_name=tri1_dnn")

    from crnn_tf.export.saved_model import read_metadata

    # Trained on Kaldi's MFCCs: no waveform signature (the package's front end computes filterbanks).
    assert "waveform" not in read_metadata(work / "export" / "tri1_dnn" / "1").signatures
    # What a served model returns for the test set's features, as the scores crnn-decode takes.
    scorer = tf.saved_model.load(str(work / "export" / "tri1_dnn" / "1")).signatures["serving_default"]
    scores = {}
    for ex in utterance_dataset(str(work / "prep_test")):
        x = ex["features"].numpy()[None]
        out = scorer(features=tf.constant(x), lengths=tf.constant([x.shape[1]], tf.int32))
        scores[ex["utt_id"].numpy().decode()] = out["log_likelihoods"].numpy()[0]
    kaldi_io.write_matrices(f"ark:{work / 'loglik.ark'}", sorted(scores.items()))

    decode_dir = tri1 / "decode_test_dnn"
    proc = _run("decode", f"--graph_dir={tri1 / 'graph'}", f"--scores=ark:{work / 'loglik.ark'}",
                f"--ref_text={data / 'test' / 'text'}", "--lm_weights=8:12", f"--out_dir={decode_dir}",
                "--num_workers=1")
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["utterances"] == len(scores) and 8 <= summary["best_lm_weight"] <= 12
    assert set(os.listdir(decode_dir / "scoring")) == {f"{w}.tra" for w in range(8, 13)} | {"test_filt.txt"}
    best = min((float((decode_dir / f"wer_{w}").read_text().split()[1]), w) for w in range(8, 13))
    assert summary["WER"].startswith(f"%WER {best[0]:.2f}")
    assert best[0] < 100.0  # a net trained 3 short epochs on 96 utterances: better than nothing, no more

    # The binary GMM itself decodes the same test set through the same graph (the baseline).
    gmm = _run("decode", f"--graph_dir={tri1 / 'graph'}", f"--data={data / 'test'}",
               f"--gmm_model={tri1 / 'final.mdl'}", f"--ref_text={data / 'test' / 'text'}",
               f"--out_dir={tri1 / 'decode_test_gmm'}", "--num_workers=1")
    gmm_wer = float(json.loads(gmm.stdout.splitlines()[-1])["WER"].split()[1])
    print(f"network: {summary}\nGMM: {gmm.stdout.splitlines()[-1]}")
    assert gmm_wer < 25.0
    ctm = (tri1 / "decode_test_gmm" / "words.ctm").read_text().splitlines()
    assert ctm and all(float(line.split()[2]) >= 0 for line in ctm)  # word times from phones/align_lexicon.txt
    # ... and with the features decode.sh gives a delta system: feats.scp, cmvn.scp, add-deltas.
    kaldi_feats = _run("decode", f"--graph_dir={tri1 / 'graph'}", f"--data={data / 'test'}", "--gmm_features=feats_scp",
                       f"--gmm_model={tri1 / 'final.mdl'}", f"--ref_text={data / 'test' / 'text'}",
                       f"--out_dir={tri1 / 'decode_test_gmm_feats'}", "--num_workers=1")
    kaldi_feats_wer = float(json.loads(kaldi_feats.stdout.splitlines()[-1])["WER"].split()[1])
    print(f"GMM on feats.scp: {kaldi_feats.stdout.splitlines()[-1]}")
    assert kaldi_feats_wer < 25.0
