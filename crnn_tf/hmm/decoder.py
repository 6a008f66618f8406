"""Hybrid DNN-HMM decoding: network log-posteriors -> pseudo log-likelihoods -> HCLG Viterbi beam search.

Like Kaldi nnet1's ``nnet-forward --class-frame-counts | latgen-faster-mapped``: pseudo log-likelihood =
log posterior - prior_scale * log prior (priors floored as nnet1 does, `crnn_tf.data.priors.log_priors`), then
kaldi-hmm-gmm's LatticeFasterDecoder with a DecodableCtc over ``acoustic_scale * loglik[:, tid2pdf[1:]]`` (the matrix
decodable maps pdf ids to transition ids, as decode-faster-mapped does).

Works with our graph dir or Kaldi's (HCLG.fst as an OpenFst vector or const FST, `crnn_tf.hmm.fst_io.read_fst`;
final.mdl in binary or text format; words.txt).
Scores and log-likelihoods go in and out as Kaldi matrix arks with `crnn_tf.data.kaldi_io` (`read_matrices`,
`write_matrices`).

Example:
    >>> dec = HybridDecoder("exp/mono/graph", prior_counts="exp/mono/prior_counts", acoustic_scale=0.1)
    >>> res = dec.decode(log_posteriors)            # [T, num_pdfs] float array
    >>> res.words, res.start_frames, res.end_frames, res.likelihood, res.partial
"""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os

import kaldi_hmm_gmm as khg
import numpy as np

from crnn_tf.hmm import model as hmm_model
from crnn_tf.hmm.fst_io import max_input_label, read_fst
from crnn_tf.data import priors as label_priors
from crnn_tf.hmm.lang import read_lexicon, read_symbols

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DecodeResult:
    """One utterance's best path.

    Attributes:
      utt: utterance id.
      words: recognised words.
      start_frames, end_frames: per word, first frame and one past the last frame (-1 when the word's phones could
        not be matched to the lexicon).
      likelihood: total log-likelihood of the best path (graph score + acoustic_scale * acoustic), as Kaldi logs it.
      partial: True when no token reached a final state of HCLG (the words are then the best partial hypothesis,
        possibly empty) — never a silent empty result.
      num_frames: frames decoded.
      alignment: transition id per frame of the best path.
    """

    utt: str
    words: list[str]
    start_frames: list[int]
    end_frames: list[int]
    likelihood: float
    partial: bool
    num_frames: int
    alignment: np.ndarray = dataclasses.field(repr=False, default_factory=lambda: np.zeros(0, np.int32))

    @property
    def text(self) -> str:
        return " ".join(self.words)


def find_model(graph_dir: str) -> str:
    """The model a graph dir decodes with: its own final.mdl (ours), else the one beside it (Kaldi's decode.sh takes
    `exp/tri1/final.mdl` for `exp/tri1/graph`).

    Raises:
      FileNotFoundError: naming both places when neither holds a final.mdl.

    Example:
      >>> find_model("exp/tri1/graph")
      'exp/tri1/final.mdl'
    """
    candidates = [os.path.join(graph_dir, "final.mdl"), os.path.join(os.path.dirname(os.path.normpath(graph_dir)),
                                                                        "final.mdl")]
    for path in candidates:
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"no model for graph dir {graph_dir}: neither {candidates[0]} nor {candidates[1]} "
                            "exists; give the model's path")


