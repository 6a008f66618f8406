"""HMM topology, context dependency (tree) and transition model, and Kaldi's model files.

Senones (pdf ids) come from a context-dependency object. Here that is kaldi-hmm-gmm's monophone tree (one pdf per
phone state, 3 states per phone); a context-dependent Kaldi ``tree`` (binary, as written by build-tree) can be read
with `read_tree` and used everywhere instead, because everything downstream only asks the tree for
``context_width``/``central_position`` and the transition model for transition-id -> pdf maps.

`final.mdl` is written in Kaldi's text format: the TransitionModel followed (for a GMM system) by the AmDiagGmm, so
Kaldi's ``gmm-copy``/``copy-transition-model``/``show-transitions`` read it. `read_transition_model` reads the
TransitionModel of a Kaldi model file, text (ours) or binary (Kaldi's default), with the data package's parser
(`crnn_tf.hmm.align.read_gmm_model` reads the whole GMM model the same way).
"""
from __future__ import annotations

import os

import kaldi_hmm_gmm as khg  # before kaldifst: the other order can deadlock (kaldifst 1.7.x wheels)
import _kaldi_hmm_gmm  # the extension module: TransitionModelTuple is not re-exported by kaldi_hmm_gmm
import numpy as np

from crnn_tf.data import kaldi_io


def make_topology(phones: list[int], num_states: int = 3, self_loop_prob: float = 0.75) -> khg.HmmTopology:
    """A left-to-right topology with `num_states` emitting states (pdf classes 0..n-1) for every phone.

    Args:
      phones: phone ids (1-based, no disambiguation symbols).
      num_states: emitting states per phone (default 3).
      self_loop_prob: initial self-loop probability (default 0.75; re-estimated in training).

    Example:
      >>> make_topology([1, 2]).num_pdf_classes(1)
      3
    """
    return _read_topology(topology_text(phones, num_states, self_loop_prob))


def topology_text(phones: list[int], num_states: int = 3, self_loop_prob: float = 0.75) -> str:
    """Kaldi text form of `make_topology` (the lang/topo file)."""
    states = "".join(
        f"<State> {s} <PdfClass> {s} <Transition> {s} {self_loop_prob} <Transition> {s + 1} {1 - self_loop_prob} "
        "</State>\n" for s in range(num_states))
    return (f"<Topology>\n<TopologyEntry>\n<ForPhones>\n{' '.join(map(str, phones))}\n</ForPhones>\n{states}"
            f"<State> {num_states} </State>\n</TopologyEntry>\n</Topology>\n")


def _read_topology(text: str) -> khg.HmmTopology:
    topo = khg.HmmTopology()
    topo.read(text)
    return topo


def monophone_tree(topo: khg.HmmTopology) -> khg.ContextDependency:
    """kaldi-hmm-gmm's monophone context dependency: one pdf per (phone, pdf class)."""
    return khg.monophone_context_dependency(phones=topo.phones,
                                            phone2num_pdf_classes=topo.get_phone_to_num_pdf_classes())


def read_tree(path: str) -> khg.ContextDependency:
    """Reads a Kaldi ``tree`` file (binary, as build-tree writes it, or one written by `write_tree`).

    Example:
      >>> tree = read_tree("exp/tri3/tree"); tree.context_width
      3
    """
    with open(path, "rb") as f:
        return tree_from_bytes(f.read(), path)


def tree_from_bytes(data: bytes, source: str = "<memory>") -> khg.ContextDependency:
    """kaldi-hmm-gmm's ContextDependency from a binary Kaldi tree file's bytes (`source` names it in errors)."""
    if not data.startswith(b"\0B"):
        raise ValueError(f"{source}: not a binary Kaldi tree (convert with copy-tree --binary=true)")
    tree = khg.ContextDependency.__new__(khg.ContextDependency)
    tree.__setstate__((np.frombuffer(data[2:], np.int8).tolist(),))
    return tree


def write_tree(tree: khg.ContextDependency, path: str) -> None:
    """Writes a tree in Kaldi's binary format."""
    tree.write(binary=True, filename=path)


def transition_model(topo: khg.HmmTopology, tree) -> khg.TransitionModel:
    """The transition model for a topology and a tree. Example: ``transition_model(topo, monophone_tree(topo))``."""
    return khg.TransitionModel(ctx_dep=tree, hmm_topo=topo)


