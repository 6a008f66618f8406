"""Kaldi tables via kaldi-native-io, and transition-id → pdf-id mapping checked against kaldi-hmm-gmm."""
import gzip
import os
import shutil

import kaldi_hmm_gmm as khg
import numpy as np
import pytest

from crnn_tf.data import kaldi_io
from tests.data.fixtures import write_kaldi_transition_model

TOPOLOGY = """<Topology>
<TopologyEntry>
<ForPhones>
1
</ForPhones>
<State> 0 <PdfClass> 0 <Transition> 0 0.25 <Transition> 1 0.25 <Transition> 2 0.25 <Transition> 3 0.25 </State>
<State> 1 <PdfClass> 1 <Transition> 1 0.25 <Transition> 2 0.25 <Transition> 3 0.25 <Transition> 4 0.25 </State>
<State> 2 <PdfClass> 2 <Transition> 1 0.25 <Transition> 2 0.25 <Transition> 3 0.25 <Transition> 4 0.25 </State>
<State> 3 <PdfClass> 3 <Transition> 1 0.25 <Transition> 2 0.25 <Transition> 3 0.25 <Transition> 4 0.25 </State>
<State> 4 </State>
</TopologyEntry>
<TopologyEntry>
<ForPhones>
2 3 4
</ForPhones>
<State> 0 <PdfClass> 0 <Transition> 0 0.75 <Transition> 1 0.25 </State>
<State> 1 <PdfClass> 1 <Transition> 1 0.75 <Transition> 2 0.25 </State>
<State> 2 <PdfClass> 2 <Transition> 2 0.75 <Transition> 3 0.25 </State>
<State> 3 </State>
</TopologyEntry>
</Topology>
"""


def _transition_model():
    topo = khg.HmmTopology()
    topo.read(TOPOLOGY)
    ctx = khg.monophone_context_dependency(phones=topo.phones,
                                           phone2num_pdf_classes=topo.get_phone_to_num_pdf_classes())
    return topo, khg.TransitionModel(ctx, topo)


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("tuples", ["<Triples>", "<Tuples>"])
def test_transition_model_matches_kaldi_hmm_gmm(tmp_path, binary, tuples):
    _, model = _transition_model()
    mdl = tmp_path / "final.mdl"
    write_kaldi_transition_model(mdl, model, binary, tuples)
    got = kaldi_io.read_transition_id_to_pdf(str(mdl))
    expected = np.asarray(model.transition_id_to_pdf_array())
    assert got.size == model.num_transition_ids + 1
    np.testing.assert_array_equal(got[1:], expected[1:])


