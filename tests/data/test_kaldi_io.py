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
    for part, keys in ((1, ["u0", "u1"]), (2, ["u2", "u3"])):  # ali.1 binary, ali.2 text (copy-int-vector ark,t:)
        wspecifier = f"ark{',t' if part == 2 else ''}:{tmp_path}/ali.{part}"
        kaldi_io.write_int32_vectors(wspecifier, ((k, tids[k]) for k in keys))
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
        # Kaldi's reader reports some cuts itself; the archive's size gives away the others.
        with pytest.raises(ValueError, match=r"pdf_ali\.ark: .*(\d entries could be read|after \d entries)"):
            kaldi_io.read_alignments(str(tmp_path / "pdf_ali.ark"))
    with gzip.open(tmp_path / "ali.1.gz", "wb") as packed:  # a complete gzip of a cut archive
        packed.write(data[: len(data) // 2 + 3])
    with pytest.raises(ValueError, match=r"ali\.1\.gz: .*(\d entries could be read|after \d entries)"):
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


def test_compressed_feature_archives_and_scp_offsets(tmp_path):
    # copy-feats --compress=true writes CM (Kaldi's default for features); CM2 and CM3 are the other two methods.
    from tests.data.fixtures import decompress_cm, write_compressed_ark

    rng = np.random.default_rng(0)
    items = [("u1", rng.normal(size=(40, 13)) * 4 + 10, "CM"), ("u2", rng.normal(size=(25, 13)), "CM2"),
             ("u3", rng.normal(size=(9, 13)), "CM3")]
    ark = tmp_path / "raw_mfcc.1.ark"
    offsets = write_compressed_ark(ark, items)
    (tmp_path / "feats.scp").write_text("".join(f"{u} {ark}:{offsets[u]}\n" for u in ("u3", "u1", "u2")))
    data = ark.read_bytes()
    expected = {u: decompress_cm(data[offsets[u] + 2:]) for u, _, _ in items}
    sequential = dict(kaldi_io.read_matrices(str(tmp_path / "feats.scp")))
    table = kaldi_io.read_matrix_table(str(tmp_path / "feats.scp"))
    assert list(sequential) == ["u3", "u1", "u2"]  # scp order
    for utt, original, method in items:
        np.testing.assert_allclose(sequential[utt], expected[utt], rtol=0, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(table[utt]), sequential[utt])
        step = np.ptp(original) / {"CM": 16, "CM2": 65535, "CM3": 255}[method]  # CM: 1 byte over a quantile span
        assert np.abs(sequential[utt] - original).max() <= step, method
    assert dict(kaldi_io.read_matrices(f"ark:{ark}")).keys() == {"u1", "u2", "u3"}
    # Cut inside u2: Kaldi's reader only warns and ends the table early; here it is an error naming the file.
    cut = tmp_path / "cut.ark"
    cut.write_bytes(data[:offsets["u2"] + 100])
    with pytest.raises(ValueError, match=r"cut\.ark: truncated or corrupt Kaldi table, .* after 1 entries .*'u1'"):
        dict(kaldi_io.read_matrices(str(cut)))
    (tmp_path / "cut.scp").write_text(f"u2 {cut}:{offsets['u2']}\n")
    with pytest.raises(ValueError, match=r"cut\.scp: cannot read the matrix of 'u2'"):
        kaldi_io.read_matrix_table(str(tmp_path / "cut.scp"))["u2"]
