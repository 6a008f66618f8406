"""Phonetic decision trees without a Kaldi build: acc-tree-stats, cluster-phones, build-tree, the Kaldi tree file.

kaldi-hmm-gmm reads, evaluates and compiles graphs with a Kaldi ``ContextDependency`` but cannot make one; this module
makes one from a monophone alignment, as Kaldi's ``steps/train_deltas.sh`` does:

1. `accumulate_tree_stats` (acc-tree-stats): one diagonal Gaussian's statistics (count, Σx, Σx²) per event, an event
   being the phones of a context window (width 3, central position 1 by default; 0 at utterance edges) and the HMM
   state's pdf class (key -1). Context-independent phones (silence) have their context positions set to 0.
2. `cluster_phones` (cluster-phones): a binary top-down clustering of the roots' phone sets from their statistics;
   every cluster becomes a question, with silence / non-silence and the dict dir's ``extra_questions.txt``.
3. `build_tree` (build-tree): one stub per line of ``roots.txt`` ("shared": one leaf for all pdf classes, split by
   questions on key -1 too; "not-shared": one leaf per pdf class; "not-split": never split further); then the greedy
   split with the largest log-likelihood gain of one diagonal Gaussian per side, over every leaf of every root, until
   `num_leaves` or a gain below `thresh`; then leaves of the same stub are merged bottom-up while the merge costs less
   than `cluster_thresh` (default: the gain of the last split, as Kaldi's ``--cluster-thresh=-1``).
4. `DecisionTree.write` writes Kaldi's tree file, binary or text, byte for byte what Kaldi (and kaldi-hmm-gmm) writes
   for the same event map: ``ContextDependency N P ToPdf <EventMap> EndContextDependency`` with ``TE`` (table on a key),
   ``SE`` (split on a key's value set), ``CE`` (a pdf id) and ``NULL`` nodes.

`convert_alignment` (convert-ali) maps a monophone alignment's transition ids to a model built on the new tree.
"""
from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import os
import struct

import kaldi_hmm_gmm as khg  # before kaldifst: the other order can deadlock
import numpy as np

from crnn_tf.hmm import model as hmm_model

log = logging.getLogger(__name__)

PDF_CLASS_KEY = -1  # Kaldi's kPdfClass: the event key of the HMM state's pdf class
UTTERANCE_EDGE = 0  # the context value beyond an utterance's first and last phone (Kaldi's phone 0)
_LOG_2PI = float(np.log(2 * np.pi))


# ------------------------------------------------------------------------------------------------- statistics


@dataclasses.dataclass
class TreeStats:
    """Per-event Gaussian statistics (what acc-tree-stats writes to treeacc).

    Attributes:
      phones: int32 [E, context_width], the phone at each context position (0: utterance edge or a CI context).
      pdf_classes: int32 [E], the pdf class of the HMM state.
      counts: float64 [E] frames; sums, sumsqs: float64 [E, D] Σx and Σx².
      context_width, central_position: the window (Kaldi's N and P).
    """

    phones: np.ndarray
    pdf_classes: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    sumsqs: np.ndarray
    context_width: int = 3
    central_position: int = 1

    @property
    def num_events(self) -> int:
        return len(self.counts)

    @property
    def dim(self) -> int:
        return self.sums.shape[1]

    def key_values(self, key: int) -> np.ndarray:
        """The value of event key `key` (a context position, or `PDF_CLASS_KEY`) for every event."""
        return self.pdf_classes if key == PDF_CLASS_KEY else self.phones[:, key]

    def packed(self) -> np.ndarray:
        """[E, 1 + 2D] rows (count, Σx, Σx²): sums of rows are the statistics of pooled events."""
        return np.concatenate([self.counts[:, None], self.sums, self.sumsqs], axis=1)