class HybridDecoder:
    """Decodes frame-level network outputs with an HCLG graph.

    Args:
      graph_dir: directory with HCLG.fst (vector or const) and words.txt, ours or Kaldi's (`exp/tri1/graph`);
        per-word frame times from phones/word_boundary.int (Kaldi's, position-dependent phones), else lexicon.txt
        (ours) or phones/align_lexicon.txt (Kaldi's); none: no times.
      acoustic_scale: scale on acoustic log-likelihoods (default 0.1, nnet1's decode.sh).
      beam: decoding beam (default 13.0).
      lattice_beam: lattice beam (default 8.0).
      max_active: maximum active states per frame (default 7000).
      prior_counts: None (default: `decode` receives log-likelihoods), a path (Kaldi text vector, e.g. our
        prior_counts) or an array of pdf counts: `decode` then receives log-posteriors and subtracts
        prior_scale * log prior.
      prior_scale: weight on the log prior (default 1.0).
      prior_floor: relative floor on priors (default 1e-8, as crnn_tf.data.priors.log_priors).
      model_path: transition model file (default `find_model(graph_dir)`: graph_dir/final.mdl, else Kaldi's
        graph_dir/../final.mdl).
      hclg, trans_model: already-loaded objects, overriding the files (used for tests and in-process graphs).

    Example:
      >>> dec = HybridDecoder("exp/mono/graph", prior_counts="exp/mono/prior_counts")
      >>> dec.decode(np.log(posteriors), utt="u1").words
      ['ONE', 'TWO']
    """

    def __init__(self, graph_dir: str, *, acoustic_scale: float = 0.1, beam: float = 13.0,
                 lattice_beam: float = 8.0, max_active: int = 7000, prior_counts=None, prior_scale: float = 1.0,
                 prior_floor: float = 1e-8, model_path: str | None = None, hclg=None, trans_model=None):
        self.graph_dir = graph_dir
        self.options = dict(acoustic_scale=acoustic_scale, beam=beam, lattice_beam=lattice_beam,
                            max_active=max_active, prior_scale=prior_scale, prior_floor=prior_floor,
                            model_path=model_path)
        self.acoustic_scale = acoustic_scale
        self.prior_scale = prior_scale
        self.model_path = model_path or (find_model(graph_dir) if trans_model is None else "<memory>")
        self.trans_model = trans_model if trans_model is not None else hmm_model.read_transition_model(self.model_path)
        self.hclg = hclg if hclg is not None else read_fst(os.path.join(graph_dir, "HCLG.fst"))
        self._num_tids = self.trans_model.num_transition_ids
        if hclg is None:
            self._check_graph_fits_model(os.path.join(graph_dir, "HCLG.fst"))
        self.words = read_symbols(os.path.join(graph_dir, "words.txt"))
        self.id2word = {i: w for w, i in self.words.items()}
        self.phones = read_symbols(os.path.join(graph_dir, "phones.txt")) if os.path.exists(
            os.path.join(graph_dir, "phones.txt")) else {}
        self.id2phone = {i: p for p, i in self.phones.items()}
        self.word_boundary = read_word_boundary(os.path.join(graph_dir, "phones", "word_boundary.int"))
        self.lexicon: dict[str, list[list[str]]] = {}
        for w, pron in _graph_lexicon(graph_dir):
            self.lexicon.setdefault(w, []).append(pron)
        self.num_pdfs = self.trans_model.num_pdfs
        self._tid2pdf = hmm_model.tid2pdf(self.trans_model)
        self._tid_cols = self._tid2pdf[1:]
        self._tid_phone = hmm_model.tid2phone(self.trans_model)
        self._tid_state = np.array([0] + [self.trans_model.tuples[self.trans_model.id2state[t] - 1].__getstate__()[1]
                                          for t in range(1, len(self._tid2pdf))], np.int32)
        self.log_priors = None
        if prior_counts is not None:
            counts = _load_counts(prior_counts)
            if len(counts) != self.num_pdfs:
                raise ValueError(f"prior counts have {len(counts)} pdfs but {self.model_path} has {self.num_pdfs}")
            self.log_priors = label_priors.log_priors(counts, floor=prior_floor)
        config = khg.LatticeFasterDecoderConfig(beam=beam, max_active=max_active, lattice_beam=lattice_beam)
        self._decoder = khg.LatticeFasterDecoder(self.hclg, config)

    def _check_graph_fits_model(self, hclg_path: str) -> None:
        """HCLG's input labels are transition ids of the model it was built for: more than this model has means
        another model's graph, whose search would read scores out of range."""
        largest = max_input_label(hclg_path)
        if largest is not None and largest > self._num_tids:
            raise ValueError(f"{hclg_path} uses transition ids up to {largest} but {self.model_path} has "
                             f"{self._num_tids}: the graph was built for another model")

    def log_likelihoods(self, scores: np.ndarray, utt: str | None = None) -> np.ndarray:
        """Pseudo log-likelihoods: `scores` minus prior_scale * log prior when priors are set, else unchanged.

        Args:
          scores: [T, num_pdfs] network outputs.
          utt: utterance id, named in errors. Default None.

        Raises:
          ValueError: `scores` is not [T, num_pdfs] of the transition model.
        """
        scores = np.asarray(scores, np.float32)
        if scores.ndim != 2 or scores.shape[1] != self.num_pdfs:
            where = f"utterance {utt}: " if utt is not None else ""
            raise ValueError(f"{where}network output has shape {scores.shape} but {self.model_path} has "
                             f"{self.num_pdfs} pdfs: the model's output layer and the transition model do not match")
        if self.log_priors is not None:
            scores = scores - self.prior_scale * self.log_priors
        return scores

    def decode(self, scores: np.ndarray, utt: str = "utt", acoustic_scale: float | None = None) -> DecodeResult:
        """Decodes one utterance.

        Args:
          scores: [T, num_pdfs] log-posteriors (when the decoder has priors) or log-likelihoods.
          utt: utterance id (for the result and messages).
          acoustic_scale: this call's acoustic scale (Kaldi's 1 / LM weight). Default None: the decoder's.
        """
        acoustic_scale = self.acoustic_scale if acoustic_scale is None else acoustic_scale
        loglik = self.log_likelihoods(scores, utt)
        if not np.all(np.isfinite(loglik)):
            bad = int(np.size(loglik) - np.count_nonzero(np.isfinite(loglik)))
            log.warning("utterance %s: %d of %d scores are NaN or infinite (decoded as -1e10 / 1e10); the "
                        "hypothesis is not to be trusted", utt, bad, np.size(loglik))
            loglik = np.nan_to_num(loglik, nan=-1e10, neginf=-1e10, posinf=1e10)
        matrix = np.ascontiguousarray(acoustic_scale * loglik[:, self._tid_cols])
        ok, tids, word_ids, like = khg.decode_utterance_lattice_faster(
            decoder=self._decoder, decodable=khg.DecodableCtc(matrix), trans_model=self.trans_model, utt=utt,
            allow_partial=False)
        partial = not ok
        if partial:
            ok, tids, word_ids, like = khg.decode_utterance_lattice_faster(
                decoder=self._decoder, decodable=khg.DecodableCtc(matrix), trans_model=self.trans_model, utt=utt,
                allow_partial=True)
            log.warning("utterance %s: no final state reached; %s", utt,
                        "partial hypothesis returned" if ok else "no surviving token, empty hypothesis")
            if not ok:
                tids, word_ids, like = [], [], float("-inf")
        tids = np.asarray(tids, np.int32)
        if tids.size and tids.max() > self._num_tids:  # a vector graph is only checked here (see __init__)
            raise ValueError(f"utterance {utt}: the best path of {self.graph_dir}/HCLG.fst has transition id "
                             f"{int(tids.max())} but {self.model_path} has {self._num_tids}: the graph was built "
                             "for another model")
        words = [self.id2word.get(w, f"<id{w}>") for w in word_ids]
        starts, ends = self._word_times(words, tids)
        return DecodeResult(utt, words, starts, ends, float(like), partial, len(loglik), tids)

    def _word_times(self, words: list[str], tids: np.ndarray) -> tuple[list[int], list[int]]:
        """Word frame spans of the best path: from Kaldi's phones/word_boundary.int when the graph dir has it (as
        lattice-align-words), else by matching the path's phones in order to each word's pronunciations."""
        if not words or not len(tids):
            return [-1] * len(words), [-1] * len(words)
        phones, states = self._tid_phone[tids], self._tid_state[tids]
        new = np.ones(len(tids), bool)
        new[1:] = (phones[1:] != phones[:-1]) | (states[1:] < states[:-1])
        bounds = list(np.flatnonzero(new)) + [len(tids)]
        segments = [(int(phones[b]), int(b), int(e)) for b, e in zip(bounds, bounds[1:])]
        if self.word_boundary:
            return word_spans_from_boundaries(len(words), segments, self.word_boundary)
        segs = [(_base(self.id2phone.get(phone, "")), b, e) for phone, b, e in segments]
        starts, ends, pos = [], [], 0
        for w in words:
            span = None
            for pron in self.lexicon.get(w, []):
                pron = [_base(p) for p in pron]
                k = pos
                while k < len(segs) and segs[k][0] != pron[0]:
                    k += 1  # skip optional silence before the word
                if k + len(pron) <= len(segs) and [s[0] for s in segs[k:k + len(pron)]] == pron:
                    span = (segs[k][1], segs[k + len(pron) - 1][2], k + len(pron))
                    break
            if span is None:
                starts.append(-1)
                ends.append(-1)
            else:
                starts.append(span[0])
                ends.append(span[1])
                pos = span[2]
        return starts, ends

    def decode_many(self, items, num_workers: int | None = None,
                    acoustic_scale: float | None = None) -> list[DecodeResult]:
        """Decodes (utt, scores) pairs in parallel processes (each builds its own decoder); order is preserved.

        Args:
          items: iterable of (utt, [T, num_pdfs] array).
          num_workers: processes (default os.cpu_count(); 1 decodes in this process).
          acoustic_scale: as in `decode`. Default None: the decoder's.
        """
        items = [(utt, x, acoustic_scale) for utt, x in items]
        num_workers = min(num_workers or os.cpu_count() or 1, max(1, len(items)))
        if num_workers == 1:
            return [self.decode(x, utt, scale) for utt, x, scale in items]
        args = (self.graph_dir, self.options, None if self.log_priors is None else np.exp(self.log_priors))
        with multiprocessing.get_context("spawn").Pool(num_workers, initializer=_init_worker, initargs=args) as pool:
            return pool.map(_decode_in_worker, items, chunksize=max(1, len(items) // (4 * num_workers)))


def _base(phone: str) -> str:
    """Strips Kaldi word-position suffixes (_B _E _I _S) so position-dependent phone sets match the lexicon."""
    return phone[:-2] if len(phone) > 2 and phone[-2] == "_" and phone[-1] in "BEIS" else phone


WORD_BOUNDARY_KINDS = ("nonword", "begin", "end", "internal", "singleton")


def read_word_boundary(path: str) -> dict[int, str]:
    """Kaldi's phones/word_boundary.int, `{phone id: nonword|begin|end|internal|singleton}`; {} when absent.

    Raises:
      ValueError: naming the file and line of an entry that is not `<phone id> <kind>`.
    """
    if not os.path.exists(path):
        return {}
    kinds = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in WORD_BOUNDARY_KINDS:
                raise ValueError(f"{path}:{number}: expected '<phone id> <{'|'.join(WORD_BOUNDARY_KINDS)}>', "
                                 f"found {line.strip()!r}")
            kinds[int(parts[0])] = parts[1]
    return kinds


def word_spans_from_boundaries(num_words: int, segments, kinds: dict[int, str]) -> tuple[list[int], list[int]]:
    """Word frame spans from the best path's phone segments and word-boundary kinds (what lattice-align-words does
    with position-dependent phones): a word runs from a begin (or singleton) phone to the next end (or singleton).

    Args:
      num_words: words on the path.
      segments: `(phone id, first frame, one past the last frame)` in path order.
      kinds: `read_word_boundary`'s map; a phone missing from it counts as nonword.

    Returns:
      `(start_frames, end_frames)`, all -1 when the path's phones do not make exactly `num_words` words.

    Example:
      >>> word_spans_from_boundaries(2, [(1, 0, 5), (2, 5, 9), (3, 9, 12), (4, 12, 20)],
      ...                            {1: "nonword", 2: "begin", 3: "end", 4: "singleton"})
      ([5, 12], [12, 20])
    """
    starts, ends, start = [], [], None
    for phone, first, last in segments:
        kind = kinds.get(phone, "nonword")
        if kind in ("begin", "singleton"):
            start = first
        if kind in ("end", "singleton") and start is not None:
            starts.append(start)
            ends.append(last)
            start = None
    if len(starts) != num_words:
        return [-1] * num_words, [-1] * num_words
    return starts, ends


def _graph_lexicon(graph_dir: str) -> list[tuple[str, list[str]]]:
    """The pronunciations word times are matched with: our graph dir's lexicon.txt, or in Kaldi's (mkgraph.sh copies
    the lang's phones/ there) phones/align_lexicon.txt, `word word phone …`; none: no word times."""
    ours, kaldis = os.path.join(graph_dir, "lexicon.txt"), os.path.join(graph_dir, "phones", "align_lexicon.txt")
    if os.path.exists(ours):
        return read_lexicon(ours)
    if os.path.exists(kaldis):
        return [(word, pron[1:]) for word, pron in read_lexicon(kaldis) if len(pron) > 1]
    return []


def _load_counts(prior_counts) -> np.ndarray:
    if isinstance(prior_counts, (str, os.PathLike)):
        text = open(prior_counts).read().replace("[", " ").replace("]", " ")
        return np.array(text.split(), np.float64)
    return np.asarray(prior_counts, np.float64)


_WORKER: HybridDecoder | None = None


def _init_worker(graph_dir, options, priors):
    global _WORKER
    opts = dict(options)
    _WORKER = HybridDecoder(graph_dir, prior_counts=priors, **opts)


def _decode_in_worker(item):
    utt, x, acoustic_scale = item
    return _WORKER.decode(x, utt, acoustic_scale)
