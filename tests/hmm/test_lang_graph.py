"""lang dir, disambiguation, G from kaldingram/kaldilm, HCLG from kaldifst + kaldi-hmm-gmm, OOV mapping."""
import os

import pytest

from crnn_tf.hmm.lang import Lang, add_disambig, read_symbols


def test_add_disambig_golden():
    lex = [("OH", ["OW"]), ("OPEN", ["OW", "P", "AH", "N"]), ("A", ["AH"]), ("UH", ["AH"]), ("ONE", ["W", "AH", "N"])]
    out, k = add_disambig(lex)
    assert out == [("OH", ["OW", "#1"]), ("OPEN", ["OW", "P", "AH", "N"]), ("A", ["AH", "#1"]),
                   ("UH", ["AH", "#2"]), ("ONE", ["W", "AH", "N"])]
    assert k == 2


def test_lang_and_graph_dirs(tiny_alignment):
    lang = Lang(tiny_alignment.lang_dir)
    assert lang.oov == "<UNK>" and "#0" in lang.words and "<s>" in lang.words and lang.words["<eps>"] == 0
    assert lang.phones["<eps>"] == 0 and "SIL" in lang.phones and lang.disambig_phones
    for f in ("L.fst", "L_disambig.fst", "G.fst", "topo", "oov.int", "phones/disambig.int"):
        assert os.path.exists(os.path.join(tiny_alignment.lang_dir, f)), f
    for f in ("HCLG.fst", "words.txt", "phones.txt", "final.mdl"):
        assert os.path.exists(os.path.join(tiny_alignment.graph_dir, f)), f
    assert read_symbols(os.path.join(tiny_alignment.graph_dir, "words.txt")) == lang.words


def test_oov_words_are_mapped_and_counted(tiny_lang, tmp_path):
    lang = Lang(tiny_lang)
    ids, oovs = lang.word_ids(["ONE", "ELEVEN", "TWO", "DOZEN"], utt="u1")
    assert oovs == 2 and ids[1] == ids[3] == lang.words["<UNK>"] and ids[0] == lang.words["ONE"]
    lang.oov = None
    with pytest.raises(ValueError, match="utterance u1: word 'ELEVEN' is not in"):
        lang.word_ids(["ELEVEN"], utt="u1")


def test_word_loop_grammar_accepts_any_digit_string_at_equal_cost(tiny_lang, tmp_path):
    import math
    import shutil

    import kaldifst

    from crnn_tf.hmm.lang import make_word_loop_grammar

    lang_dir = str(tmp_path / "lang")
    shutil.copytree(tiny_lang, lang_dir)
    words = read_symbols(os.path.join(lang_dir, "words.txt"))
    g = make_word_loop_grammar(lang_dir, ["ONE", "TWO", "SEVEN"])
    assert kaldifst.StdVectorFst.read(os.path.join(lang_dir, "G.fst")).num_states == g.num_states == 2

    def cost(sequence):  # weight of the sequence's path through G (None when G rejects it)
        state, total = 0, 0.0
        for word in sequence:
            arcs = [a for a in kaldifst.ArcIterator(g, state) if a.ilabel == words[word]]
            if not arcs:
                return None
            total += arcs[0].weight.value
            state = arcs[0].nextstate
        final = g.final(state).value
        return None if math.isinf(final) else total + final

    unit = math.log(4)  # three words and the end, each with probability 1/4
    assert cost(["SEVEN"]) == pytest.approx(2 * unit)
    assert cost(["TWO", "TWO", "ONE", "SEVEN", "ONE"]) == pytest.approx(6 * unit)
    assert cost([]) is None and cost(["THREE"]) is None
    default = make_word_loop_grammar(lang_dir)  # every real word: no <UNK>, #0, <s>, </s>
    labels = {a.ilabel for a in kaldifst.ArcIterator(default, 1)}
    assert labels == {i for w, i in words.items() if w not in ("<eps>", "<UNK>", "#0", "<s>", "</s>")}
    g = make_word_loop_grammar(lang_dir, ["ONE", "TWO", "SEVEN"], word_insertion_penalty=1.5)
    assert cost(["TWO", "ONE"]) == pytest.approx(3 * unit + 2 * 1.5)
    with pytest.raises(ValueError, match="not in"):
        make_word_loop_grammar(lang_dir, ["ELEVEN"])