def gaussian_objective(packed: np.ndarray, var_floor: float = 0.01) -> np.ndarray:
    """Log-likelihood of the data under its own ML diagonal Gaussian, per row of packed statistics (Kaldi's
    GaussClusterable::Objf): ``-0.5 * n * (D (1 + log 2π) + Σ log max(var, var_floor))``, 0 for empty rows.

    Args:
      packed: [..., 1 + 2D] (count, Σx, Σx²) rows (`TreeStats.packed`).
      var_floor: variance floor (default 0.01, acc-tree-stats' --var-floor).
    """
    packed = np.asarray(packed, np.float64)
    dim = (packed.shape[-1] - 1) // 2
    count = packed[..., 0]
    safe = np.maximum(count, 1e-10)[..., None]
    mean = packed[..., 1:1 + dim] / safe
    var = np.maximum(packed[..., 1 + dim:] / safe - mean ** 2, var_floor)
    objf = -0.5 * count * (dim * (1 + _LOG_2PI) + np.log(var).sum(-1))
    return np.where(count > 0, objf, 0.0)


@dataclasses.dataclass
class TransitionTable:
    """What a transition model says about each transition id, as arrays indexed by it (index 0 unused): phone, HMM
    state, transition state and index, final (enters the final state), self-loop, forward and self-loop pdf class."""

    phone: np.ndarray
    hmm_state: np.ndarray
    state: np.ndarray
    index: np.ndarray
    is_final: np.ndarray
    is_self_loop: np.ndarray
    forward_pdf_class: np.ndarray
    self_loop_pdf_class: np.ndarray

    @classmethod
    def of(cls, tm: khg.TransitionModel) -> "TransitionTable":
        rows = [(0, 0, 0, 0, False, False, 0, 0)]
        for tid in range(1, tm.num_transition_ids + 1):
            state = tm.id2state[tid]
            phone, hmm_state, _, _ = tm.tuples[state - 1].__getstate__()
            hmm = tm.topo.topology_for_phone(phone)[hmm_state]
            rows.append((phone, hmm_state, state, tid - tm.state2id[state], tm.is_final(tid), tm.is_self_loop(tid),
                         hmm.forward_pdf_class, hmm.self_loop_pdf_class))
        columns = list(zip(*rows))
        return cls(*(np.array(c, bool if k in (4, 5) else np.int64) for k, c in enumerate(columns)))

    @property
    def num_transition_ids(self) -> int:
        return len(self.phone) - 1


def split_phones(tids: np.ndarray, table: TransitionTable) -> list[tuple[int, int, int]]:
    """Phone instances of a transition-id alignment as (phone, first frame, end frame), like Kaldi's SplitToPhones:
    a phone ends on the frame whose transition enters its HMM's final state, or, in a reordered alignment (what
    graphs compiled with reorder=true give: a state's forward transition comes before its self-loops), after the
    self-loops that follow that frame.

    Raises:
      ValueError: when the alignment does not end at the end of a phone (truncated, or from another model).
    """
    tids = np.asarray(tids, np.int64)
    states, loops = table.state[tids], table.is_self_loop[tids]
    mixed = np.flatnonzero((states[:-1] == states[1:]) & (loops[:-1] != loops[1:]))
    reordered = bool(len(mixed)) and bool(loops[mixed[0] + 1])  # Kaldi's IsReordered: forward transition first
    out, start = [], 0
    for t in np.flatnonzero(table.is_final[tids]):
        if t < start:  # a self-loop already counted into the previous phone cannot end one
            continue
        end = t + 1
        while reordered and end < len(tids) and loops[end] and states[end] == states[t]:
            end += 1
        out.append((int(table.phone[tids[t]]), start, int(end)))
        start = int(end)
    if start != len(tids):
        raise ValueError(f"the alignment's last phone (frames {start}..{len(tids) - 1}) never reaches its final "
                         f"HMM state: not an alignment of this model")
    return out


def phone_windows(instances: list[tuple[int, int, int]], context_width: int, central_position: int,
                  ci_phones: frozenset[int] = frozenset()) -> np.ndarray:
    """[num_instances, context_width] phone windows of a phone sequence (0 beyond its ends); a context-independent
    phone in the centre has its context positions set to 0 (acc-tree-stats --ci-phones)."""
    seq = [phone for phone, _, _ in instances]
    padded = [0] * central_position + seq + [0] * (context_width - 1 - central_position)
    windows = np.array([padded[i:i + context_width] for i in range(len(seq))], np.int32).reshape(-1, context_width)
    for row, phone in zip(windows, seq):
        if phone in ci_phones:
            row[:] = 0
            row[central_position] = phone
    return windows


