"""Hybrid decoder: oracle decoding, GMM baseline on unseen voices, Kaldi interop, bad input."""
import os

import kaldi_native_io as kio
import numpy as np
import pytest

from crnn_tf.data.kaldi_io import read_int32_vectors, read_matrices, read_text_table, write_matrices
from crnn_tf.hmm import model as M
from crnn_tf.hmm.align import read_gmm_model
from crnn_tf.hmm.decoder import HybridDecoder
from crnn_tf.hmm.features import compute_mfcc
from crnn_tf.hmm.error_rate import error_rate


def _oracle(pdfs, num_pdfs):
    """Log-posteriors that put all mass on the reference pdf of each frame."""
    x = np.full((len(pdfs), num_pdfs), np.log(1e-30), np.float32)  # one-hot, floored
    x[np.arange(len(pdfs)), pdfs] = 0.0
    return x


@pytest.fixture(scope="module")
def decoder(tiny_alignment):
    return HybridDecoder(tiny_alignment.graph_dir, prior_counts=tiny_alignment.prior_counts, acoustic_scale=0.1)


def test_oracle_posteriors_decode_without_errors(tiny_alignment, decoder):
    pdf = read_int32_vectors(tiny_alignment.pdf_ali)
    text = read_text_table(tiny_alignment.corpus / "train" / "text")
    utts = sorted(pdf)[:40]
    results = [decoder.decode(_oracle(pdf[u], decoder.num_pdfs), u) for u in utts]
    s = error_rate({u: text[u].split() for u in utts}, {r.utt: r.words for r in results})
    assert s.errors == 0, s.report()
    for r in results:
        assert not r.partial and len(r.alignment) == r.num_frames
        assert all(0 <= a < b <= r.num_frames for a, b in zip(r.start_frames, r.end_frames))
        assert all(b <= a for b, a in zip(r.end_frames, r.start_frames[1:]))  # words in order, no overlap


def test_word_times_follow_the_synthesiser(tiny_alignment, decoder):
    from crnn_tf.corpus import read_phone_times

    pdf = read_int32_vectors(tiny_alignment.pdf_ali)
    times = read_phone_times(tiny_alignment.corpus / "train" / "phone_times.ctm")
    utt = sorted(pdf)[0]
    r = decoder.decode(_oracle(pdf[utt], decoder.num_pdfs), utt)
    first_speech = next(s for s in times[utt] if s.phone != "SIL")
    assert abs(r.start_frames[0] * 0.01 - first_speech.start) < 0.06


def test_gmm_likelihoods_on_unseen_voices(tiny_alignment):
    _, gmm = read_gmm_model(tiny_alignment.model)
    test = tiny_alignment.corpus / "test"
    feats = compute_mfcc(str(test))
    dec = HybridDecoder(tiny_alignment.graph_dir, acoustic_scale=0.083)  # log-likelihoods: no priors
    results = dec.decode_many([(u, gmm.loglik(f)) for u, f in sorted(feats.items())], num_workers=2)
    seq = [dec.decode(gmm.loglik(feats[u]), u) for u in sorted(feats)[:3]]
    assert [r.words for r in results[:3]] == [r.words for r in seq]  # processes == in-process
    refs = {u: t.split() for u, t in read_text_table(test / "text").items()}
    s = error_rate(refs, {r.utt: r.words for r in results})
    print(s.summary())
    assert s.rate < 30.0, s.report()  # 96 training utterances, 8 EM iterations: sane, not good


def test_graph_and_model_written_to_disk_decode_identically(tiny_alignment, tmp_path):
    import shutil

    from crnn_tf.hmm.graph import make_hclg

    tm = M.read_transition_model(tiny_alignment.model)
    hclg = make_hclg(tiny_alignment.lang_dir, tiny_alignment.model, str(tmp_path / "g"), tm=tm)
    in_memory = HybridDecoder(str(tmp_path / "g"), hclg=hclg, trans_model=tm)
    # Re-read everything from disk, from a copy of the directory.
    shutil.copytree(tmp_path / "g", tmp_path / "copy")
    from_disk = HybridDecoder(str(tmp_path / "copy"))
    assert from_disk.hclg.num_states == hclg.num_states
    rng = np.random.default_rng(0)
    for n in range(3):
        x = rng.normal(-5, 3, (120, in_memory.num_pdfs)).astype(np.float32)
        a, b = in_memory.decode(x, f"r{n}"), from_disk.decode(x, f"r{n}")
        assert a.words == b.words and np.array_equal(a.alignment, b.alignment)
        assert a.likelihood == pytest.approx(b.likelihood, abs=1e-3)


