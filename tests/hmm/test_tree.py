"""Decision trees: hand-made statistics with a known best split, the Kaldi tree file, roots/questions defaults."""
import logging

import kaldi_hmm_gmm
import numpy as np
import pytest

from crnn_tf.hmm import model as hmm_model
from crnn_tf.hmm import tree as T

NUM_PDF_CLASSES = {1: 3, 2: 3, 3: 3, 4: 3}


def _stats(events):
    """TreeStats from (left, centre, right, pdf class, [frames x D]) tuples."""
    return T.TreeStats(phones=np.array([e[:3] for e in events], np.int32),
                       pdf_classes=np.array([e[3] for e in events], np.int32),
                       counts=np.array([len(e[4]) for e in events], np.float64),
                       sums=np.array([np.sum(e[4], 0) for e in events]),
                       sumsqs=np.array([np.sum(np.square(e[4]), 0) for e in events]))


def _build(stats, roots, questions, **options):
    """build_tree with a 3-state topology for the roots' phones."""
    return T.build_tree(stats, roots, questions, {p: 3 for root in roots for p in root.phones}, **options)


def _objective(values):
    """Log-likelihood of 1-d values under their own ML Gaussian."""
    x = np.array(values)
    return float((-0.5 * np.log(2 * np.pi * x.var()) - 0.5 * (x - x.mean()) ** 2 / x.var()).sum())


def _frames(values):
    return np.array(values, np.float64)[:, None]


def test_gaussian_objective_is_the_ml_log_likelihood():
    x = np.array([[1.0, 2.0], [3.0, 2.5], [2.0, 0.5]])
    packed = np.concatenate([[len(x)], x.sum(0), (x * x).sum(0)])
    mean, var = x.mean(0), x.var(0)
    expected = (-0.5 * np.log(2 * np.pi * var) - 0.5 * (x - mean) ** 2 / var).sum()
    assert T.gaussian_objective(packed) == pytest.approx(expected)
    assert T.gaussian_objective(np.zeros(5)) == 0.0


def test_best_split_is_the_left_context_that_changes_the_mean():
    # Phone 2 in state 0 only: after phone 3 its frames are near 10, after phone 4 near 0; the right context and
    # the pdf class tell nothing. One split (two leaves) must ask "is the left phone 3?" and gain exactly the
    # likelihood difference of one Gaussian versus two.
    a, b = [9.0, 10.0, 11.0, 10.0], [-1.0, 0.0, 1.0, 0.0]
    events = [(3, 2, 3, 0, _frames(a)), (3, 2, 4, 0, _frames(a)), (4, 2, 3, 0, _frames(b)), (4, 2, 4, 0, _frames(b))]
    stats = _stats(events)
    questions = [frozenset({3}), frozenset({3, 4}), frozenset({1})]
    tree, report = _build(stats, [T.Root((2,))], questions, num_leaves=2, thresh=0,
                                cluster_thresh=0)
    split = tree.root.children[2]
    assert (split.key, split.yes_set) == (0, (3,))
    gain = _objective(a * 2) + _objective(b * 2) - _objective((a + b) * 2)
    assert report.last_gain == pytest.approx(gain) and gain > 30
    assert report.num_pdfs == 2 and "reached num_leaves=2" in report.stop_reason
    assert tree.pdfs([[3, 2, 0], [4, 2, 0], [0, 2, 3]], [0, 0, 0]).tolist() == [0, 1, 1]


def test_shared_root_splits_on_the_hmm_state_and_clustering_merges_equal_leaves():
    # States 0 and 2 of phone 2 have the same distribution, state 1 another: the state question comes first;
    # the second split (0 vs 2) gains almost nothing and is undone by clustering at a threshold above its gain.
    rng = np.random.default_rng(0)
    same, other = rng.normal(0, 1, 200), rng.normal(8, 1, 200)
    events = [(0, 2, 0, 0, _frames(same[:100])), (0, 2, 0, 2, _frames(same[100:])), (0, 2, 0, 1, _frames(other))]
    tree, report = _build(_stats(events), [T.Root((2,))], [], num_leaves=3, thresh=0,
                                cluster_thresh=0)
    split = tree.root.children[2]
    assert split.key == T.PDF_CLASS_KEY and set(split.yes_set) in ({1}, {0, 2})
    assert report.num_leaves_split == report.num_pdfs == 3 and 0 < report.last_gain < 1
    # The default threshold (-1) is the gain of the last split.
    _, default = _build(_stats(events), [T.Root((2,))], [], num_leaves=3, thresh=0)
    assert default.cluster_thresh == default.last_gain
    tree, report = _build(_stats(events), [T.Root((2,))], [], num_leaves=3, thresh=0,
                                cluster_thresh=1.0)
    assert report.num_leaves_split == 3 and report.num_pdfs == 2
    assert tree.pdfs([[0, 2, 0]] * 3, [0, 1, 2]).tolist() in ([1, 0, 1], [0, 1, 0])


