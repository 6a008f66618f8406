"""Model files: transition model text round trip (Kaldi format), tree, GMM against kaldi-hmm-gmm's DiagGmm."""
import kaldi_hmm_gmm as khg
import numpy as np
import pytest

from crnn_tf.data import kaldi_io
from crnn_tf.hmm import model as M
from crnn_tf.hmm.align import read_gmm_model
from crnn_tf.hmm.gmm import DiagGmmSet
from tests.data.fixtures import write_kaldi_transition_model


def test_transition_model_round_trip(tmp_path):
    topo = M.make_topology([1, 2, 3, 4, 5])
    tm = M.transition_model(topo, M.monophone_tree(topo))
    M.write_model(str(tmp_path / "final.mdl"), tm)
    tm2 = M.read_transition_model(str(tmp_path / "final.mdl"))
    a, b = tm.__getstate__(), tm2.__getstate__()
    assert a[2:6] == b[2:6]  # state2id, id2state, id2pdf, num_pdfs
    np.testing.assert_allclose(a[6], b[6], atol=1e-5)
    np.testing.assert_allclose(a[7], b[7], atol=1e-5)
    assert str(tm) == str(tm2)
    assert tm2.num_pdfs == 15 and list(M.tid2pdf(tm2)[1:4]) == [0, 0, 1]


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("tuples", ["<Triples>", "<Tuples>"])
def test_kaldi_model_formats_read_back(tmp_path, binary, tuples):
    # Kaldi writes binary by default, and <Tuples> (separate forward / self-loop pdfs) since 2019.
    topo = M.make_topology([1, 2])
    tm = M.transition_model(topo, M.monophone_tree(topo))
    write_kaldi_transition_model(tmp_path / "x.mdl", tm, binary, tuples)
    tm2 = M.read_transition_model(str(tmp_path / "x.mdl"))
    assert str(tm2) == str(tm)
    a, b = tm.__getstate__(), tm2.__getstate__()
    assert a[2:6] == b[2:6]
    np.testing.assert_allclose(a[7], b[7], atol=1e-6)
    np.testing.assert_array_equal(M.tid2pdf(tm2)[1:], kaldi_io.read_transition_id_to_pdf(str(tmp_path / "x.mdl"))[1:])


def test_broken_models_are_named(tmp_path):
    (tmp_path / "bin.mdl").write_bytes(b"\0B<TransitionModel> ")
    with pytest.raises(ValueError, match="bin.mdl: not a Kaldi transition model.*expected <Topology>"):
        M.read_transition_model(str(tmp_path / "bin.mdl"))
    topo = M.make_topology([1, 2])
    write_kaldi_transition_model(tmp_path / "cut.mdl", M.transition_model(topo, M.monophone_tree(topo)), True)
    (tmp_path / "cut.mdl").write_bytes((tmp_path / "cut.mdl").read_bytes()[:-60])
    with pytest.raises(ValueError, match="cut.mdl: not a Kaldi transition model.*end of file"):
        M.read_transition_model(str(tmp_path / "cut.mdl"))
    (tmp_path / "nnet.mdl").write_text("<Nnet> <Component> </Nnet>\n")
    with pytest.raises(ValueError, match="nnet.mdl: not a Kaldi transition model.*<TransitionModel>"):
        M.read_transition_model(str(tmp_path / "nnet.mdl"))


def test_tree_round_trip(tmp_path):
    topo = M.make_topology([1, 2, 3])
    tree = M.monophone_tree(topo)
    M.write_tree(tree, str(tmp_path / "tree"))
    tree2 = M.read_tree(str(tmp_path / "tree"))
    assert (tree2.num_pdfs, tree2.context_width, tree2.central_position) == (9, 1, 0)
    assert str(tree2) == str(tree)


def test_gmm_matches_kaldi_and_round_trips():
    rng = np.random.default_rng(0)
    g = DiagGmmSet([np.array([0.3, 0.7]), np.array([1.0])], [rng.normal(size=(2, 4)), rng.normal(size=(1, 4))],
                   [rng.uniform(0.5, 2, (2, 4)), rng.uniform(0.5, 2, (1, 4))])
    x = rng.normal(size=(6, 4)).astype(np.float32)
    ll = g.loglik(x)
    for p in range(2):
        k = khg.DiagGmm(nmix=len(g.weights[p]), dim=4)
        k.set_weights(g.weights[p].astype(np.float32))
        k.set_means(g.means[p].astype(np.float32))
        k.set_invvars((1 / g.vars[p]).astype(np.float32))
        k.compute_gconsts()
        np.testing.assert_allclose([k.log_likelihood(r) for r in x], ll[:, p], atol=1e-4)


