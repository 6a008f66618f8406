"""GMM-HMM alignment: agreement with the synthesiser's timings, label/frame contract, priors, Kaldi input."""
import os
import wave

import numpy as np
import pytest

from crnn_tf.data.kaldi_io import read_int32_vectors, read_text_table, write_int32_vectors
from crnn_tf.hmm import align as A
from crnn_tf.hmm.features import num_frames


def test_phone_agreement_with_synthesiser_timings(tiny_alignment):
    # Acceptance: >= 85 % of frames carry the phone the synthesiser produced there.
    assert tiny_alignment.phone_agreement >= 0.85, tiny_alignment.phone_agreement


def test_pdf_alignment_matches_snip_edges_framing(tiny_alignment):
    pdf = read_int32_vectors(tiny_alignment.pdf_ali)
    wavs = read_text_table(tiny_alignment.corpus / "train" / "wav.scp")
    assert sorted(pdf) == sorted(wavs)
    for utt, path in wavs.items():
        with wave.open(path) as w:
            assert len(pdf[utt]) == num_frames(w.getnframes(), w.getframerate()) == 1 + (w.getnframes() - 200) // 80
        assert pdf[utt].dtype == np.int32 and 0 <= pdf[utt].min() and pdf[utt].max() < tiny_alignment.num_pdfs
    counts = A.read_prior_counts(tiny_alignment.prior_counts)
    assert len(counts) == tiny_alignment.num_pdfs
    assert counts.sum() == sum(len(v) for v in pdf.values())


def test_kaldi_alignment_input(tiny_alignment, tmp_path):
    # Kaldi's own transition-id alignment + final.mdl -> the same pdf labels and priors as ours.
    pdf_path, prior_path = A.kaldi_alignment_to_pdfs(tiny_alignment.ali, tiny_alignment.model, str(tmp_path))
    ours, theirs = read_int32_vectors(tiny_alignment.pdf_ali), read_int32_vectors(pdf_path)
    assert all(np.array_equal(ours[u], theirs[u]) for u in ours)
    assert open(prior_path).read() == open(tiny_alignment.prior_counts).read()
    # As Kaldi leaves them: exp/tri1_ali/ali.{1,2}.gz, named by the directory.
    import gzip

    ali_dir = tmp_path / "tri1_ali"
    ali_dir.mkdir()
    tids = sorted(read_int32_vectors(tiny_alignment.ali).items())
    for job in (1, 2):
        write_int32_vectors(f"ark:{ali_dir / f'ali.{job}'}", tids[job - 1::2])
        (ali_dir / f"ali.{job}.gz").write_bytes(gzip.compress((ali_dir / f"ali.{job}").read_bytes()))
        (ali_dir / f"ali.{job}").unlink()
    pdf_dir, _ = A.kaldi_alignment_to_pdfs(str(ali_dir), tiny_alignment.model, str(tmp_path / "from_dir"))
    assert read_int32_vectors(pdf_dir).keys() == ours.keys()
    assert all(np.array_equal(ours[u], v) for u, v in read_int32_vectors(pdf_dir).items())
    bad = {"u1": np.array([1, 10 ** 6], np.int32)}
    write_int32_vectors(f"ark:{tmp_path / 'bad.ark'}", bad.items())
    import pytest

    with pytest.raises(ValueError, match="utterance u1 has transition id 1000000 outside"):
        A.kaldi_alignment_to_pdfs(str(tmp_path / "bad.ark"), tiny_alignment.model, str(tmp_path / "x"))


def test_flat_start_runs(tiny_alignment, tmp_path):
    cfg = A.GmmTrainConfig(init="flat", num_iters=4, realign_iters=(1, 2, 3), max_gauss=100, gauss_increase_iters=3)
    res = A.train_mono(str(tiny_alignment.corpus / "train"), tiny_alignment.lang_dir, str(tmp_path), cfg)
    assert not res.failed_utts and os.path.exists(res.pdf_ali)
    assert res.phone_agreement > 0.5, res.phone_agreement


