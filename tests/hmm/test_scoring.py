"""WER/CER scoring: golden numbers and compute-wer format."""
from crnn_tf.hmm.scoring import score


def test_wer_summary_matches_compute_wer_format():
    s = score({"a": "ONE TWO THREE".split(), "b": "FOUR".split()}, {"a": "ONE TOO THREE FIVE".split(), "b": []})
    assert (s.ins, s.dels, s.subs, s.ref_len) == (1, 1, 1, 4)
    assert s.summary() == "%WER 75.00 [ 3 / 4, 1 ins, 1 del, 1 sub ]"
    assert s.sentence_errors == 2
    assert "a ref ONE TWO THREE ***" in s.report()


def test_cer_missing_hypotheses_and_oov_count():
    s = score({"a": ["AB", "C"], "b": ["X"]}, {"a": ["AC"]}, unit="CER", oov_words={"AB", "C"})
    assert s.summary() == "%CER 50.00 [ 2 / 4, 0 ins, 2 del, 0 sub ]"
    assert s.missing == ["b"] and s.oov_count == 1