def frame_events(tids: np.ndarray, table: TransitionTable, context_width: int = 3, central_position: int = 1,
                 ci_phones: frozenset[int] = frozenset()) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's event: ([T, context_width] phone window, [T] pdf class) of a transition-id alignment."""
    instances = split_phones(tids, table)
    windows = phone_windows(instances, context_width, central_position, ci_phones)
    frame_windows = np.repeat(windows, [end - start for _, start, end in instances], axis=0)
    return frame_windows, table.forward_pdf_class[np.asarray(tids, np.int64)].astype(np.int32)


def accumulate_tree_stats(alignments: dict[str, np.ndarray], feats: dict[str, np.ndarray], tm: khg.TransitionModel,
                          *, context_width: int = 3, central_position: int = 1,
                          ci_phones: frozenset[int] = frozenset()) -> TreeStats:
    """acc-tree-stats: one Gaussian's statistics per (phone window, pdf class) event over all aligned frames.

    Args:
      alignments: `{utt: transition ids}` of the model `tm` (e.g. exp/mono/ali.ark).
      feats: `{utt: float [T, D]}` the GMM's features; utterances missing here are left out.
      tm: the transition model of the alignments.
      context_width: phones in the window (Kaldi's N, default 3: triphones).
      central_position: index of the modelled phone in the window (Kaldi's P, default 1).
      ci_phones: context-independent phones (default none; Kaldi passes the silence phones).

    Raises:
      ValueError: an alignment whose length differs from its features', naming the utterance.
    """
    if not 0 <= central_position < context_width:
        raise ValueError(f"central_position {central_position} must lie in [0, context_width={context_width})")
    keys, frames, table = [], [], TransitionTable.of(tm)
    for utt in sorted(alignments):
        if utt not in feats:
            continue
        tids = np.asarray(alignments[utt])
        if len(tids) != len(feats[utt]):
            raise ValueError(f"utterance {utt}: alignment has {len(tids)} frames, its features {len(feats[utt])}")
        windows, pdf_classes = frame_events(tids, table, context_width, central_position, ci_phones)
        keys.append(np.concatenate([windows, pdf_classes[:, None]], axis=1))
        frames.append(np.asarray(feats[utt], np.float64))
    if not keys:
        raise ValueError("no utterance has both an alignment and features: no tree statistics")
    keys_all, x = np.concatenate(keys), np.concatenate(frames)
    events, inverse = np.unique(keys_all, axis=0, return_inverse=True)
    order = np.argsort(inverse.reshape(-1), kind="stable")
    starts = np.searchsorted(inverse.reshape(-1)[order], np.arange(len(events)))
    x = x[order]
    return TreeStats(phones=events[:, :context_width].astype(np.int32), pdf_classes=events[:, -1].astype(np.int32),
                     counts=np.diff(np.append(starts, len(x))).astype(np.float64),
                     sums=np.add.reduceat(x, starts, axis=0), sumsqs=np.add.reduceat(x * x, starts, axis=0),
                     context_width=context_width, central_position=central_position)


# -------------------------------------------------------------------------------------------- roots, questions


@dataclasses.dataclass(frozen=True)
class Root:
    """One line of Kaldi's roots.txt: ``<shared|not-shared> <split|not-split> phone ...``."""

    phones: tuple[int, ...]
    shared: bool = True
    split: bool = True


def read_roots(path: str, phone_ids: dict[str, int]) -> list[Root]:
    """Reads roots.txt (phone symbols, or integer ids as in roots.int).

    Raises:
      ValueError: naming the file and line of a malformed line or an unknown phone.
    """
    roots = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 3 or parts[0] not in ("shared", "not-shared") or parts[1] not in ("split", "not-split"):
                raise ValueError(f"{path}:{n}: expected '<shared|not-shared> <split|not-split> phone ...', got "
                                 f"{line.strip()!r}")
            roots.append(Root(tuple(_phone_ids(parts[2:], phone_ids, f"{path}:{n}")), parts[0] == "shared",
                              parts[1] == "split"))
    return roots


