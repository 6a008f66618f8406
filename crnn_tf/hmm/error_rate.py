"""Word and character error rates (WER / CER) with kaldialign: per-utterance alignments and a Kaldi compute-wer style
summary.

Example:
    >>> s = error_rate({"u1": ["ONE", "TWO"]}, {"u1": ["ONE", "THREE", "FOUR"]})
    >>> s.summary()
    '%WER 100.00 [ 2 / 2, 1 ins, 0 del, 1 sub ]'
"""
from __future__ import annotations

import collections
import dataclasses

import kaldialign
import numpy as np

EPS = "<eps>"


@dataclasses.dataclass
class UttErrors:
    """Edit counts of one utterance and its alignment [(ref or <eps>, hyp or <eps>)]."""

    utt: str
    ref_len: int
    ins: int
    dels: int
    subs: int
    alignment: list[tuple[str, str]]

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs


@dataclasses.dataclass
class ErrorRate:
    """Edit counts over a set of utterances, and their error rate (`per_utt` keeps each one's alignment)."""

    unit: str
    ref_len: int
    ins: int
    dels: int
    subs: int
    per_utt: list[UttErrors]
    missing: list[str] = dataclasses.field(default_factory=list)
    oov_count: int = 0

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def rate(self) -> float:
        """Error rate in percent (100 * errors / reference length)."""
        return 100.0 * self.errors / max(self.ref_len, 1)

    @property
    def sentence_errors(self) -> int:
        return sum(1 for u in self.per_utt if u.errors)

    def interval(self, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
        """Bootstrap confidence interval of `rate` (percent), resampling utterances with replacement.

        Utterances, not words, are the independent units (a misrecognised utterance often has several errors), so
        the interval is wider than a binomial one over words. Deterministic for a given seed.

        Example:
          >>> lo, hi = error_rate({"a": ["X"], "b": ["Y"]}, {"a": ["X"], "b": ["Z"]}).interval()
          >>> lo, hi
          (0.0, 100.0)
        """
        if not self.per_utt:
            return 0.0, 0.0
        errors = np.array([u.errors for u in self.per_utt], np.float64)
        words = np.array([u.ref_len for u in self.per_utt], np.float64)
        picks = np.random.default_rng(seed).integers(0, len(errors), size=(resamples, len(errors)))
        rates = 100.0 * errors[picks].sum(1) / np.maximum(words[picks].sum(1), 1.0)
        tail = 100.0 * (1.0 - level) / 2.0
        low, high = np.percentile(rates, [tail, 100.0 - tail])
        return float(low), float(high)

    def summary(self) -> str:
        """``%WER 12.34 [ 12 / 100, 3 ins, 4 del, 5 sub ]`` (Kaldi compute-wer's first line)."""
        return (f"%{self.unit} {self.rate:.2f} [ {self.errors} / {self.ref_len}, {self.ins} ins, {self.dels} del, "
                f"{self.subs} sub ]")

    def sentence_summary(self) -> str:
        """``%SER 20.00 [ 1 / 5 ]`` (compute-wer's second line)."""
        n = len(self.per_utt)
        return f"%SER {100.0 * self.sentence_errors / max(n, 1):.2f} [ {self.sentence_errors} / {n} ]"

    def compute_wer_text(self) -> str:
        """What Kaldi's ``compute-wer --mode=present`` prints (a decode dir's ``wer_<LMWT>``, read by best_wer.sh).

        Example:
          >>> print(error_rate({"u1": ["A", "B"]}, {"u1": ["A"]}).compute_wer_text())
          %WER 50.00 [ 1 / 2, 0 ins, 1 del, 0 sub ]
          %SER 100.00 [ 1 / 1 ]
          Scored 1 sentences, 0 not present in hyp.
        """
        return "\n".join([self.summary(), self.sentence_summary(),
                          f"Scored {len(self.per_utt)} sentences, {len(self.missing)} not present in hyp."])

    def confusions(self, top: int | None = None) -> list[tuple[str, str, int]]:
        """The most frequent errors as (reference token, hypothesis token, count), most frequent first (ties in
        token order): substitutions, insertions (reference ``<eps>``) and deletions (hypothesis ``<eps>``), as
        sclite's confusion pairs and Kaldi's ``wer_ops_details.pl`` list them.

        Args:
          top: how many to return (default: all).

        Example:
          >>> error_rate({"a": ["SIX"], "b": ["SIX"], "c": ["TWO"]},
          ...            {"a": ["EIGHT"], "b": ["EIGHT"], "c": ["ZERO", "TWO"]}).confusions()
          [('SIX', 'EIGHT', 2), ('<eps>', 'ZERO', 1)]
        """
        counts = collections.Counter(pair for u in self.per_utt for pair in u.alignment if pair[0] != pair[1])
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return [(ref, hyp, count) for (ref, hyp), count in ranked[:top]]

    def report(self, top_confusions: int = 20) -> str:
        """Summary, sentence error rate, OOV count, the `top_confusions` most frequent errors (count, reference,
        hypothesis; default 20) and per-utterance alignments (errors marked)."""
        lines = [self.summary(), self.sentence_summary()]
        if self.oov_count:
            lines.append(f"OOV words in the references: {self.oov_count}")
        if self.missing:
            lines.append(f"utterances with no hypothesis (scored as all deletions): {len(self.missing)}")
        confusions = self.confusions(top_confusions)
        if confusions:
            lines.append("most frequent errors (count ref -> hyp):")
            lines.extend(f"{count:6d} {ref} -> {hyp}" for ref, hyp, count in confusions)
        for u in self.per_utt:
            ref = " ".join(r if r == h else r.upper() if r != EPS else "***" for r, h in u.alignment)
            hyp = " ".join(h if r == h else h.upper() if h != EPS else "***" for r, h in u.alignment)
            lines.append(f"{u.utt} ref {ref}\n{u.utt} hyp {hyp}\n{u.utt} #err {u.errors} "
                         f"(ins {u.ins} del {u.dels} sub {u.subs})")
        return "\n".join(lines)


def error_rate(refs: dict[str, list[str]], hyps: dict[str, list[str]], unit: str = "WER",
               oov_words: set[str] | None = None) -> ErrorRate:
    """Counts the errors of hypotheses against references (utterances missing from `hyps` count as empty hypotheses).

    Args:
      refs: utt -> reference tokens.
      hyps: utt -> hypothesis tokens.
      unit: "WER" (word tokens as given) or "CER" (tokens are joined and split into characters, spaces dropped).
      oov_words: vocabulary; reference words outside it are counted in `oov_count` (default: not counted).
    """
    per_utt, missing = [], []
    totals = dict(ref_len=0, ins=0, dels=0, subs=0)
    oov = 0
    for utt in sorted(refs):
        ref = refs[utt]
        if oov_words is not None:
            oov += sum(1 for w in ref if w not in oov_words)
        if utt not in hyps:
            missing.append(utt)
        hyp = hyps.get(utt, [])
        if unit == "CER":
            ref, hyp = list("".join(ref)), list("".join(hyp))
        d = kaldialign.edit_distance(ref, hyp)
        ali = [(r, h) for r, h in kaldialign.align(ref, hyp, EPS)]
        per_utt.append(UttErrors(utt, len(ref), d["ins"], d["del"], d["sub"], ali))
        totals["ref_len"] += len(ref)
        totals["ins"] += d["ins"]
        totals["dels"] += d["del"]
        totals["subs"] += d["sub"]
    return ErrorRate(unit, per_utt=per_utt, missing=missing, oov_count=oov, **totals)