def test_align_with_model_reproduces_training_alignment_and_aligns_held_out_data(tiny_alignment, tmp_path):
    from crnn_tf.hmm import model as hmm_model
    from crnn_tf.hmm.lang import Lang

    corpus = tiny_alignment.corpus
    # The final training pass is exactly this alignment: re-aligning train with final.mdl must reproduce it.
    again = A.align_with_model(str(corpus / "train"), tiny_alignment.lang_dir, tiny_alignment.model,
                               str(tmp_path / "train"))
    ours, reference = read_int32_vectors(again["ali"]), read_int32_vectors(tiny_alignment.ali)
    assert sorted(ours) == sorted(reference)
    differing = sum(int((ours[u] != reference[u]).sum()) for u in reference)
    total = sum(len(reference[u]) for u in reference)
    assert differing == 0, f"{differing} of {total} frames differ"
    # Held-out dev voices: every utterance aligns, labels fit the framing, phones agree with the timings.
    dev = A.align_with_model(str(corpus / "dev"), tiny_alignment.lang_dir, tiny_alignment.model,
                             str(tmp_path / "dev"))
    dev_ali = read_int32_vectors(dev["ali"])
    assert dev["failed_utts"] == [] and len(dev_ali) == len(read_text_table(corpus / "dev" / "text"))
    counts = A.read_prior_counts(dev["prior_counts"])
    assert len(counts) == tiny_alignment.num_pdfs and counts.sum() == sum(len(a) for a in dev_ali.values())
    tm = hmm_model.read_transition_model(tiny_alignment.model)
    agreement = A.phone_agreement(dev_ali, tm, Lang(tiny_alignment.lang_dir), str(corpus / "dev" / "phone_times.ctm"))
    assert agreement >= 0.8, agreement


def test_align_with_a_binary_model_on_kaldi_features(tiny_alignment, tmp_path):
    # A Kaldi delta system aligning a data dir as align_si.sh would: binary final.mdl, feats.scp + cmvn.scp.
    import shutil

    from crnn_tf.data.datadir import DataDir
    from crnn_tf.data.kaldi_io import write_matrices
    from crnn_tf.hmm.features import mfcc
    from tests.data.fixtures import write_kaldi_transition_model

    dev = tmp_path / "dev"
    shutil.copytree(tiny_alignment.corpus / "dev", dev)
    data = DataDir.load(str(dev))
    static = {utt: mfcc(*data.read_audio(utt)) for utt in data.utterances}
    write_matrices(f"ark,scp:{tmp_path}/raw_mfcc.ark,{dev}/feats.scp", sorted(static.items()))
    stats = {}
    for utt, x in static.items():
        x = x.astype(np.float64)
        spk = data.utt2spk[utt]
        stats[spk] = stats.get(spk, 0) + np.stack([np.append(x.sum(0), len(x)), np.append((x * x).sum(0), 0)])
    write_matrices(f"ark,scp:{tmp_path}/cmvn.ark,{dev}/cmvn.scp", sorted(stats.items()), double=True)
    tm, gmm = A.read_gmm_model(tiny_alignment.model)
    (tmp_path / "tri1").mkdir()
    write_kaldi_transition_model(tmp_path / "tri1" / "final.mdl", tm, True, "<Tuples>", gmm=gmm)
    audio = A.align_with_model(str(dev), tiny_alignment.lang_dir, tiny_alignment.model, str(tmp_path / "a"))
    kaldi = A.align_with_model(str(dev), tiny_alignment.lang_dir, str(tmp_path / "tri1" / "final.mdl"),
                               str(tmp_path / "k"), features="feats_scp")
    assert kaldi["failed_utts"] == [] and kaldi["num_utterances"] == audio["num_utterances"]
    a, k = read_int32_vectors(audio["pdf_ali"]), read_int32_vectors(kaldi["pdf_ali"])
    same = sum(int((a[u] == k[u]).sum()) for u in a) / sum(len(a[u]) for u in a)
    assert same > 0.9, same  # only the deltas' mean normalisation differs between the two front ends