def _gmm_for(tm, dim=5, seed=0):
    """A GMM with 1–3 Gaussians for each pdf of `tm`."""
    rng = np.random.default_rng(seed)
    sizes = [1 + p % 3 for p in range(tm.num_pdfs)]
    return DiagGmmSet([rng.dirichlet(np.ones(k)) for k in sizes], [rng.normal(size=(k, dim)) for k in sizes],
                      [rng.uniform(0.5, 2, (k, dim)) for k in sizes])


@pytest.mark.parametrize("tuples", ["<Triples>", "<Tuples>"])
def test_binary_and_text_gmm_models_give_the_same_likelihoods(tmp_path, tuples):
    # One model in both of Kaldi's forms: the binary one written from the text one's float32 values, as
    # `gmm-copy --binary=true` would.
    topo = M.make_topology([1, 2, 3])
    tm = M.transition_model(topo, M.monophone_tree(topo))
    g = _gmm_for(tm)
    M.write_model(str(tmp_path / "text.mdl"), tm, g)
    tm_text, from_text = read_gmm_model(str(tmp_path / "text.mdl"))
    write_kaldi_transition_model(tmp_path / "bin.mdl", tm, True, tuples, gmm=from_text)
    assert (tmp_path / "bin.mdl").read_bytes().startswith(b"\0B<TransitionModel> ")
    tm_bin, from_bin = read_gmm_model(str(tmp_path / "bin.mdl"))
    assert str(tm_bin) == str(tm_text) == str(tm)
    x = np.random.default_rng(1).normal(size=(40, 5)).astype(np.float32)
    np.testing.assert_allclose(from_bin.loglik(x), from_text.loglik(x), rtol=0, atol=1e-5)
    for a, b in zip(from_bin.vars + from_bin.means, from_text.vars + from_text.means):
        np.testing.assert_array_equal(a, b)  # both read as Kaldi's float32, the 7 text digits lose nothing here
    np.testing.assert_allclose(from_text.loglik(x), g.loglik(x), rtol=0, atol=1e-3)  # text keeps 7 digits
    assert [len(w) for w in from_bin.weights] == [len(w) for w in g.weights]


def test_broken_gmm_models_are_named(tmp_path):
    topo = M.make_topology([1, 2])
    tm = M.transition_model(topo, M.monophone_tree(topo))
    g = _gmm_for(tm, dim=3)
    write_kaldi_transition_model(tmp_path / "ok.mdl", tm, True, gmm=g)
    data = (tmp_path / "ok.mdl").read_bytes()
    (tmp_path / "cut.mdl").write_bytes(data[:-30])
    with pytest.raises(ValueError, match="cut.mdl: not a Kaldi GMM model.*end of file"):
        read_gmm_model(str(tmp_path / "cut.mdl"))
    (tmp_path / "dim.mdl").write_bytes(data.replace(b"<DIMENSION> \x04\x03\0\0\0", b"<DIMENSION> \x04\x04\0\0\0"))
    with pytest.raises(ValueError, match="dim.mdl: pdf 0 has 1 Gaussians of dimension 4 .* <MEANS_INVVARS> is 1 x 3"):
        read_gmm_model(str(tmp_path / "dim.mdl"))
    few = DiagGmmSet(g.weights[:4], g.means[:4], g.vars[:4])
    M.write_model(str(tmp_path / "few.mdl"), tm, few)
    with pytest.raises(ValueError, match="few.mdl: the transition model uses 6 pdfs but the AmDiagGmm has 4"):
        read_gmm_model(str(tmp_path / "few.mdl"))
    M.write_model(str(tmp_path / "tm_only.mdl"), tm)
    with pytest.raises(ValueError, match="tm_only.mdl: not a Kaldi GMM model.*end of file"):
        read_gmm_model(str(tmp_path / "tm_only.mdl"))


def test_gmm_em_recovers_a_mixture():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-3, 1, (2000, 2)), rng.normal(3, 1, (2000, 2))])
    g = DiagGmmSet.single(1, x.mean(0), x.var(0))
    pdfs = np.zeros(len(x), np.int64)
    for it in range(20):
        stats = g.zero_stats()
        g.accumulate(stats, x, pdfs)
        occ = g.pdf_occupancy(stats)
        g.update(stats)
        g.mixup(occ, 2, perturb=0.5, seed=it)
    assert sorted(np.round(g.means[0][:, 0])) == [-3, 3]
