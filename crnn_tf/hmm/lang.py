"""Kaldi ``lang/`` directory: symbol tables, lexicon FSTs (L.fst, L_disambig.fst) and the n-gram grammar G.fst.

Layout (a subset of Kaldi's utils/prepare_lang.sh output, same file formats)::

    phones.txt words.txt topo oov.txt oov.int L.fst L_disambig.fst G.fst
    phones/{disambig.int,silence.csl,nonsilence.csl,optional_silence.txt,optional_silence.int,
            roots.txt,extra_questions.txt}        # the decision tree's roots and extra questions
    lexicon.txt                                   # the pronunciations, for word timing in the decoder

Phones are position-independent; disambiguation symbols #1.. make homophones and prefixes (OH = OW is a prefix of
OPEN = OW P AH N) determinizable, #0 is G's back-off symbol.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile

import kaldi_hmm_gmm  # noqa: F401  before kaldifst: the other order can deadlock
import kaldifst

from crnn_tf.hmm import model as hmm_model


def read_symbols(path: str) -> dict[str, int]:
    """Reads a Kaldi symbol table (``symbol id`` per line). Example: ``read_symbols("lang/words.txt")["<eps>"] == 0``."""
    table = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{n}: expected 'symbol id', got {line!r}")
            table[parts[0]] = int(parts[1])
    return table


def write_symbols(path: str, symbols: list[str]) -> None:
    with open(path, "w") as f:
        f.write("".join(f"{s} {i}\n" for i, s in enumerate(symbols)))


def read_lexicon(path: str) -> list[tuple[str, list[str]]]:
    """Reads lexicon.txt (``word phone1 phone2 ...``; several lines per word allowed)."""
    entries = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise ValueError(f"{path}:{n}: word {parts[0]!r} has no pronunciation")
            entries.append((parts[0], parts[1:]))
    return entries


def _read_list(path: str) -> list[str]:
    with open(path) as f:
        return [tok for line in f for tok in line.split()]


def add_disambig(lexicon: list[tuple[str, list[str]]]) -> tuple[list[tuple[str, list[str]]], int]:
    """Appends #1, #2 ... to pronunciations that are duplicated or a prefix of another (Kaldi's add_lex_disambig).

    Returns:
      (lexicon with disambiguation symbols, highest disambiguation index used (0 when none)).

    Example:
      >>> add_disambig([("OH", ["OW"]), ("OPEN", ["OW", "P", "AH", "N"])])
      ([('OH', ['OW', '#1']), ('OPEN', ['OW', 'P', 'AH', 'N'])], 1)
    """
    counts: dict[tuple, int] = {}
    prefixes = set()
    for _, pron in lexicon:
        counts[tuple(pron)] = counts.get(tuple(pron), 0) + 1
        for k in range(1, len(pron)):
            prefixes.add(tuple(pron[:k]))
    last: dict[tuple, int] = {}
    out, max_disambig = [], 0
    for word, pron in lexicon:
        key = tuple(pron)
        if key in prefixes or counts[key] > 1:
            last[key] = last.get(key, 0) + 1
            max_disambig = max(max_disambig, last[key])
            out.append((word, pron + [f"#{last[key]}"]))
        else:
            out.append((word, list(pron)))
    return out, max_disambig


class Lang:
    """A loaded lang directory: symbol tables, phone sets and lexicon.

    Example:
      >>> lang = Lang("exp/lang"); lang.words["ONE"], lang.oov
      (9, '<UNK>')
    """

    def __init__(self, lang_dir: str):
        self.dir = lang_dir
        for name in ("phones.txt", "words.txt"):
            if not os.path.exists(os.path.join(lang_dir, name)):
                raise FileNotFoundError(f"{lang_dir} is not a lang directory: {name} is missing")
        self.phones = read_symbols(os.path.join(lang_dir, "phones.txt"))
        self.words = read_symbols(os.path.join(lang_dir, "words.txt"))
        self.id2word = {i: w for w, i in self.words.items()}
        self.id2phone = {i: p for p, i in self.phones.items()}
        self.disambig_phones = [i for p, i in self.phones.items() if p.startswith("#")]
        sil = os.path.join(lang_dir, "phones", "silence.csl")
        self.silence_phones = [int(x) for x in open(sil).read().strip().split(":")] if os.path.exists(sil) else []
        oov = os.path.join(lang_dir, "oov.txt")
        self.oov = open(oov).read().strip() if os.path.exists(oov) else None
        lex = os.path.join(lang_dir, "lexicon.txt")
        self.lexicon = read_lexicon(lex) if os.path.exists(lex) else []

    @property
    def real_phones(self) -> list[int]:
        """Phone ids without <eps> and disambiguation symbols."""
        return sorted(i for p, i in self.phones.items() if i > 0 and not p.startswith("#"))

    def word_ids(self, words: list[str], utt: str = "?") -> tuple[list[int], int]:
        """Maps words to ids, unknown words to the OOV symbol. Returns (ids, number of OOV words).

        Raises:
          ValueError: an unknown word and the lang has no OOV symbol.
        """
        ids, oovs = [], 0
        for w in words:
            if w in self.words:
                ids.append(self.words[w])
            elif self.oov is not None:
                ids.append(self.words[self.oov])
                oovs += 1
            else:
                raise ValueError(f"utterance {utt}: word {w!r} is not in {self.dir}/words.txt and there is no oov.txt")
        return ids, oovs


def prepare_lang(dict_dir: str, lang_dir: str, *, oov: str = "<UNK>", sil_prob: float = 0.5,
                 num_states: int = 3) -> Lang:
    """Builds a lang directory from a Kaldi dict dir (lexicon.txt, silence_phones.txt, optional_silence.txt, ...).

    Args:
      dict_dir: Kaldi ``data/local/dict`` (as written by `crnn_tf.corpus.make_corpus` under ``<corpus>/dict``).
      lang_dir: output directory.
      oov: the word unknown words map to; must be in the lexicon (default "<UNK>").
      sil_prob: probability of optional silence between words (default 0.5).
      num_states: HMM states per phone in the topology (default 3).

    Example:
      >>> lang = prepare_lang("corpus/dict", "exp/lang")
    """
    lexicon = read_lexicon(os.path.join(dict_dir, "lexicon.txt"))
    silence = _read_list(os.path.join(dict_dir, "silence_phones.txt"))
    optional = _read_list(os.path.join(dict_dir, "optional_silence.txt"))[0]
    nonsil_path = os.path.join(dict_dir, "nonsilence_phones.txt")
    nonsilence = _read_list(nonsil_path) if os.path.exists(nonsil_path) else sorted(
        {p for _, pron in lexicon for p in pron} - set(silence))
    used = {p for _, pron in lexicon for p in pron}
    unknown = used - set(silence) - set(nonsilence)
    if unknown:
        raise ValueError(f"{dict_dir}/lexicon.txt uses phones not in the phone lists: {sorted(unknown)}")
    if oov not in {w for w, _ in lexicon}:
        raise ValueError(f"OOV word {oov!r} is not in {dict_dir}/lexicon.txt")
    lex_disambig, max_disambig = add_disambig(lexicon)
    disambig = [f"#{k}" for k in range(max_disambig + 1)]
    phones = ["<eps>"] + silence + nonsilence + disambig
    words = ["<eps>"] + sorted({w for w, _ in lexicon}) + ["#0", "<s>", "</s>"]
    os.makedirs(os.path.join(lang_dir, "phones"), exist_ok=True)
    write_symbols(os.path.join(lang_dir, "phones.txt"), phones)
    write_symbols(os.path.join(lang_dir, "words.txt"), words)
    pid = {p: i for i, p in enumerate(phones)}
    wid = {w: i for i, w in enumerate(words)}
    with open(os.path.join(lang_dir, "lexicon.txt"), "w") as f:
        f.write("".join(f"{w} {' '.join(p)}\n" for w, p in lexicon))
    with open(os.path.join(lang_dir, "oov.txt"), "w") as f:
        f.write(f"{oov}\n")
    with open(os.path.join(lang_dir, "oov.int"), "w") as f:
        f.write(f"{wid[oov]}\n")
    with open(os.path.join(lang_dir, "phones", "disambig.int"), "w") as f:
        f.write("".join(f"{pid[d]}\n" for d in disambig))
    with open(os.path.join(lang_dir, "phones", "silence.csl"), "w") as f:
        f.write(":".join(str(pid[p]) for p in silence) + "\n")
    with open(os.path.join(lang_dir, "phones", "nonsilence.csl"), "w") as f:
        f.write(":".join(str(pid[p]) for p in nonsilence) + "\n")
    with open(os.path.join(lang_dir, "phones", "optional_silence.txt"), "w") as f:
        f.write(f"{optional}\n")
    with open(os.path.join(lang_dir, "phones", "optional_silence.int"), "w") as f:
        f.write(f"{pid[optional]}\n")
    with open(os.path.join(lang_dir, "topo"), "w") as f:
        f.write(hmm_model.topology_text([pid[p] for p in silence + nonsilence], num_states))
    _write_tree_inputs(dict_dir, lang_dir, silence, nonsilence)
    lexicon_fst(lexicon, pid, wid, optional, sil_prob).write(os.path.join(lang_dir, "L.fst"))
    ld = lexicon_fst(lex_disambig, pid, wid, optional, sil_prob)
    kaldifst.add_self_loops(ld, isyms=[pid["#0"]], osyms=[wid["#0"]])  # lets G's #0 back-off arcs through L
    kaldifst.arcsort(ld, sort_type="olabel")
    ld.write(os.path.join(lang_dir, "L_disambig.fst"))
    return Lang(lang_dir)


def _lines(path: str) -> list[list[str]]:
    with open(path) as f:
        return [line.split() for line in f if line.split()]


def _write_tree_inputs(dict_dir: str, lang_dir: str, silence: list[str], nonsilence: list[str]) -> None:
    """lang/phones/roots.txt and extra_questions.txt, as prepare_lang.sh writes them for build-tree.

    roots.txt: the dict dir's own if it has one, else ``shared split`` and one line of silence_phones.txt or
    nonsilence_phones.txt per root (Kaldi's default: silence phones are context-independent because tree statistics
    give them no context, not because of their root). extra_questions.txt: the silence phones, the non-silence
    phones, then the dict dir's extra_questions.txt lines, if any.
    """
    phone_lists = [os.path.join(dict_dir, name) for name in ("silence_phones.txt", "nonsilence_phones.txt")]
    roots = os.path.join(dict_dir, "roots.txt")
    if os.path.exists(roots):
        shutil.copy(roots, os.path.join(lang_dir, "phones", "roots.txt"))
    else:
        root_lines = [line for path in phone_lists if os.path.exists(path) for line in _lines(path)]
        if not os.path.exists(phone_lists[1]):  # nonsilence phones taken from the lexicon: one root each
            root_lines += [[p] for p in nonsilence]
        with open(os.path.join(lang_dir, "phones", "roots.txt"), "w") as f:
            f.write("".join(f"shared split {' '.join(line)}\n" for line in root_lines))
    extra = os.path.join(dict_dir, "extra_questions.txt")
    questions = [silence, nonsilence] + (_lines(extra) if os.path.exists(extra) else [])
    with open(os.path.join(lang_dir, "phones", "extra_questions.txt"), "w") as f:
        f.write("".join(f"{' '.join(q)}\n" for q in questions if q))


def lexicon_fst(lexicon, phone_ids: dict[str, int], word_ids: dict[str, int], sil_phone: str,
                sil_prob: float) -> kaldifst.StdVectorFst:
    """L with optional silence, built like Kaldi's make_lexicon_fst.py (phones in, words out).

    State 0 starts, 1 is the loop state (final), 2 the silence state; after each word the path returns to the loop
    state directly (-log(1 - sil_prob)) or through one optional silence phone (-log(sil_prob)).
    """
    no_sil_cost, sil_cost = -math.log(1.0 - sil_prob), -math.log(sil_prob)
    lines = [f"0 1 0 0 {no_sil_cost}", f"0 2 0 0 {sil_cost}", f"2 1 {phone_ids[sil_phone]} 0"]
    next_state = 3
    for word, pron in lexicon:
        src = 1
        for k, phone in enumerate(pron):
            olabel = word_ids[word] if k == 0 else 0
            if k == len(pron) - 1:
                lines.append(f"{src} 1 {phone_ids[phone]} {olabel} {no_sil_cost}")
                lines.append(f"{src} 2 {phone_ids[phone]} {olabel} {sil_cost}")
            else:
                lines.append(f"{src} {next_state} {phone_ids[phone]} {olabel}")
                src, next_state = next_state, next_state + 1
    lines.append("1")
    fst = kaldifst.compile("\n".join(lines) + "\n", acceptor=False)
    kaldifst.arcsort(fst, sort_type="olabel")
    return fst


def train_lm(texts: list[str], arpa_path: str, order: int = 2) -> None:
    """Trains a Kneser-Ney ARPA n-gram LM with kaldingram from Kaldi ``text`` files (utterance ids are dropped).

    Args:
      texts: Kaldi text files (``utt word word ...``).
      arpa_path: output ARPA file.
      order: n-gram order (default 2: enough for digit strings).
    """
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as tmp:
        for path in texts:
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) > 1:
                        tmp.write(" ".join(parts[1:]) + "\n")
    try:
        _run([sys.executable, "-m", "kaldingram.cli", "train", "--ngram-order", str(order), "--text", tmp.name,
              "--lm", arpa_path], "kaldingram")
    finally:
        os.unlink(tmp.name)


def make_grammar(lang_dir: str, arpa_path: str) -> kaldifst.StdVectorFst:
    """Converts an ARPA LM into lang_dir/G.fst with kaldilm (run as a subprocess; in-process it can hang)."""
    words = os.path.join(lang_dir, "words.txt")
    text = _run([sys.executable, "-m", "kaldilm", "--disambig-symbol=#0", f"--read-symbol-table={words}", arpa_path],
                "kaldilm")
    g = kaldifst.compile(text, acceptor=False)
    kaldifst.arcsort(g, sort_type="ilabel")
    g.write(os.path.join(lang_dir, "G.fst"))
    shutil.copy(arpa_path, os.path.join(lang_dir, "lm.arpa"))
    return g


def make_word_loop_grammar(lang_dir: str, words: list[str] | None = None, *,
                           word_insertion_penalty: float = 0.0) -> kaldifst.StdVectorFst:
    """Writes lang_dir/G.fst as a word loop: any sequence of ≥ 1 of `words`, each equally likely.

    What Kaldi's digit recipes decode with (a unigram over the vocabulary): no utterance length or word order is
    preferred, so isolated words and strings of any length decode under one graph.

    Args:
      lang_dir: from `prepare_lang`.
      words: the loop's words; default every word of words.txt except <eps>, the OOV word, #0, <s> and </s>.
      word_insertion_penalty: extra cost (−log probability) on every word; Kaldi's score.sh sweeps the same
        penalty. Default 0.

    Raises:
      ValueError: a word not in words.txt, or an empty word list.
    """
    ids = read_symbols(os.path.join(lang_dir, "words.txt"))
    with open(os.path.join(lang_dir, "oov.txt")) as f:
        oov = f.read().strip()
    if words is None:
        words = [w for w in ids if w not in ("<eps>", "#0", "<s>", "</s>", oov)]
    unknown = sorted(set(words) - set(ids))
    if unknown:
        raise ValueError(f"words {unknown} are not in {lang_dir}/words.txt")
    if not words:
        raise ValueError("a word loop needs at least one word")
    cost = math.log(len(words) + 1)  # each word, and stopping, with probability 1 / (N + 1)
    word_cost = cost + word_insertion_penalty
    lines = [f"{state} 1 {ids[w]} {ids[w]} {word_cost}" for state in (0, 1) for w in words]
    lines.append(f"1 {cost}")
    g = kaldifst.compile("\n".join(lines) + "\n", acceptor=False)
    kaldifst.arcsort(g, sort_type="ilabel")
    g.write(os.path.join(lang_dir, "G.fst"))
    return g


def _run(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    return proc.stdout