def test_utterances_without_timings_start_from_a_given_alignment(tiny_alignment, tmp_path):
    import shutil

    from crnn_tf.data.kaldi_io import read_int32_vectors
    from crnn_tf.hmm.align import GmmTrainConfig, train_mono

    data = tmp_path / "train"
    shutil.copytree(tiny_alignment.corpus / "train", data)
    ctm = (data / "phone_times.ctm").read_text().splitlines()
    untimed = sorted({line.split()[0] for line in ctm})[::3]  # as if every third were a real recording
    (data / "phone_times.ctm").write_text("".join(f"{line}\n" for line in ctm if line.split()[0] not in untimed))
    config = GmmTrainConfig(num_iters=2, realign_iters=(1, 2), max_gauss=100, gauss_increase_iters=1)
    with pytest.raises(ValueError, match=f"utterance {untimed[0]} has no phone timings"):
        train_mono(str(data), tiny_alignment.lang_dir, str(tmp_path / "refused"), config)
    result = train_mono(str(data), tiny_alignment.lang_dir, str(tmp_path / "mono"), config,
                        init_alignment=tiny_alignment.pdf_ali)
    aligned = read_int32_vectors(result.pdf_ali)
    assert set(untimed) <= set(aligned) and not result.failed_utts
    assert result.phone_agreement > 0.7  # measured over the timed utterances only


def _damaged_copy(data_dir, out):
    """A copy of `data_dir` where one utterance has no transcript, one a corrupt wav, one a command entry, and one
    transcript has no recording; returns (out, the three utterances that must be skipped, the rest)."""
    import shutil

    shutil.copytree(data_dir, out)
    texts, wavs = read_text_table(out / "text"), read_text_table(out / "wav.scp")
    untranscribed, corrupt, piped, *rest = sorted(wavs)
    (out / "text").write_text("".join(f"{u} {t}\n" for u, t in sorted(texts.items()) if u != untranscribed)
                              + "ghost ONE\n")
    bad_wav = out / "corrupt.wav"
    bad_wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    wavs[corrupt], wavs[piped] = str(bad_wav), f"cat {wavs[piped]} |"
    (out / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in sorted(wavs.items())))
    return out, {untranscribed: "no transcript", corrupt: "corrupt.wav", piped: "allow_pipes=True",
                 "ghost": "not in"}, rest


def test_alignment_skips_what_it_cannot_use_naming_each_and_fails_when_nothing_is_left(tiny_alignment, tmp_path):
    data, expected, rest = _damaged_copy(tiny_alignment.corpus / "dev", tmp_path / "dev")
    out = A.align_with_model(str(data), tiny_alignment.lang_dir, tiny_alignment.model, str(tmp_path / "ali"))
    reasons = {item["utt"]: item["reason"] for item in out["skipped_utts"]}
    assert sorted(reasons) == sorted(expected)
    for utt, words in expected.items():
        assert words in reasons[utt], reasons[utt]
    assert sorted(read_int32_vectors(out["pdf_ali"])) == rest
    piped = next(u for u, words in expected.items() if words == "allow_pipes=True")
    allowed = A.align_with_model(str(data), tiny_alignment.lang_dir, tiny_alignment.model, str(tmp_path / "ali2"),
                                 allow_pipes=True)
    assert piped in read_int32_vectors(allowed["pdf_ali"])
    (data / "text").write_text("nobody ONE\n")
    with pytest.raises(ValueError, match=r"none of its 13 utterances can be aligned \(first reasons: "):
        A.align_with_model(str(data), tiny_alignment.lang_dir, tiny_alignment.model, str(tmp_path / "ali3"))


def _gmm_log_likelihoods(tiny_alignment, split):
    texts, feats, _ = A.alignable_features(str(tiny_alignment.corpus / split))
    _, gmm = A.read_gmm_model(tiny_alignment.model)
    return texts, {utt: gmm.loglik(x) for utt, x in feats.items()}