def test_too_many_leaves_asked_stops_early_and_says_why(caplog):
    events = [(0, 2, 0, c, _frames([c, c + 0.5, c + 1.0])) for c in range(3)]
    with caplog.at_level(logging.WARNING):
        tree, report = _build(_stats(events), [T.Root((2,))], [], num_leaves=50,
                                    thresh=0, cluster_thresh=0)
    assert report.num_pdfs == 3 and "no leaf can be split further" in report.stop_reason
    assert "stopped before num_leaves=50" in caplog.text
    _, report = _build(_stats(events), [T.Root((2,))], [], num_leaves=50, thresh=1e6)
    assert report.num_pdfs == 1 and "< thresh 1e+06" in report.stop_reason


def test_not_shared_not_split_root_keeps_one_pdf_per_state():
    events = [(0, 1, 0, c, _frames([0.0, 1.0])) for c in range(3)]
    tree, report = _build(_stats(events), [T.Root((1,), shared=False, split=False)], [],
                                num_leaves=10, thresh=0, cluster_thresh=0)
    assert report.num_pdfs == 3 and tree.pdfs([[0, 1, 0]] * 3, [0, 1, 2]).tolist() == [0, 1, 2]


def test_cluster_phones_separates_the_distant_group_first():
    # Phones 1 and 2 sound alike, 3 and 4 alike, the pairs far apart: the first split is {1,2} / {3,4}.
    centre = {1: 0.0, 2: 0.3, 3: 20.0, 4: 20.4}
    rng = np.random.default_rng(1)
    events = [(0, p, 0, 1, _frames(rng.normal(m, 1, 30))) for p, m in centre.items()]
    questions = T.cluster_phones(_stats(events), [(1,), (2,), (3,), (4,)])
    assert questions[0] == frozenset({1, 2, 3, 4})
    assert {frozenset({1, 2}), frozenset({3, 4})} <= set(questions)
    assert {frozenset({p}) for p in centre} <= set(questions) and len(questions) == 7


def test_edge_as_silence_adds_the_edge_to_every_question_with_a_silence_phone():
    questions = [frozenset({1}), frozenset({3, 4}), frozenset({1, 3})]
    assert T.edge_as_silence(questions, [1]) == [frozenset({0, 1}), frozenset({3, 4}), frozenset({0, 1, 3})]
    assert T.edge_as_silence(questions, []) == questions


def test_edge_context_shares_the_silence_contexts_leaf_only_when_asked_as_silence():
    # Phone 2 after the utterance edge (0) sounds unlike phone 2 after silence (1), as in recordings trimmed into
    # the word; after phones 3 and 4 it sounds like a third thing. Kaldi's questions ("is it 1?", "is it 3 or 4?")
    # let the tree give the edge a leaf of its own; asked as silence, the edge can only go where silence goes.
    rng = np.random.default_rng(3)
    events = [(left, 2, 3, 0, _frames(rng.normal(mean, 1, 40))) for left, mean in ((0, 10), (1, 0), (3, 5), (4, 5))]
    questions = [frozenset({1}), frozenset({3, 4})]
    windows = [[0, 2, 3], [1, 2, 3], [3, 2, 3]]
    kaldi_tree, _ = _build(_stats(events), [T.Root((2,))], questions, num_leaves=3, thresh=0, cluster_thresh=0)
    assert len(set(kaldi_tree.pdfs(windows, [0, 0, 0]).tolist())) == 3
    tree, report = _build(_stats(events), [T.Root((2,))], T.edge_as_silence(questions, [1]), num_leaves=3,
                          thresh=0, cluster_thresh=0)
    edge, silence, phone = tree.pdfs(windows, [0, 0, 0]).tolist()
    assert edge == silence != phone and "no leaf can be split further" in report.stop_reason
    # Kaldi reads the edge in the question's value set and answers alike.
    kaldi = tree.context_dependency()
    assert [kaldi.compute(w, 0) for w in windows] == [(True, edge), (True, silence), (True, phone)]


@pytest.fixture(scope="module")
def built_tree():
    rng = np.random.default_rng(2)
    events = [(l, c, r, s, _frames(rng.normal(3 * (l == 3) + 5 * s + c, 1, 20)))
              for l in (0, 2, 3, 4) for c in (2, 3, 4) for r in (0, 2, 3) for s in range(3)]
    events += [(0, 1, 0, s, _frames(rng.normal(-5 - s, 1, 40))) for s in range(3)]
    roots = [T.Root((1,), shared=False, split=False), T.Root((2,)), T.Root((3, 4))]
    stats = _stats(events)
    questions = T.cluster_phones(stats, [r.phones for r in roots]) + [frozenset({1}), frozenset({2, 3, 4})]
    tree, _ = _build(stats, roots, questions, num_leaves=25, thresh=5)
    return tree