def read_questions(path: str, phone_ids: dict[str, int]) -> list[frozenset[int]]:
    """Reads extra_questions.txt: one question (a set of phones, symbols or ids) per line."""
    with open(path) as f:
        return [frozenset(_phone_ids(line.split(), phone_ids, f"{path}:{n}"))
                for n, line in enumerate(f, 1) if line.split()]


def _phone_ids(tokens, phone_ids, where):
    ids = []
    for token in tokens:
        if token in phone_ids:
            ids.append(phone_ids[token])
        elif token.isdigit() and int(token) in phone_ids.values():
            ids.append(int(token))
        else:
            raise ValueError(f"{where}: phone {token!r} is not in phones.txt")
    return ids


def default_roots(phone_sets: list[list[int]]) -> list[Root]:
    """What Kaldi's prepare_lang.sh writes without --share-silence-phones: ``shared split`` for every line of
    silence_phones.txt and nonsilence_phones.txt (one root per phone set)."""
    return [Root(tuple(phones)) for phones in phone_sets if phones]


def pdf_class_questions(num_pdf_classes: int) -> list[frozenset[int]]:
    """Every bipartition of the pdf classes 0..n-1, one side each (compile-questions' questions on key -1)."""
    classes = range(num_pdf_classes)
    out = []
    for size in range(1, num_pdf_classes):
        for subset in itertools.combinations(classes, size):
            if frozenset(classes) - frozenset(subset) not in out:
                out.append(frozenset(subset))
    return out


def edge_as_silence(questions: list[frozenset[int]], silence_phones) -> list[frozenset[int]]:
    """The questions with the utterance edge answering as silence does: every question that holds a silence phone
    holds `UTTERANCE_EDGE` too, so no split can tell an edge context from a silence context.

    Kaldi's questions are phone sets, so the edge falls on the "no" side of every question and the tree can give
    phones at utterance edges leaves of their own. In recordings trimmed to the word (FSDD's: the first phone starts
    at the first sample) those are the recordings' own edge phones, separated from the same phones after silence in
    untrimmed speech, and they learn the trimmer's cuts instead of the phone. An edge, like silence, brings no
    coarticulation from beyond it. Questions without a silence phone are returned unchanged.
    """
    silence = frozenset(silence_phones)
    return [q | {UTTERANCE_EDGE} if q & silence else q for q in questions]


def cluster_phones(stats: TreeStats, phone_sets: list[tuple[int, ...]], pdf_classes: tuple[int, ...] = (1,),
                   var_floor: float = 0.01, kmeans_iters: int = 10) -> list[frozenset[int]]:
    """cluster-phones: top-down binary clustering of phone sets by their pooled Gaussians; every cluster of the
    hierarchy (the whole, each split's two halves, down to single sets) is a question.

    Args:
      stats: tree statistics.
      phone_sets: the sets to cluster (Kaldi: one per line of sets.txt = the roots); sets without statistics are left
        out (the extra questions still ask about them).
      pdf_classes: statistics of these pdf classes only (default (1,): the middle state, cluster-phones'
        --pdf-class-list).
      var_floor: variance floor of the objective (default 0.01).
      kmeans_iters: reassignment passes per 2-way split (default 10).

    Returns:
      the questions, largest clusters first.
    """
    central = stats.phones[:, stats.central_position]
    wanted = np.isin(stats.pdf_classes, pdf_classes)
    packed = stats.packed()
    items, points = [], []
    for phones in phone_sets:
        rows = wanted & np.isin(central, phones)
        point = packed[rows].sum(0)
        if point[0] > 0:
            items.append(frozenset(phones))
            points.append(point)
    questions: list[frozenset[int]] = []

    def split(members: list[int]):
        questions.append(frozenset().union(*(items[m] for m in members)))
        if len(members) < 2:
            return
        left, right = _two_means([points[m] for m in members], var_floor, kmeans_iters)
        split([members[i] for i in left])
        split([members[i] for i in right])

    if items:
        split(list(range(len(items))))
    return questions


