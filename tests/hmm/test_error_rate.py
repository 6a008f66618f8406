"""WER/CER: golden numbers and compute-wer format."""
import pytest

from crnn_tf.hmm.error_rate import error_rate


def test_wer_summary_matches_compute_wer_format():
    s = error_rate({"a": "ONE TWO THREE".split(), "b": "FOUR".split()}, {"a": "ONE TOO THREE FIVE".split(), "b": []})
    assert (s.ins, s.dels, s.subs, s.ref_len) == (1, 1, 1, 4)
    assert s.summary() == "%WER 75.00 [ 3 / 4, 1 ins, 1 del, 1 sub ]"
    assert s.sentence_errors == 2
    assert "a ref ONE TWO THREE ***" in s.report()
    assert "most frequent errors (count ref -> hyp):\n     1 <eps> -> FIVE\n     1 FOUR -> <eps>\n     1 TWO -> TOO\n" \
        in s.report()


def test_cer_missing_hypotheses_and_oov_count():
    s = error_rate({"a": ["AB", "C"], "b": ["X"]}, {"a": ["AC"]}, unit="CER", oov_words={"AB", "C"})
    assert s.summary() == "%CER 50.00 [ 2 / 4, 0 ins, 2 del, 0 sub ]"
    assert s.missing == ["b"] and s.oov_count == 1


def test_bootstrap_interval_brackets_the_rate():
    refs = {f"u{i:03d}": ["ONE"] for i in range(200)}
    hyps = {u: (["TWO"] if i % 10 == 0 else ["ONE"]) for i, u in enumerate(sorted(refs))}
    result = error_rate(refs, hyps)
    assert result.rate == pytest.approx(10.0)
    low, high = result.interval()
    # Binomial over 200 independent one-word utterances: 10 ± 1.96 · 2.12.
    assert low == pytest.approx(10 - 1.96 * 2.12, abs=1.2) and high == pytest.approx(10 + 1.96 * 2.12, abs=1.2)
    assert result.interval() == (low, high)  # seeded
    assert error_rate(refs, refs).interval() == (0.0, 0.0)
    narrow = result.interval(level=0.5)
    assert low < narrow[0] < 10 < narrow[1] < high


def test_confusions_count_substitutions_insertions_and_deletions():
    refs = {"a": ["SIX"], "b": ["SIX"], "c": ["ZERO"], "d": ["ONE", "TWO"], "e": ["NINE"], "f": ["THREE"]}
    hyps = {"a": ["EIGHT"], "b": ["EIGHT"], "c": ["ZERO", "TWO"], "d": ["ONE"], "e": ["FIVE"], "f": ["THREE"]}
    result = error_rate(refs, hyps)
    assert result.confusions() == [("SIX", "EIGHT", 2), ("<eps>", "TWO", 1), ("NINE", "FIVE", 1), ("TWO", "<eps>", 1)]
    assert sum(count for _, _, count in result.confusions()) == result.errors
    assert result.confusions(top=1) == [("SIX", "EIGHT", 2)]
    assert error_rate(refs, refs).confusions() == []
