"""Test-wide settings: the TensorFlow Keras backend, quiet logs, and deterministic seeds."""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fixed_seeds():
    import keras

    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield


# ---- HMM side: a tiny synthetic corpus and its GMM-HMM alignment, shared by all test packages. ----

@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """~120 synthetic 8 kHz connected-digit utterances (train 96 / dev 12 / test 12, test voices unseen).

    Returns the corpus root (pathlib.Path) with train/ dev/ test/ (Kaldi data dirs with phone_times.ctm), dict/
    and wav/.
    """
    from crnn_tf.corpus import make_corpus

    root = tmp_path_factory.mktemp("tiny_corpus")
    make_corpus(str(root), num_utterances=120, task="digits", sample_rate=8000, seed=0, num_workers=2)
    return root


@pytest.fixture(scope="session")
def tiny_alignment(tiny_corpus, tmp_path_factory):
    """GMM-HMM alignment of tiny_corpus/train (lang, G, monophone GMM, HCLG), a few seconds.

    Returns a types.SimpleNamespace with exp_dir, lang_dir, graph_dir, model (final.mdl), ali (transition ids),
    pdf_ali (pdf ids per feature frame; the network labels), prior_counts, num_pdfs, phone_agreement, corpus.
    """
    import types

    from crnn_tf.hmm.align import GmmTrainConfig, align_data_dir

    exp = tmp_path_factory.mktemp("tiny_exp")
    cfg = GmmTrainConfig(num_iters=8, realign_iters=(1, 2, 3, 4, 5, 6, 7), max_gauss=200, gauss_increase_iters=6)
    out = align_data_dir(str(tiny_corpus / "train"), str(tiny_corpus / "dict"), str(exp), cfg)
    return types.SimpleNamespace(exp_dir=exp, lang_dir=out["lang"], graph_dir=out["graph"], model=out["model"],
                                 ali=out["ali"], pdf_ali=out["pdf_ali"], prior_counts=out["prior_counts"],
                                 num_pdfs=out["num_pdfs"], phone_agreement=out["phone_agreement"],
                                 corpus=tiny_corpus)


@pytest.fixture(scope="session")
def tiny_lang(tiny_alignment):
    """Path of tiny_alignment's lang dir (phones.txt, words.txt, L.fst, L_disambig.fst, G.fst, topo)."""
    return tiny_alignment.lang_dir