def _two_means(points: list[np.ndarray], var_floor: float, iters: int) -> tuple[list[int], list[int]]:
    """Two clusters of Gaussian statistics that (locally) maximise the summed objective: seeded by the heaviest point
    and the one farthest from it in merge cost, then points moved to the cluster that loses least by taking them."""
    pts = np.array(points)
    own = gaussian_objective(pts, var_floor)

    def merge_cost(centre):
        return own + gaussian_objective(centre, var_floor) - gaussian_objective(pts + centre, var_floor)

    first = int(np.argmax(pts[:, 0]))
    second = int(np.argmax(np.where(np.arange(len(pts)) == first, -np.inf, merge_cost(pts[first]))))
    assign = np.zeros(len(pts), bool)  # True: second cluster
    assign[second] = True
    for _ in range(iters):
        centres = [pts[~assign].sum(0), pts[assign].sum(0)]
        # A point's cost of joining a cluster, measured with the point taken out of it first.
        cost = np.stack([merge_cost(centres[0] - np.where(~assign, 1, 0)[:, None] * pts),
                         merge_cost(centres[1] - np.where(assign, 1, 0)[:, None] * pts)], axis=1)
        new = cost[:, 1] < cost[:, 0]
        new[first], new[second] = False, True
        if np.array_equal(new, assign):
            break
        assign = new
    return [int(i) for i in np.flatnonzero(~assign)], [int(i) for i in np.flatnonzero(assign)]


# ------------------------------------------------------------------------------------------------- the tree


@dataclasses.dataclass(eq=False)
class Node:
    """A CE node (a leaf: `pdf`) until it is split, then an SE node: events whose `key` value lies in `yes_set` go
    to `yes`, the others to `no`. Leaves remember which events reach them and the stub (`group`) they may be
    clustered within."""

    events: np.ndarray
    pdf: int = -1
    group: int = -1
    key: int | None = None
    yes_set: tuple[int, ...] = ()
    yes: "Node | None" = None
    no: "Node | None" = None

    @property
    def is_leaf(self) -> bool:
        return self.yes is None

    def split(self, key: int, yes_set: tuple[int, ...], in_yes: np.ndarray) -> None:
        """Turns this leaf into a split node with two new leaves (`in_yes`: which of its events answer yes)."""
        self.key, self.yes_set = key, tuple(yes_set)
        self.yes = Node(self.events[in_yes], group=self.group)
        self.no = Node(self.events[~in_yes], group=self.group)


@dataclasses.dataclass
class Table:
    """A TE node: the child is chosen by the value of `key` (None: a NULL entry)."""

    key: int
    children: list


@dataclasses.dataclass
class BuildReport:
    """How `build_tree` went.

    Attributes:
      num_leaves_split: leaves after splitting. num_pdfs: after clustering (the senones).
      stop_reason: why splitting stopped (num_leaves reached, a gain below thresh, nothing left to split).
      last_gain: log-likelihood gain of the last split made. cluster_thresh: the merge threshold used.
      objective_gain: log-likelihood gain of all splits together.
    """

    num_leaves_split: int
    num_pdfs: int
    stop_reason: str
    last_gain: float
    cluster_thresh: float
    objective_gain: float