def test_ali_gz_converted_to_pdfs(tmp_path):
    _, model = _transition_model()
    write_kaldi_transition_model(tmp_path / "final.mdl", model, binary=True)
    rng = np.random.default_rng(0)
    tids = {f"u{i}": rng.integers(1, model.num_transition_ids + 1, size=5 + i) for i in range(4)}
    for part, keys in ((1, ["u0", "u1"]), (2, ["u2", "u3"])):
        kaldi_io.write_int32_vectors(f"ark:{tmp_path}/ali.{part}", ((k, tids[k]) for k in keys))
        with open(tmp_path / f"ali.{part}", "rb") as src, gzip.open(tmp_path / f"ali.{part}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    pdfs = kaldi_io.read_alignments(str(tmp_path), str(tmp_path / "final.mdl"))
    assert sorted(pdfs) == sorted(tids)
    for utt, ids in tids.items():
        assert pdfs[utt].tolist() == [model.transition_id_to_pdf(int(t)) for t in ids]
    with pytest.raises(ValueError, match="u0.*transition id outside"):
        kaldi_io.write_int32_vectors(f"ark:{tmp_path}/bad.ark", [("u0", [10_000])])
        kaldi_io.read_alignments(str(tmp_path / "bad.ark"), str(tmp_path / "final.mdl"))


def test_gz_names_never_reach_a_shell_and_truncation_is_an_error(tmp_path):
    alignment = {"u1": np.arange(50, dtype=np.int32), "u2": np.arange(7, dtype=np.int32)}
    kaldi_io.write_int32_vectors(f"ark:{tmp_path}/plain.ark", sorted(alignment.items()))
    hostile = tmp_path / "ali.1;touch pwned;.gz"  # a shell would run `touch pwned`
    with open(tmp_path / "plain.ark", "rb") as src, gzip.open(hostile, "wb") as dst:
        shutil.copyfileobj(src, dst)
    got = kaldi_io.read_int32_vectors(str(hostile))
    assert sorted(got) == ["u1", "u2"] and got["u1"].tolist() == list(range(50))
    assert not (tmp_path / "pwned").exists() and not os.path.exists("pwned")
    data = hostile.read_bytes()
    (tmp_path / "cut.1.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.1\.gz: cannot decompress"):
        kaldi_io.read_alignments(str(tmp_path / "cut.1.gz"))


@pytest.mark.parametrize("text", [False, True], ids=["binary", "text"])
def test_a_plain_archive_cut_inside_an_entry_is_an_error_naming_it(tmp_path, text):
    alignment = {f"u{i}": np.arange(20 + i, dtype=np.int32) for i in range(6)}
    kaldi_io.write_int32_vectors(f"ark{',t' if text else ''}:{tmp_path}/whole.ark", sorted(alignment.items()))
    data = (tmp_path / "whole.ark").read_bytes()
    assert sorted(kaldi_io.read_int32_vectors(str(tmp_path / "whole.ark"))) == sorted(alignment)
    for cut in (len(data) // 2 + 3, len(data) - 1):
        (tmp_path / "pdf_ali.ark").write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"pdf_ali\.ark: only \d entries could be read .*truncated or corrupt"):
            kaldi_io.read_alignments(str(tmp_path / "pdf_ali.ark"))
    with gzip.open(tmp_path / "ali.1.gz", "wb") as packed:  # a complete gzip of a cut archive
        packed.write(data[: len(data) // 2 + 3])
    with pytest.raises(ValueError, match=r"ali\.1\.gz: only"):
        kaldi_io.read_alignments(str(tmp_path / "ali.1.gz"))


def test_not_a_model_is_named(tmp_path):
    (tmp_path / "x.mdl").write_text("<Nnet> garbage")
    with pytest.raises(ValueError, match="x.mdl.*not a Kaldi transition model"):
        kaldi_io.read_transition_id_to_pdf(str(tmp_path / "x.mdl"))


def test_ark_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    mats = {f"u{i}": rng.normal(size=(3 + i, 4)).astype(np.float32) for i in range(3)}
    kaldi_io.write_matrices(f"ark,scp:{tmp_path}/f.ark,{tmp_path}/f.scp", mats.items())
    back = dict(kaldi_io.read_matrices(str(tmp_path / "f.scp")))
    assert back.keys() == mats.keys() and all(np.array_equal(back[k], mats[k]) for k in mats)
    table = kaldi_io.read_matrix_table(str(tmp_path / "f.scp"))
    np.testing.assert_array_equal(table["u2"], mats["u2"])

    stats = {"spk1": rng.normal(size=(2, 5))}
    kaldi_io.write_matrices(f"ark,scp:{tmp_path}/c.ark,{tmp_path}/c.scp", stats.items(), double=True)
    np.testing.assert_array_equal(kaldi_io.read_cmvn_stats(str(tmp_path / "c.scp"))["spk1"], stats["spk1"])

    ali = {"u0": np.arange(5), "u1": np.array([], np.int32)}
    kaldi_io.write_int32_vectors(f"ark:{tmp_path}/a.ark", ali.items())
    back = kaldi_io.read_int32_vectors(str(tmp_path / "a.ark"))
    assert back["u0"].tolist() == [0, 1, 2, 3, 4] and back["u1"].size == 0


def test_text_table_duplicate_is_named(tmp_path):
    (tmp_path / "utt2spk").write_text("a s1\nb s1\na s2\n")
    with pytest.raises(ValueError, match="utt2spk:3: duplicate key 'a'"):
        kaldi_io.read_text_table(str(tmp_path / "utt2spk"))