def test_loglik_ark_is_a_kaldi_matrix_archive(tmp_path, decoder):
    rng = np.random.default_rng(0)
    table = {f"u{i}": rng.normal(size=(10 + i, decoder.num_pdfs)).astype(np.float32) for i in range(3)}
    write_matrices(f"ark,scp:{tmp_path / 'll.ark'},{tmp_path / 'll.scp'}", table.items())
    with kio.RandomAccessFloatMatrixReader(f"scp:{tmp_path / 'll.scp'}") as r:
        for utt, m in table.items():
            np.testing.assert_array_equal(np.asarray(r[utt]), m)
    back = dict(read_matrices(str(tmp_path / "ll.ark")))
    assert all(np.array_equal(back[u], table[u]) for u in table)


def test_pdf_count_mismatch_is_a_clear_error(decoder):
    n = decoder.num_pdfs
    with pytest.raises(ValueError, match=rf"utterance utt: .*shape \(20, {n + 1}\).*{n} pdfs"):
        decoder.decode(np.zeros((20, decoder.num_pdfs + 1), np.float32))
    with pytest.raises(ValueError, match="prior counts have 3 pdfs"):
        HybridDecoder(decoder.graph_dir, prior_counts=np.ones(3))


def test_no_final_state_is_flagged_partial(decoder):
    # Two frames cannot reach a final state (every word needs >= 3 frames): flagged, not a silent empty result.
    r = decoder.decode(np.zeros((2, decoder.num_pdfs), np.float32), "short")
    assert r.partial and r.num_frames == 2
    ok = decoder.decode(np.zeros((200, decoder.num_pdfs), np.float32), "long")
    assert not ok.partial


def test_kaldi_graph_dir_decodes_like_ours(tmp_path, tiny_alignment, decoder):
    # mkgraph.sh's layout: exp/tri1/graph/HCLG.fst a const FST, no final.mdl there (decode.sh takes exp/tri1's).
    import shutil

    import kaldifst

    from crnn_tf.hmm.decoder import find_model
    from tests.data.fixtures import write_kaldi_transition_model

    graph = tmp_path / "exp" / "tri1" / "graph"
    graph.mkdir(parents=True)
    for name in ("words.txt", "phones.txt"):
        shutil.copy(os.path.join(tiny_alignment.graph_dir, name), graph / name)
    fst = kaldifst.StdVectorFst.read(os.path.join(tiny_alignment.graph_dir, "HCLG.fst"))
    kaldifst.StdConstFst(fst).write(str(graph / "HCLG.fst"))
    with pytest.raises(FileNotFoundError, match="neither .*graph/final.mdl nor .*tri1/final.mdl exists"):
        find_model(str(graph))
    write_kaldi_transition_model(graph.parent / "final.mdl", decoder.trans_model, True, "<Tuples>")
    kaldi = HybridDecoder(str(graph), prior_counts=tiny_alignment.prior_counts, acoustic_scale=0.1)
    assert kaldi.model_path == str(graph.parent / "final.mdl")
    assert kaldi.hclg.to_str() == fst.to_str()
    pdf = read_int32_vectors(tiny_alignment.pdf_ali)
    for utt in sorted(pdf)[:3]:
        x = _oracle(pdf[utt], decoder.num_pdfs)
        a, b = decoder.decode(x, utt), kaldi.decode(x, utt)
        assert a.words == b.words and np.array_equal(a.alignment, b.alignment) and a.likelihood == b.likelihood
    # Another model's final.mdl beside the graph: named with both transition-id counts, not a silent bad search.
    topo = M.make_topology([1, 2])
    M.write_model(str(graph.parent / "final.mdl"), M.transition_model(topo, M.monophone_tree(topo)))
    with pytest.raises(ValueError, match=r"graph/HCLG.fst uses transition ids up to \d+ but .*tri1/final.mdl has 12"):
        HybridDecoder(str(graph))


def test_binary_kaldi_model_decodes_like_the_text_one(tiny_alignment, decoder, tmp_path):
    # Kaldi's exp dirs hold a binary final.mdl: the decoder reads it without conversion.
    import shutil

    from tests.data.fixtures import write_kaldi_transition_model

    shutil.copytree(tiny_alignment.graph_dir, tmp_path / "g")
    write_kaldi_transition_model(tmp_path / "g" / "final.mdl", decoder.trans_model, True, "<Tuples>")
    assert (tmp_path / "g" / "final.mdl").read_bytes().startswith(b"\0B")
    binary = HybridDecoder(str(tmp_path / "g"), prior_counts=tiny_alignment.prior_counts, acoustic_scale=0.1)
    assert str(binary.trans_model) == str(decoder.trans_model)
    np.testing.assert_array_equal(binary._tid2pdf, decoder._tid2pdf)
    pdf = read_int32_vectors(tiny_alignment.pdf_ali)
    for utt in sorted(pdf)[:3]:
        x = _oracle(pdf[utt], decoder.num_pdfs)
        a, b = decoder.decode(x, utt), binary.decode(x, utt)
        assert a.words == b.words and np.array_equal(a.alignment, b.alignment)


