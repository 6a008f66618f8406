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


def _fewest_frames(fst) -> int:
    """Frames on the shortest path through a training graph: arcs with a transition id (non-epsilon input) count 1."""
    import heapq

    arcs, finals = {}, set()
    for line in fst.to_str().splitlines():
        fields = line.split()
        if len(fields) >= 4:
            arcs.setdefault(int(fields[0]), []).append((int(fields[1]), int(fields[2]) != 0))
        elif fields:
            finals.add(int(fields[0]))
    best, queue = {}, [(0, fst.start)]
    while queue:
        frames, state = heapq.heappop(queue)
        if state in best:
            continue
        best[state] = frames
        if state in finals:
            return frames
        for nxt, emits in arcs.get(state, []):
            heapq.heappush(queue, (frames + emits, nxt))
    raise AssertionError("no path to a final state")


@pytest.mark.parametrize("early_exit, frames_per_phone", [(False, 3), (True, 1)], ids=["left_to_right", "early_exit"])
def test_early_exit_topology_lets_every_phone_take_one_frame(tiny_corpus, tmp_path, early_exit, frames_per_phone):
    import kaldi_hmm_gmm as khg

    from crnn_tf.hmm import model
    from crnn_tf.hmm.align import compile_training_graphs
    from crnn_tf.hmm.lang import prepare_lang

    lang_dir = str(tmp_path / "lang")
    prepare_lang(str(tiny_corpus / "dict"), lang_dir, early_exit=early_exit)
    topo = khg.HmmTopology()
    with open(os.path.join(lang_dir, "topo")) as f:
        topo.read(f.read())
    topo.check()
    tree = model.monophone_tree(topo)
    lang = Lang(lang_dir)
    pronunciations = dict(line.split(maxsplit=1) for line in open(os.path.join(lang_dir, "lexicon.txt")))
    phones = sum(len(pronunciations[w].split()) for w in ("ONE", "TWO"))
    graphs, _ = compile_training_graphs(lang, lang_dir, model.transition_model(topo, tree), tree, {"u": "ONE TWO"},
                                        "test")
    assert _fewest_frames(graphs["u"]) == frames_per_phone * phones  # optional silence skipped
    assert all(topo.min_length(p) == frames_per_phone for p in topo.phones)


def test_a_gmm_trains_and_decodes_on_the_early_exit_topology(tiny_corpus, tmp_path):
    from crnn_tf.data.kaldi_io import read_text_table
    from crnn_tf.hmm.align import GmmTrainConfig, align_data_dir, read_gmm_model
    from crnn_tf.hmm.decoder import HybridDecoder
    from crnn_tf.hmm.error_rate import error_rate
    from crnn_tf.hmm.features import compute_mfcc

    cfg = GmmTrainConfig(num_iters=4, realign_iters=(1, 2, 3), max_gauss=150, gauss_increase_iters=3)
    out = align_data_dir(str(tiny_corpus / "train"), str(tiny_corpus / "dict"), str(tmp_path), cfg, early_exit=True)
    tm, gmm = read_gmm_model(out["model"])
    assert all(tm.topo.min_length(p) == 1 for p in tm.topo.phones)
    assert out["phone_agreement"] > 0.8 and not out["failed_utts"]
    feats = compute_mfcc(str(tiny_corpus / "test"))
    results = HybridDecoder(out["graph"], acoustic_scale=0.083).decode_many(
        [(u, gmm.loglik(f)) for u, f in sorted(feats.items())], num_workers=1)
    refs = {u: t.split() for u, t in read_text_table(tiny_corpus / "test" / "text").items()}
    wer = error_rate(refs, {r.utt: r.words for r in results})
    assert wer.rate < 30.0, wer.report()  # as the standard topology's GMM on these 12 unseen-voice utterances