def test_aligning_with_the_gmms_own_scores_reproduces_its_alignment(tiny_alignment, tmp_path):
    # Oracle: handed the GMM's per-pdf log-likelihoods, the score-driven aligner is align_with_model frame for frame.
    texts, scores = _gmm_log_likelihoods(tiny_alignment, "train")
    out = A.align_with_log_likelihoods(tiny_alignment.lang_dir, tiny_alignment.model, texts, scores,
                                       str(tmp_path / "net_ali"))
    ours, reference = read_int32_vectors(out["ali"]), read_int32_vectors(tiny_alignment.ali)
    assert out["failed_utts"] == [] and out["num_utterances"] == len(reference) and sorted(ours) == sorted(reference)
    assert all(np.array_equal(ours[u], reference[u]) for u in reference)
    pdf, reference_pdf = read_int32_vectors(out["pdf_ali"]), read_int32_vectors(tiny_alignment.pdf_ali)
    assert all(np.array_equal(pdf[u], reference_pdf[u]) for u in reference_pdf)


def test_scores_that_favour_another_valid_alignment_move_the_labels_to_it(tiny_alignment, tmp_path):
    # A "network" sure of the dev alignment of align_with_model (log-likelihood 0 on its pdf, -20 elsewhere) must
    # get exactly those labels back, although the GMM is never consulted.
    texts, _ = _gmm_log_likelihoods(tiny_alignment, "dev")
    target = read_int32_vectors(A.align_with_model(str(tiny_alignment.corpus / "dev"), tiny_alignment.lang_dir,
                                                   tiny_alignment.model, str(tmp_path / "gmm"))["pdf_ali"])
    scores = {}
    for utt, pdfs in target.items():
        confident = np.full((len(pdfs), tiny_alignment.num_pdfs), -20.0, np.float32)
        confident[np.arange(len(pdfs)), pdfs] = 0.0
        scores[utt] = confident
    out = A.align_with_log_likelihoods(tiny_alignment.lang_dir, tiny_alignment.model, texts, scores,
                                       str(tmp_path / "net"))
    got = read_int32_vectors(out["pdf_ali"])
    assert sorted(got) == sorted(target) and all(np.array_equal(got[u], target[u]) for u in target)


def test_score_alignment_names_what_is_wrong_and_lists_utterances_no_path_fits(tiny_alignment, tmp_path):
    texts, scores = _gmm_log_likelihoods(tiny_alignment, "dev")
    first, second = sorted(scores)[:2]
    one = {first: scores[first]}
    align = A.align_with_log_likelihoods
    lang, model = tiny_alignment.lang_dir, tiny_alignment.model
    with pytest.raises(ValueError, match=f"utterance {first}: scores of shape \\({len(scores[first])}, 7\\), but "
                                         f".*final.mdl has {tiny_alignment.num_pdfs} pdfs"):
        align(lang, model, texts, {first: scores[first][:, :7]}, str(tmp_path / "a"))
    bad = scores[first].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=f"utterance {first}: its scores hold NaN or infinity"):
        align(lang, model, texts, {first: bad}, str(tmp_path / "b"))
    with pytest.raises(ValueError, match=f"utterance {first} has scores but no transcript"):
        align(lang, model, {second: texts[second]}, one, str(tmp_path / "c"))
    with pytest.raises(ValueError, match="no scored utterances"):
        align(lang, model, texts, {}, str(tmp_path / "d"))
    # Three frames cannot hold a word's phones (three states each): that utterance is named, the other aligns.
    out = align(lang, model, texts, {first: scores[first][:3], second: scores[second]}, str(tmp_path / "e"))
    assert out["failed_utts"] == [first] and sorted(read_int32_vectors(out["pdf_ali"])) == [second]
    with pytest.raises(ValueError, match=f"none of the 2 scored utterances fits .*\\(first: {first}\\)"):
        align(lang, model, texts, {u: scores[u][:3] for u in (first, second)}, str(tmp_path / "f"))
