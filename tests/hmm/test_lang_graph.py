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