def test_likelihood_is_the_scaled_acoustic_score_of_the_path_plus_its_graph_score(tiny_alignment):
    """Decoding the same scores at two acoustic scales finds the same path; the likelihoods differ by exactly the
    scale difference times the path's acoustic log-likelihood, computed here from the posteriors and priors."""
    from crnn_tf.hmm.align import read_prior_counts

    counts = read_prior_counts(tiny_alignment.prior_counts)
    pdf = read_int32_vectors(tiny_alignment.pdf_ali)
    utt = sorted(pdf)[3]
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(pdf[utt]), len(counts))).astype(np.float32)
    logits[np.arange(len(pdf[utt])), pdf[utt]] += 8.0  # the reference path stays best at both scales
    log_post = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    results = []
    for scale in (0.1, 0.25):
        dec = HybridDecoder(tiny_alignment.graph_dir, prior_counts=counts, prior_scale=0.5, acoustic_scale=scale)
        results.append(dec.decode(log_post, utt))
    first, second = results
    np.testing.assert_array_equal(first.alignment, second.alignment)
    t2p = M.tid2pdf(dec.trans_model)
    loglik = log_post - 0.5 * np.log(np.maximum(counts / counts.sum(), 1e-8))  # the hybrid rule, written out
    acoustic = float(loglik[np.arange(len(first.alignment)), t2p[first.alignment]].sum())
    assert second.likelihood - first.likelihood == pytest.approx((0.25 - 0.1) * acoustic, rel=1e-4, abs=1e-2)


def test_non_finite_scores_are_decoded_with_a_warning_naming_the_utterance(decoder, caplog):
    scores = np.full((30, decoder.num_pdfs), -2.0, np.float32)
    scores[3:7] = np.nan
    with caplog.at_level("WARNING", logger="crnn_tf.hmm.decoder"):
        decoder.decode(scores, utt="u-nan")
    assert any("u-nan" in r.getMessage() and f"{4 * decoder.num_pdfs} of" in r.getMessage() for r in caplog.records)


def test_word_spans_from_kaldi_word_boundaries(tmp_path):
    from crnn_tf.hmm.decoder import read_word_boundary, word_spans_from_boundaries

    # SIL | K_B AE_I T_E | SIL | AH_S | D_B AO_E  (phone ids 1..7), frames in 10 ms steps
    (tmp_path / "word_boundary.int").write_text("1 nonword\n2 begin\n3 internal\n4 end\n5 singleton\n6 begin\n7 end\n")
    kinds = read_word_boundary(str(tmp_path / "word_boundary.int"))
    segments = [(1, 0, 10), (2, 10, 14), (3, 14, 20), (4, 20, 25), (1, 25, 30), (5, 30, 36), (6, 36, 40),
                (7, 40, 47), (1, 47, 50)]
    assert word_spans_from_boundaries(3, segments, kinds) == ([10, 30, 36], [25, 36, 47])
    assert word_spans_from_boundaries(2, segments, kinds) == ([-1, -1], [-1, -1])  # not the path's words: no times
    assert read_word_boundary(str(tmp_path / "missing.int")) == {}
    (tmp_path / "bad.int").write_text("1 nonword\n2 start\n")
    with pytest.raises(ValueError, match=r"bad.int:2: expected '<phone id> <nonword\|begin.*found '2 start'"):
        read_word_boundary(str(tmp_path / "bad.int"))


def test_graph_dir_word_boundary_file_is_what_word_times_come_from(tiny_alignment, decoder, tmp_path):
    import shutil

    shutil.copytree(tiny_alignment.graph_dir, tmp_path / "g")
    (tmp_path / "g" / "phones").mkdir()
    (tmp_path / "g" / "phones" / "word_boundary.int").write_text(
        "".join(f"{i} nonword\n" for i in decoder.id2phone if i))  # no phone begins a word: no word gets a time
    marked = HybridDecoder(str(tmp_path / "g"), prior_counts=tiny_alignment.prior_counts, acoustic_scale=0.1)
    pdf = read_int32_vectors(tiny_alignment.pdf_ali)
    utt = sorted(pdf)[0]
    scores = _oracle(pdf[utt], decoder.num_pdfs)
    a, b = decoder.decode(scores, utt), marked.decode(scores, utt)
    assert a.words == b.words and min(a.start_frames) >= 0 and set(b.start_frames) == {-1}
