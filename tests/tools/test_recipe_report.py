"""The recipe report's description of the senones."""
from tools.recipe import _senone_description


def test_senone_description_names_the_tree_and_how_its_edges_were_asked():
    tree = {"num_leaves_split": 267, "num_pdfs": 257, "stop_reason": "reached num_leaves=267"}
    hmm = {"senones": "tri1", "mono": {"num_pdfs": 63}, "tree": dict(tree, edge_as_silence=True)}
    assert _senone_description(hmm) == ("tied triphone states of a decision tree: 267 leaves split, 257 after "
                                        "clustering, reached num_leaves=267; the utterance edge asked as silence; "
                                        "the monophone system had 63")
    for kaldis in (dict(tree, edge_as_silence=False), tree):  # a work dir from before the flag has no such key
        assert "edge" not in _senone_description(dict(hmm, tree=kaldis))
    assert _senone_description({"senones": "mono"}) == "monophone states"