def test_tree_file_round_trips_through_kaldi_hmm_gmm_byte_for_byte(built_tree, tmp_path):
    assert built_tree.num_pdfs > 6
    for binary in (True, False):
        path = tmp_path / f"tree.{binary}"
        built_tree.write(str(path), binary=binary)
        back = tmp_path / f"back.{binary}"
        hmm_model.read_tree(str(tmp_path / "tree.True")).write(binary=binary, filename=str(back))
        assert back.read_bytes() == path.read_bytes()
    (tmp_path / "phones.txt").write_text("<eps> 0\nSIL 1\nAH 2\nB 3\nC 4\n")
    drawing = kaldi_hmm_gmm.draw_tree(str(tmp_path / "phones.txt"), str(tmp_path / "tree.True"))
    assert drawing.startswith("digraph EventMap") and 'label="LContext = ?"' in drawing
    text = (tmp_path / "tree.False").read_text()
    assert text.startswith("ContextDependency 3 1 ToPdf TE 1 5 ( NULL TE -1 3 ( CE 0 CE 1 CE 2 )")
    assert "SE " in text and text.endswith("EndContextDependency ")


def test_tree_answers_like_kaldis_for_every_event(built_tree):
    kaldi = built_tree.context_dependency()
    windows = np.array([[l, c, r] for l in range(5) for c in range(1, 5) for r in range(5)])
    for pdf_class in range(3):
        ours = built_tree.pdfs(windows, np.full(len(windows), pdf_class))
        theirs = [kaldi.compute(w.tolist(), pdf_class) for w in windows]
        assert all(ok for ok, _ in theirs)
        assert ours.tolist() == [pdf for _, pdf in theirs]
    assert kaldi.num_pdfs == built_tree.num_pdfs and (kaldi.context_width, kaldi.central_position) == (3, 1)


def test_roots_and_questions_files(tmp_path):
    phones = {"<eps>": 0, "SIL": 1, "AH": 2, "B": 3, "#0": 4}
    (tmp_path / "roots.txt").write_text("not-shared not-split SIL\nshared split AH B\n")
    assert T.read_roots(str(tmp_path / "roots.txt"), phones) == [T.Root((1,), False, False), T.Root((2, 3))]
    (tmp_path / "bad.txt").write_text("shared AH\n")
    with pytest.raises(ValueError, match="bad.txt:1: expected"):
        T.read_roots(str(tmp_path / "bad.txt"), phones)
    (tmp_path / "q.txt").write_text("AH B\nZZ\n")
    with pytest.raises(ValueError, match="q.txt:2: phone 'ZZ' is not in phones.txt"):
        T.read_questions(str(tmp_path / "q.txt"), phones)
    assert T.pdf_class_questions(3) == [frozenset({0}), frozenset({1}), frozenset({2})]
    with pytest.raises(ValueError, match=r"phones \[2\] have tree statistics but are in no root"):
        T.build_tree(_stats([(0, 2, 0, 0, _frames([1.0]))]), [T.Root((3,))], [], NUM_PDF_CLASSES, num_leaves=2)
    with pytest.raises(ValueError, match=r"phones \[1, 4\] of the topology are in no root, phones \[7\] of the"):
        T.build_tree(_stats([(0, 2, 0, 0, _frames([1.0]))]), [T.Root((2, 3)), T.Root((7,))], [], NUM_PDF_CLASSES,
                     num_leaves=2)


def test_alignments_split_into_phones_in_either_transition_order():
    # Two 3-state phones: transition ids 1-6 (phone 1) and 7-12 (phone 2); in each state the self-loop id comes
    # first, the forward one second, and 6 / 12 enter the final state.
    table = T.TransitionTable.of(hmm_model.transition_model(hmm_model.make_topology([1, 2]),
                                                            hmm_model.monophone_tree(hmm_model.make_topology([1, 2]))))
    assert table.is_final.nonzero()[0].tolist() == [6, 12]
    plain = [1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 11, 12]  # self-loops before each state's forward transition
    reordered = [2, 1, 1, 4, 6, 5, 8, 10, 9, 12, 11, 11]  # Kaldi's reorder=true: forward transition first
    assert T.split_phones(plain, table) == [(1, 0, 7), (2, 7, 14)]
    assert T.split_phones(reordered, table) == [(1, 0, 6), (2, 6, 12)]
    windows, pdf_classes = T.frame_events(reordered, table)
    assert windows.tolist() == [[0, 1, 2]] * 6 + [[1, 2, 0]] * 6
    assert pdf_classes.tolist() == [0, 0, 0, 1, 2, 2] + [0, 1, 1, 2, 2, 2]
    with pytest.raises(ValueError, match="never reaches its final HMM state"):
        T.split_phones(reordered[:-3], table)