def tid2pdf(tm: khg.TransitionModel) -> np.ndarray:
    """int32 array indexed by transition id (index 0 unused, -1) giving the pdf id."""
    arr = np.asarray(tm.transition_id_to_pdf_array(), dtype=np.int32)
    arr[0] = -1
    return arr


def tid2phone(tm: khg.TransitionModel) -> np.ndarray:
    """int32 array indexed by transition id (index 0 unused) giving the phone id."""
    return np.array([0] + [tm.transition_id_to_phone(t) for t in range(1, tm.num_transition_ids + 1)], np.int32)


# ---------------------------------------------------------------------------------------------------- model files


def write_model(path: str, tm: khg.TransitionModel, gmm=None) -> None:
    """Writes final.mdl in Kaldi text format: TransitionModel, then the AmDiagGmm when `gmm` is given.

    Args:
      path: output file.
      tm: transition model.
      gmm: optional `crnn_tf.hmm.gmm.DiagGmmSet` (default None: a transition-model-only file, which Kaldi's
        ``copy-transition-model`` and hybrid decoders read as well).
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(str(tm))
        if gmm is not None:
            f.write(gmm.to_kaldi_text())


def read_transition_model(path: str) -> khg.TransitionModel:
    """Reads the TransitionModel at the start of a Kaldi model file (final.mdl, trans.mdl), binary or text.

    Parsed by `crnn_tf.data.kaldi_io.read_transition_model_parts` (``<Triples>`` of older Kaldi and ours, or
    ``<Tuples>`` of Kaldi >= 2019), then built as Kaldi's Read does (`build_transition_model`).

    Raises:
      ValueError: naming the file and what is wrong with it.

    Example:
      >>> tm = read_transition_model("exp/mono/final.mdl"); tm.num_pdfs
      99
    """
    return build_transition_model_from_parts(kaldi_io.read_transition_model_parts(path))


def build_transition_model_from_parts(parts: kaldi_io.TransitionModelParts) -> khg.TransitionModel:
    """kaldi-hmm-gmm's TransitionModel from a parsed one (`kaldi_io.read_transition_model_parts` or
    `kaldi_io.read_gmm_model_parts`).

    Raises:
      ValueError: naming the file it came from when Kaldi rejects its topology or the tuples do not fit it.
    """
    try:
        topo = _read_topology(kaldi_io.topology_to_text(parts.topology))
    except Exception as error:  # kaldi-hmm-gmm raises RuntimeError for topologies Kaldi rejects
        raise ValueError(f"{parts.source}: invalid HMM topology in the transition model ({error})") from error
    return build_transition_model(topo, parts.tuples, parts.log_probs, parts.source)


def build_transition_model(topo: khg.HmmTopology, tuples: list[tuple[int, int, int, int]],
                           log_probs: list[float], source: str = "<memory>") -> khg.TransitionModel:
    """Builds a TransitionModel from (phone, hmm_state, forward_pdf, self_loop_pdf) tuples, as Kaldi's Read does.

    Transition ids come from `crnn_tf.data.kaldi_io.transition_ids` (Kaldi's ComputeDerived), the non-self-loop
    log-probabilities as ComputeDerivedOfProbs, so a model read from any Kaldi exp dir (monophone or
    context-dependent) works without its tree.

    Raises:
      ValueError: naming `source` when the tuples do not fit the topology or the log-probs do not fit the tuples.
    """
    phone_states = {phone: topo.topology_for_phone(phone) for phone in topo.phones}
    state2id, id2state, id2pdf, self_loop_id = kaldi_io.transition_ids(
        {phone: [(s.transitions,) for s in states] for phone, states in phone_states.items()}, tuples, source)
    if len(log_probs) != len(id2pdf):
        raise ValueError(f"{source}: {len(log_probs)} log-probs for {len(id2pdf) - 1} transition ids (+1 expected)")
    id2pdf[0] = 0  # kaldi-hmm-gmm's own state has 0 there
    non_self = [0.0] * (len(tuples) + 1)
    for state, tid in enumerate(self_loop_id):
        if tid:
            p = float(np.exp(log_probs[tid]))
            non_self[state] = float(np.log1p(-p)) if p < 1 else -1e10
    num_pdfs = max((max(t[2], t[3]) + 1 for t in tuples), default=0)
    kt = [_kaldi_hmm_gmm.TransitionModelTuple(*map(int, t)) for t in tuples]
    tm = khg.TransitionModel.__new__(khg.TransitionModel)
    tm.__setstate__((kt, topo, state2id, id2state, id2pdf, num_pdfs, [float(x) for x in log_probs], non_self))
    return tm
