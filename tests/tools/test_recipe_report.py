"""The recipe report: the description of the senones and the most frequent errors."""
from tools.recipe import _senone_description
from tools.report import confusion_lines, write_report


def test_senone_description_names_the_tree_and_how_its_edges_were_asked():
    tree = {"num_leaves_split": 267, "num_pdfs": 257, "stop_reason": "reached num_leaves=267"}
    hmm = {"senones": "tri1", "mono": {"num_pdfs": 63}, "tree": dict(tree, edge_as_silence=True)}
    assert _senone_description(hmm) == ("tied triphone states of a decision tree: 267 leaves split, 257 after "
                                        "clustering, reached num_leaves=267; the utterance edge asked as silence; "
                                        "the monophone system had 63")
    for kaldis in (dict(tree, edge_as_silence=False), tree):  # a work dir from before the flag has no such key
        assert "edge" not in _senone_description(dict(hmm, tree=kaldis))
    assert _senone_description({"senones": "mono"}) == "monophone states"


def test_report_lists_each_test_sets_most_frequent_errors(tmp_path):
    def cell(errors, confusions=None):
        result = {"wer": errors / 5, "errors": errors, "words": 500, "interval": [0.0, 2.0], "acoustic_scale": 0.1,
                  "word_insertion_penalty": 0.0}
        return result if confusions is None else dict(result, confusions=confusions)

    rows = [{"net": "CLSTM", "spec": "CLstm8+Pool3", "params": 1000, "dev_frame_accuracy": 0.9,
             "results": {"dev_fsdd": cell(1, [["TWO", "ZERO", 1]]),
                         "fsdd": cell(9, [["SIX", "EIGHT", 7], ["<eps>", "TWO", 1], ["NINE", "<eps>", 1]]),
                         "synthetic": cell(0, [])}},
            {"net": "GMM-HMM", "spec": "decoded before confusions were kept", "params": None,
             "dev_frame_accuracy": None, "results": {"dev_fsdd": cell(2), "fsdd": cell(3), "synthetic": cell(4)}}]
    assert confusion_lines(rows, ["dev_fsdd", "fsdd", "synthetic"], top=2) == [
        "- CLSTM, fsdd (9 errors): SIX → EIGHT ×7, +TWO ×1"]
    curves = {"CLSTM": [{"epoch": 1, "train_loss": 1.0, "dev_frame_accuracy": 0.9}]}
    write_report(str(tmp_path), rows, curves, ["dev_fsdd", "fsdd", "synthetic"])
    text = (tmp_path / "results.md").read_text()
    assert "## Most frequent errors on the test sets\n\n- CLSTM, fsdd (9 errors): SIX → EIGHT ×7, +TWO ×1, −NINE ×1\n" \
        in text
    rows[0]["results"]["fsdd"].pop("confusions")
    write_report(str(tmp_path), rows, curves, ["dev_fsdd", "fsdd", "synthetic"])
    assert "Most frequent errors" not in (tmp_path / "results.md").read_text()