class DecisionTree:
    """A Kaldi context-dependency tree (event map to pdf ids) with its window.

    Args:
      root: the event map (`Table` and `Node` nodes; leaves carry their pdf ids).
      context_width, central_position: Kaldi's N and P.
    """

    def __init__(self, root, context_width: int = 3, central_position: int = 1):
        self.root = root
        self.context_width = context_width
        self.central_position = central_position

    @property
    def num_pdfs(self) -> int:
        return 1 + max(leaf.pdf for leaf in self.leaves())

    def leaves(self) -> list[Node]:
        """The distinct leaves, in the order the tree file lists them (a subtree shared by several table entries
        counts once)."""
        return _leaves_of(self.root)

    def pdfs(self, phones: np.ndarray, pdf_classes: np.ndarray) -> np.ndarray:
        """pdf id of each event ([E, N] phone windows, [E] pdf classes), -1 where the map has no answer (a NULL
        table entry or a value beyond the table)."""
        phones, pdf_classes = np.asarray(phones, np.int64).reshape(-1, self.context_width), np.asarray(pdf_classes)
        out = np.full(len(pdf_classes), -1, np.int32)

        def value(key, idx):
            return pdf_classes[idx] if key == PDF_CLASS_KEY else phones[idx, key]

        def walk(node, idx):
            if not len(idx) or node is None:
                return
            if isinstance(node, Node) and node.is_leaf:
                out[idx] = node.pdf
            elif isinstance(node, Node):
                yes = np.isin(value(node.key, idx), node.yes_set)
                walk(node.yes, idx[yes])
                walk(node.no, idx[~yes])
            else:
                values = value(node.key, idx)
                for v in np.unique(values):
                    if 0 <= v < len(node.children):
                        walk(node.children[v], idx[values == v])
        walk(self.root, np.arange(len(pdf_classes)))
        return out

    # ---- Kaldi's tree file

    def to_bytes(self, binary: bool = True) -> bytes:
        """The Kaldi tree file: what ``ContextDependency::Write`` writes (binary: with the ``\\0B`` header)."""
        w = _KaldiWriter(binary)
        w.token("ContextDependency")
        w.int32(self.context_width)
        w.int32(self.central_position)
        w.token("ToPdf")
        self._write_map(w, self.root)
        w.token("EndContextDependency")
        return w.data()

    def _write_map(self, w, node):
        if node is None:
            w.token("NULL")
        elif isinstance(node, Node) and node.is_leaf:
            w.token("CE")
            w.int32(node.pdf)
        elif isinstance(node, Node):
            w.token("SE")
            w.int32(node.key)
            w.int_vector(node.yes_set)
            w.newline()
            w.token("{")
            self._write_map(w, node.yes)
            self._write_map(w, node.no)
            w.token("}")
            w.newline()
        else:
            w.token("TE")
            w.int32(node.key)
            w.uint32(len(node.children))
            w.token("(")
            for child in node.children:
                self._write_map(w, child)
            w.token(")")
            w.newline()

    def write(self, path: str, binary: bool = True) -> None:
        """Writes the Kaldi tree file (binary by default, as build-tree does; text with binary=False)."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(self.to_bytes(binary))

    def context_dependency(self) -> khg.ContextDependency:
        """kaldi-hmm-gmm's ContextDependency of this tree (read from the binary tree file's bytes)."""
        return hmm_model.tree_from_bytes(self.to_bytes(True))


class _KaldiWriter:
    """Kaldi's WriteToken / WriteBasicType / WriteIntegerVector, binary or text."""

    def __init__(self, binary: bool):
        self.binary = binary
        self.parts = [b"\0B"] if binary else []

    def token(self, token: str):
        self.parts.append(token.encode() + b" ")

    def int32(self, value: int):
        self.parts.append(struct.pack("<bi", 4, value) if self.binary else f"{value} ".encode())

    def uint32(self, value: int):
        self.parts.append(struct.pack("<bI", -4, value) if self.binary else f"{value} ".encode())

    def int_vector(self, values):
        if self.binary:
            self.parts.append(struct.pack(f"<bi{len(values)}i", 4, len(values), *values))
        else:
            self.parts.append(("[ " + "".join(f"{v} " for v in values) + "]").encode())

    def newline(self):
        if not self.binary:
            self.parts.append(b"\n")

    def data(self) -> bytes:
        return b"".join(self.parts)


# --------------------------------------------------------------------------------------------- build-tree


