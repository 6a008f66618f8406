"""Triphone system on the tiny corpus: tree from the monophone alignment, conversion, EM, HCLG that decodes."""
import os

import numpy as np
import pytest

from crnn_tf.data.kaldi_io import read_int32_vectors, read_text_table, write_int32_vectors
from crnn_tf.hmm import model as hmm_model
from crnn_tf.hmm import triphone
from crnn_tf.hmm.align import read_gmm_model
from crnn_tf.hmm.tree import TransitionTable, frame_events


@pytest.fixture(scope="module")
def tri1(tiny_alignment, tmp_path_factory):
    out = tmp_path_factory.mktemp("tri1")
    result = triphone.train_triphone(str(tiny_alignment.corpus / "train"), tiny_alignment.lang_dir,
                                     os.path.dirname(tiny_alignment.model), str(out / "tri1"),
                                     triphone.TreeConfig(num_leaves=120, thresh=100, edge_as_silence=True),
                                     triphone.triphone_gmm_config(tot_gauss=400, num_iters=4))
    return result


def test_triphone_system_has_more_senones_and_fits_the_training_data_better(tiny_alignment, tri1):
    mono = read_gmm_model(tiny_alignment.model)
    tm, gmm = read_gmm_model(tri1.model)
    assert tri1.num_pdfs == tm.num_pdfs == gmm.num_pdfs > tiny_alignment.num_pdfs
    tree = hmm_model.read_tree(tri1.tree)
    assert (tree.context_width, tree.central_position, tree.num_pdfs) == (3, 1, tri1.num_pdfs)
    feats_frames = sum(len(a) for a in read_int32_vectors(tiny_alignment.pdf_ali).values())
    assert tri1.num_frames == feats_frames and not tri1.failed_utts
    assert tri1.phone_agreement > 0.8
    # The monophone model's likelihood of the same frames under its own final alignment.
    mono_loglik = _loglik_per_frame(mono[1], tiny_alignment)
    assert tri1.loglik_per_frame > mono_loglik, (tri1.loglik_per_frame, mono_loglik)


def _loglik_per_frame(gmm, tiny_alignment):
    from crnn_tf.hmm.features import compute_mfcc

    feats = compute_mfcc(str(tiny_alignment.corpus / "train"))
    pdfs = read_int32_vectors(tiny_alignment.pdf_ali)
    stats = gmm.zero_stats()
    gmm.accumulate(stats, np.concatenate([feats[u] for u in sorted(pdfs)]), np.concatenate([pdfs[u] for u in
                                                                                           sorted(pdfs)]))
    return stats.loglik / stats.frames


def test_an_utterance_edge_context_gets_the_silence_contexts_pdfs(tiny_alignment, tri1):
    # The fixture asks the edge as silence: a word at the very start or end of a recording (trimmed) gets the pdfs
    # it has after or before silence, never leaves learnt from edges alone.
    from crnn_tf.hmm.lang import Lang

    lang = Lang(tiny_alignment.lang_dir)
    tree = hmm_model.read_tree(tri1.tree)
    sil = lang.phones["SIL"]
    speech = [p for p in lang.real_phones if p not in lang.silence_phones]
    asked = 0
    for phone in speech:
        for pdf_class in range(3):
            after_silence, before_silence = tree.compute([sil, phone, speech[0]], pdf_class), tree.compute(
                [speech[0], phone, sil], pdf_class)
            assert tree.compute([0, phone, speech[0]], pdf_class) == after_silence
            assert tree.compute([speech[0], phone, 0], pdf_class) == before_silence
            asked += after_silence != tree.compute([speech[0], phone, speech[0]], pdf_class)
    assert asked, "no pdf depends on a silence context: the test asks nothing"


