"""HMM topology, context dependency (tree) and transition model, and Kaldi's model files.

Senones (pdf ids) come from a context-dependency object. Here that is kaldi-hmm-gmm's monophone tree (one pdf per
phone state, 3 states per phone); a context-dependent Kaldi ``tree`` (binary, as written by build-tree) can be read
with `read_tree` and used everywhere instead, because everything downstream only asks the tree for
``context_width``/``central_position`` and the transition model for transition-id -> pdf maps.

`final.mdl` is written in Kaldi's text format: the TransitionModel followed (for a GMM system) by the AmDiagGmm, so
Kaldi's ``gmm-copy``/``copy-transition-model``/``show-transitions`` read it. `read_transition_model` reads the
TransitionModel of a text-format Kaldi model (ours, or Kaldi's after ``copy-transition-model --binary=false``).
"""
from __future__ import annotations

import os
import re

import kaldi_hmm_gmm as khg  # must be imported before kaldifst (see shared README)
import _kaldi_hmm_gmm  # the extension module: TransitionModelTuple is not re-exported by kaldi_hmm_gmm
import numpy as np


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
        data = f.read()
    if not data.startswith(b"\0B"):
        raise ValueError(f"{path}: not a binary Kaldi tree (convert with copy-tree --binary=true)")
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
    """Reads the TransitionModel at the start of a text-format Kaldi model file (final.mdl, trans.mdl).

    Handles both ``<Triples>`` (older Kaldi, ours) and ``<Tuples>`` (Kaldi >= 2019) layouts.

    Example:
      >>> tm = read_transition_model("exp/mono/final.mdl"); tm.num_pdfs
      99
    """
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"\0B":
        raise ValueError(f"{path} is a binary Kaldi model; convert it first: "
                         f"copy-transition-model --binary=false {path} {path}.txt")
    with open(path) as f:
        text = f.read()
    m = re.search(r"<TransitionModel>(.*?)</TransitionModel>", text, re.S)
    if not m:
        raise ValueError(f"{path}: no <TransitionModel> ... </TransitionModel> block")
    body = m.group(1)
    topo_m = re.search(r"<Topology>.*?</Topology>", body, re.S)
    if not topo_m:
        raise ValueError(f"{path}: transition model without <Topology>")
    topo = _read_topology(topo_m.group(0) + "\n")
    tup_m = re.search(r"<(Triples|Tuples)>\s*(\d+)(.*?)</\1>", body, re.S)
    lp_m = re.search(r"<LogProbs>\s*\[(.*?)\]\s*</LogProbs>", body, re.S)
    if not tup_m or not lp_m:
        raise ValueError(f"{path}: transition model lacks <Triples>/<Tuples> or <LogProbs>")
    width = 3 if tup_m.group(1) == "Triples" else 4
    nums = np.array(tup_m.group(3).split(), dtype=np.int64).reshape(int(tup_m.group(2)), width)
    if width == 3:
        nums = np.concatenate([nums, nums[:, 2:3]], axis=1)  # forward pdf == self-loop pdf
    log_probs = [float(x) for x in lp_m.group(1).split()]
    return build_transition_model(topo, [tuple(map(int, r)) for r in nums], log_probs, path)


def build_transition_model(topo: khg.HmmTopology, tuples: list[tuple[int, int, int, int]],
                           log_probs: list[float], source: str = "<memory>") -> khg.TransitionModel:
    """Builds a TransitionModel from (phone, hmm_state, forward_pdf, self_loop_pdf) tuples, as Kaldi's Read does.

    Mirrors Kaldi's TransitionModel::ComputeDerived / ComputeDerivedOfProbs, so a model read from any Kaldi exp dir
    (monophone or context-dependent) works without its tree.
    """
    state2id = [0]
    cur = 1
    for phone, hmm_state, _, _ in tuples:
        state2id.append(cur)
        cur += len(topo.topology_for_phone(phone)[hmm_state].transitions)
    state2id.append(cur)
    if len(log_probs) != cur:
        raise ValueError(f"{source}: {len(log_probs)} log-probs for {cur - 1} transition ids (+1 expected)")
    id2state, id2pdf = [0] * cur, [0] * cur
    non_self = [0.0] * (len(tuples) + 1)
    num_pdfs = 0
    for ts, (phone, hmm_state, fpdf, spdf) in enumerate(tuples, start=1):
        num_pdfs = max(num_pdfs, fpdf + 1, spdf + 1)
        transitions = topo.topology_for_phone(phone)[hmm_state].transitions
        for k, tid in enumerate(range(state2id[ts], state2id[ts + 1])):
            id2state[tid] = ts
            self_loop = transitions[k][0] == hmm_state
            id2pdf[tid] = spdf if self_loop else fpdf
            if self_loop:
                p = float(np.exp(log_probs[tid]))
                non_self[ts] = float(np.log1p(-p)) if p < 1 else -1e10
    kt = [_kaldi_hmm_gmm.TransitionModelTuple(*t) for t in tuples]
    tm = khg.TransitionModel.__new__(khg.TransitionModel)
    tm.__setstate__((kt, topo, state2id, id2state, id2pdf, num_pdfs, [float(x) for x in log_probs], non_self))
    return tm