def build_tree(stats: TreeStats, roots: list[Root], phone_questions: list[frozenset[int]],
               num_pdf_classes: dict[int, int], *, num_leaves: int, thresh: float = 300.0,
               cluster_thresh: float = -1.0, var_floor: float = 0.01) -> tuple[DecisionTree, BuildReport]:
    """build-tree: greedy top-down splitting from one stub per root, then bottom-up clustering of the leaves.

    Args:
      stats: from `accumulate_tree_stats`.
      roots: the roots (`read_roots` / `default_roots`); every phone must be in exactly one.
      phone_questions: phone sets asked about at every context position (`cluster_phones` + extra questions).
      num_pdf_classes: `{phone: number of pdf classes}` (the topology's).
      num_leaves: most leaves before clustering (Kaldi's <number of leaves>).
      thresh: least log-likelihood gain of a split (default 300, build-tree's --thresh).
      cluster_thresh: leaves of one stub are merged while the cheapest merge costs less than this; -1 (default)
        means the gain of the last split made, 0 no clustering (build-tree's --cluster-thresh).
      var_floor: variance floor of the Gaussians (default 0.01).

    Returns:
      (the tree, a `BuildReport`). When `num_leaves` is more than the data supports, splitting stops early and the
      report (and the log) says why.

    Raises:
      ValueError: a phone in two roots, or a phone with statistics in none.
    """
    phone_root = {}
    for r, root in enumerate(roots):
        for phone in root.phones:
            if phone in phone_root:
                raise ValueError(f"phone {phone} is in two roots (lines {phone_root[phone] + 1} and {r + 1})")
            phone_root[phone] = r
    central = stats.phones[:, stats.central_position]
    orphans = sorted(set(central.tolist()) - set(phone_root))
    if orphans:
        raise ValueError(f"phones {orphans} have tree statistics but are in no root")
    rootless, unknown = sorted(set(num_pdf_classes) - set(phone_root)), sorted(set(phone_root) - set(num_pdf_classes))
    if rootless or unknown:
        raise ValueError(f"roots and topology disagree: phones {rootless} of the topology are in no root, phones "
                         f"{unknown} of the roots are not in the topology")
    packed = stats.packed()
    all_phones = sorted(phone_root)
    num_values = max(max(all_phones), int(stats.phones.max(initial=0))) + 1
    questions = {key: [np.isin(np.arange(num_values), sorted(q)) for q in phone_questions]
                 for key in range(stats.context_width)}
    max_classes = max(num_pdf_classes.values())
    questions[PDF_CLASS_KEY] = [np.isin(np.arange(max_classes), sorted(q)) for q in pdf_class_questions(max_classes)]
    question_sets = {key: [tuple(int(v) for v in np.flatnonzero(q)) for q in qs] for key, qs in questions.items()}
    question_mats = {key: np.array(qs, np.float64) for key, qs in questions.items() if qs}

    # Stubs: one subtree per root; `group` numbers the units leaves may later be merged within (Kaldi's stub leaves).
    root_nodes, splittable, next_group = [], [], 0
    event_root = np.array([phone_root[p] for p in central.tolist()], np.int64)
    for r, root in enumerate(roots):
        events = np.flatnonzero(event_root == r)
        if root.shared:
            stub_leaves = [Node(events, group=next_group)]
            root_nodes.append(stub_leaves[0])
        else:
            classes = max(num_pdf_classes[p] for p in root.phones)
            stub_leaves = [Node(events[stats.pdf_classes[events] == c], group=next_group + c) for c in range(classes)]
            root_nodes.append(Table(PDF_CLASS_KEY, stub_leaves))
        next_group += len(stub_leaves)
        if root.split:
            splittable += stub_leaves
    num_total = sum(len(_leaves_of(node)) for node in root_nodes)

    def best_split(leaf):
        """(gain, key, yes_set) of the leaf's best question; key None when no question splits it."""
        best = (0.0, None, None)
        rows = packed[leaf.events]
        total = gaussian_objective(rows.sum(0), var_floor)
        for key, mat in question_mats.items():
            by_value = np.zeros((mat.shape[1], rows.shape[1]))
            np.add.at(by_value, stats.key_values(key)[leaf.events], rows)
            yes = mat @ by_value
            no = by_value.sum(0) - yes
            valid = (yes[:, 0] > 0) & (no[:, 0] > 0)
            if not valid.any():
                continue
            gain = np.where(valid, gaussian_objective(yes, var_floor) + gaussian_objective(no, var_floor) - total,
                            -np.inf)
            q = int(np.argmax(gain))
            if gain[q] > best[0]:
                best = (float(gain[q]), key, question_sets[key][q])
        return best

    heap, order = [], itertools.count()  # (-gain, tie-break order, leaf, key, yes_set)

    def push(leaf):
        gain, key, yes_set = best_split(leaf)
        if key is not None:
            heapq.heappush(heap, (-gain, next(order), leaf, key, yes_set))

    for leaf in splittable:
        push(leaf)
    last_gain, objective_gain, stop = 0.0, 0.0, None
    while num_total < num_leaves:
        if not heap:
            stop = f"no leaf can be split further (every question leaves one side empty) at {num_total} leaves"
            break
        neg_gain, _, leaf, key, yes_set = heapq.heappop(heap)
        if -neg_gain < thresh:
            stop = (f"the best remaining split gains {-neg_gain:.1f} < thresh {thresh:g} at {num_total} leaves: "
                    f"the data support no more")
            break
        leaf.split(key, yes_set, np.isin(stats.key_values(key)[leaf.events], yes_set))
        last_gain, objective_gain = -neg_gain, objective_gain - neg_gain
        num_total += 1
        push(leaf.yes)
        push(leaf.no)
    if stop is None:
        stop = f"reached num_leaves={num_leaves}"
    else:
        log.warning("tree building stopped before num_leaves=%d: %s", num_leaves, stop)
    tree_root = Table(stats.central_position, [None] * (max(all_phones) + 1))
    for r, root in enumerate(roots):
        for phone in root.phones:
            tree_root.children[phone] = root_nodes[r]
    if cluster_thresh < 0:
        cluster_thresh = last_gain
    leaves = [leaf for node in root_nodes for leaf in _leaves_of(node)]
    num_pdfs = _cluster_leaves(leaves, packed, cluster_thresh, var_floor)
    report = BuildReport(num_leaves_split=len(leaves), num_pdfs=num_pdfs, stop_reason=stop, last_gain=last_gain,
                         cluster_thresh=cluster_thresh, objective_gain=objective_gain)
    log.info("tree: %d leaves after splitting (%s), %d pdfs after clustering at %.1f", len(leaves), stop, num_pdfs,
             cluster_thresh)
    return DecisionTree(tree_root, stats.context_width, stats.central_position), report