def test_silence_is_context_independent_and_conversion_keeps_the_phones(tiny_alignment, tri1):
    from crnn_tf.hmm.lang import Lang

    lang = Lang(tiny_alignment.lang_dir)
    tm = hmm_model.read_transition_model(tri1.model)
    tree = hmm_model.read_tree(tri1.tree)
    sil = lang.phones["SIL"]
    for pdf_class in range(3):
        answers = {tree.compute([left, sil, right], pdf_class)[1] for left in lang.real_phones[:6]
                   for right in lang.real_phones[-6:]}
        assert len(answers) == 1
    old_tm = hmm_model.read_transition_model(tiny_alignment.model)
    mono_ali, tri_ali = read_int32_vectors(tiny_alignment.ali), read_int32_vectors(tri1.ali)
    utt = sorted(mono_ali)[0]
    mono_phones = hmm_model.tid2phone(old_tm)[mono_ali[utt]]
    assert len(tri_ali[utt]) == len(mono_phones)
    windows, _ = frame_events(tri_ali[utt], TransitionTable.of(tm))
    assert set(windows[:, 1]) <= set(lang.real_phones)


def test_triphone_graph_decodes_the_unseen_voices(tiny_alignment, tri1, tmp_path):
    from crnn_tf.hmm.decoder import HybridDecoder
    from crnn_tf.hmm.error_rate import error_rate
    from crnn_tf.hmm.features import compute_mfcc
    from crnn_tf.hmm.graph import make_hclg

    graph = str(tmp_path / "graph")
    make_hclg(tiny_alignment.lang_dir, tri1.model, graph)  # finds the tree beside final.mdl
    _, gmm = read_gmm_model(tri1.model)
    test = tiny_alignment.corpus / "test"
    feats = sorted(compute_mfcc(str(test)).items())[:6]
    decoder = HybridDecoder(graph, acoustic_scale=0.083)
    assert decoder.num_pdfs == tri1.num_pdfs
    refs = {u: t.split() for u, t in read_text_table(test / "text").items() if u in dict(feats)}
    s = error_rate(refs, {u: decoder.decode(gmm.loglik(x), u).words for u, x in feats})
    assert s.rate < 35.0, s.report()


def test_an_alignment_of_another_model_is_refused_naming_both_pdf_counts(tiny_alignment, tri1, tmp_path):
    with pytest.raises(ValueError, match=rf"another model \(.*tri1/final.mdl, with {tri1.num_pdfs} pdfs\).*"
                                         rf"for its {tiny_alignment.num_pdfs} pdfs"):
        triphone.train_triphone(str(tiny_alignment.corpus / "train"), tiny_alignment.lang_dir,
                                os.path.dirname(tiny_alignment.model), str(tmp_path / "x"), alignment=tri1.ali)
    bad = tmp_path / "alone" / "ali.ark"
    bad.parent.mkdir()
    write_int32_vectors(f"ark:{bad}", [("u1", np.array([1, 10 ** 5], np.int32))])
    with pytest.raises(ValueError, match=rf"a model with more than {tiny_alignment.num_pdfs} pdfs"):
        triphone.check_alignment_fits(read_int32_vectors(str(bad)), hmm_model.read_transition_model(
            tiny_alignment.model), str(bad), tiny_alignment.model)


def test_lang_without_roots_and_questions_gets_kaldis_defaults(tiny_alignment, tmp_path, caplog):
    import logging
    import shutil

    from crnn_tf.hmm.lang import Lang

    lang_dir = tmp_path / "lang"
    shutil.copytree(tiny_alignment.lang_dir, lang_dir)
    written = triphone.read_tree_inputs(Lang(str(lang_dir)))
    (lang_dir / "phones" / "roots.txt").unlink()
    (lang_dir / "phones" / "extra_questions.txt").unlink()
    lang = Lang(str(lang_dir))
    with caplog.at_level(logging.INFO):
        roots, questions = triphone.read_tree_inputs(lang)
    assert "roots.txt is missing" in caplog.text and "extra_questions.txt is missing" in caplog.text
    assert [r.phones for r in roots] == [(p,) for p in lang.real_phones] and all(r.shared and r.split for r in roots)
    assert questions == [frozenset(lang.silence_phones), frozenset(set(lang.real_phones) - set(lang.silence_phones))]
    # What prepare_lang writes from a dict dir without them is the same (one phone per line of the phone lists).
    assert written == (roots, questions)