def _leaves_of(node) -> list[Node]:
    """Distinct leaves under a node, depth first (yes before no, table entries in order)."""
    out, seen = [], set()

    def walk(n):
        if n is None or id(n) in seen:
            return
        seen.add(id(n))
        if isinstance(n, Table):
            for child in n.children:
                walk(child)
        elif n.is_leaf:
            out.append(n)
        else:
            walk(n.yes)
            walk(n.no)
    walk(node)
    return out


def _cluster_leaves(leaves: list[Node], packed: np.ndarray, cluster_thresh: float, var_floor: float) -> int:
    """Bottom-up clustering within each stub (ClusterEventMapRestrictedByMap): the two clusters whose merge loses
    least likelihood are merged while that loss is below `cluster_thresh`. Sets each leaf's pdf (numbered in leaf
    order) and returns the number of pdfs."""
    cluster_of = list(range(len(leaves)))
    by_group: dict[int, list[int]] = {}
    for i, leaf in enumerate(leaves):
        by_group.setdefault(leaf.group, []).append(i)
    for members in by_group.values():
        clusters = {i: packed[leaves[i].events].sum(0) for i in members}
        while len(clusters) > 1 and cluster_thresh > 0:
            ids = list(clusters)
            pts = np.array([clusters[i] for i in ids])
            own = gaussian_objective(pts, var_floor)
            cost = own[:, None] + own[None, :] - gaussian_objective(pts[:, None] + pts[None, :], var_floor)
            cost[np.tril_indices(len(ids))] = np.inf
            a, b = np.unravel_index(int(np.argmin(cost)), cost.shape)
            if cost[a, b] >= cluster_thresh:
                break
            keep, gone = ids[a], ids[b]
            clusters[keep] = clusters[keep] + clusters.pop(gone)
            cluster_of = [keep if c == gone else c for c in cluster_of]
    pdf_of_cluster: dict[int, int] = {}
    for i, leaf in enumerate(leaves):
        leaf.pdf = pdf_of_cluster.setdefault(cluster_of[i], len(pdf_of_cluster))
    return len(pdf_of_cluster)
