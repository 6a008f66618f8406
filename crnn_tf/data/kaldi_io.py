"""Kaldi tables and models: scp/ark matrices and vectors (via kaldi-native-io), CMVN stats, alignments.

Alignments come either as pdf-id arks (`utt → int32[T]`, e.g. from `ali-to-pdf`) or as Kaldi's transition-id
`ali.*.gz`, mapped to pdf ids with the transition model at the head of a Kaldi `final.mdl` (binary or text). The
model is parsed here (`read_transition_model_parts`, the project's one reader of Kaldi transition models) because
kaldi-hmm-gmm's `TransitionModel` has no reader; `crnn_tf.hmm.model.read_transition_model` builds kaldi-hmm-gmm's
object from the same parse, and its `transition_id_to_pdf_array()` is the oracle the tests compare against.
"""
import contextlib
import dataclasses
import glob
import gzip
import io
import os
import shutil
import struct
import tempfile
from collections.abc import Iterable, Iterator

import kaldi_native_io as kio
import numpy as np


def read_text_table(path: str) -> dict[str, str]:
    """Reads a Kaldi text table (`key rest-of-line`), e.g. wav.scp, text, utt2spk, keeping file order.

    Raises:
      ValueError: naming the file and line for a line without a key, or a duplicate key.
    """
    table = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            key, _, value = line.partition(" ")
            if key in table:
                raise ValueError(f"{path}:{number}: duplicate key {key!r}")
            table[key] = value.strip()
    return table


def _rspecifier(path) -> str:
    path = os.fspath(path)
    if ":" in path.split("/")[0] or path.endswith("|"):
        return path  # already "ark:…", "scp:…" or a pipe the caller wrote
    return f"scp:{path}" if path.endswith(".scp") else f"ark:{path}"


@contextlib.contextmanager
def _sequential_source(path):
    """The rspecifier to read `path` from; a `.gz` archive is decompressed in Python into a temporary file.

    No shell ever sees a file name (a name like `ali.1;rm x;.gz` stays a name), and a truncated or corrupt gzip
    file is an error naming it instead of an archive that silently ends early.
    """
    path = os.fspath(path)
    if not path.endswith(".gz") or ":" in path.split("/")[0]:
        yield _rspecifier(path)
        return
    with tempfile.NamedTemporaryFile(suffix=".ark") as plain:
        try:
            with gzip.open(path, "rb") as packed:
                shutil.copyfileobj(packed, plain)
        except (OSError, EOFError) as error:
            raise ValueError(f"{path}: cannot decompress ({error}); the file is truncated or not gzip") from error
        plain.flush()
        yield f"ark:{plain.name}"


def _read_sequential(reader_type, rspecifier, convert, on_end=None) -> Iterator[tuple[str, object]]:
    """Yields `(key, convert(value))` of a table and fails loudly where Kaldi's reader only warns: an archive that is
    truncated or corrupt part-way would otherwise just end early. `on_end(source)`, when given, checks the source
    read (a plain rspecifier) once every entry has been yielded."""
    count, key = 0, None
    with _sequential_source(rspecifier) as source:
        reader = reader_type(source)
        while not reader.done:
            key = reader.key
            yield key, convert(reader.value)
            count += 1
            reader.next()
        if not reader._impl.close():  # the binding's own close() drops Kaldi's status; its core returns it
            after = f"after {count} entries (the last {key!r})" if count else "before its first entry"
            raise ValueError(f"{os.fspath(rspecifier)}: truncated or corrupt Kaldi table, reading stopped {after}")
        if on_end is not None:
            on_end(source)


def read_matrices(rspecifier: str) -> Iterator[tuple[str, np.ndarray]]:
    """Yields `(key, float32 [rows, cols])` from a Kaldi table (`scp:feats.scp`, `ark:x.ark`, `x.ark.gz`, or a plain
    path); compressed matrices (CM, CM2, CM3, as `copy-feats --compress=true` writes) and scp byte offsets
    (`utt raw_mfcc.1.ark:1234`) included.

    Raises:
      ValueError: naming the table and the last key read when the archive is truncated or corrupt.
    """
    # np.array copies: the reader reuses its buffer
    return _read_sequential(kio.SequentialFloatMatrixReader, rspecifier,
                            lambda value: np.array(value, dtype=np.float32, copy=True))


class _MatrixTable:
    """Random access to float32 matrices by key whose read failures name the table and the key."""

    def __init__(self, rspecifier: str):
        self.source = os.fspath(rspecifier)
        self._reader = kio.RandomAccessFloatMatrixReader(_rspecifier(rspecifier))

    def __contains__(self, key: str) -> bool:
        return key in self._reader

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            return self._reader[key]
        except RuntimeError as error:  # Kaldi's C++ error text, without the table or the key
            raise ValueError(f"{self.source}: cannot read the matrix of {key!r} (truncated or corrupt archive, or "
                             "a missing key)") from error


def read_matrix_table(rspecifier: str) -> _MatrixTable:
    """Random access to float32 matrices by key: `table[key]`, `key in table` (compressed matrices and scp offsets
    as `read_matrices`).

    Raises:
      ValueError: on `table[key]`, naming the table and the key when its matrix cannot be read.
    """
    return _MatrixTable(rspecifier)


def read_cmvn_stats(rspecifier: str) -> dict[str, np.ndarray]:
    """Kaldi CMVN statistics (`cmvn.scp`) as `{speaker: float64 [2, dim + 1]}`."""
    return {key: np.array(value, np.float64, copy=True) for key, value in
            kio.SequentialDoubleMatrixReader(_rspecifier(rspecifier))}


def write_matrices(wspecifier: str, items: Iterable[tuple[str, np.ndarray]], double: bool = False) -> int:
    """Writes `(key, matrix)` pairs Kaldi reads, e.g. `ark,scp:feats.ark,feats.scp`; returns how many.

    Args:
      wspecifier: Kaldi wspecifier.
      items: `(key, 2-D array)` pairs.
      double: write float64 (Kaldi's CMVN stats type) instead of float32. Default False.
    """
    writer_type = kio.DoubleMatrixWriter if double else kio.FloatMatrixWriter
    dtype = np.float64 if double else np.float32
    count = 0
    with writer_type(wspecifier) as writer:
        for key, matrix in items:
            writer[key] = np.ascontiguousarray(matrix, dtype=dtype)
            count += 1
    return count


def read_int32_vectors(rspecifier: str) -> dict[str, np.ndarray]:
    """Reads an int32-vector table (pdf alignments) as `{utt: int32 [T]}`; `.gz` paths are gunzipped (in Python).

    Raises:
      ValueError: naming the table and the last key read when the archive is truncated or corrupt.
    """
    entries: list[tuple[str, np.ndarray]] = []

    def check_complete(source):  # Kaldi's int32-vector reader can end quietly at a cut inside an entry
        _check_archive_complete(source, os.fspath(rspecifier), entries)

    for entry in _read_sequential(kio.SequentialInt32VectorReader, rspecifier, lambda v: np.asarray(v, np.int32),
                                  on_end=check_complete):
        entries.append(entry)
    return dict(entries)


def _check_archive_complete(source: str, name: str, entries: list) -> None:
    """Raises ValueError when the int32-vector archive file `source` (read from `name`) holds more than `entries`."""
    options, _, path = source.partition(":")
    if "ark" not in options.split(",") or path == "-" or path.endswith("|") or not os.path.isfile(path):
        return
    size = os.path.getsize(path)
    # Binary entry: "key " "\0B", then the length and each value as a 1-byte size + int32.
    if size == sum(len(key.encode()) + 3 + 5 * (1 + value.size) for key, value in entries):
        return
    with open(path, "rb") as f:
        data = f.read()
    binary = data[:200].split(b" ", 1)[-1].startswith(b"\0B")
    lines = [line for line in data.split(b"\n") if line.strip()]
    if not binary and data.endswith(b"\n") and len(lines) == len(entries):
        return  # a text archive: one complete line per entry
    last = f" (the last complete one is {entries[-1][0]!r})" if entries else ""
    raise ValueError(f"{name}: only {len(entries)} entries could be read{last} but the archive goes on: it is "
                     f"truncated or corrupt")


def write_int32_vectors(wspecifier: str, items: Iterable[tuple[str, np.ndarray]]) -> int:
    """Writes `(key, int vector)` pairs, e.g. alignments, to a Kaldi wspecifier; returns how many."""
    count = 0
    with kio.Int32VectorWriter(wspecifier) as writer:
        for key, vector in items:
            writer[key] = np.asarray(vector, np.int32).tolist()
            count += 1
    return count


class _KaldiReader:
    """Kaldi's basic-type stream in binary ("\\0B" header) or text form."""

    def __init__(self, data: bytes, source: str, kind: str = "transition model"):
        self.binary = data.startswith(b"\0B")
        self.buf = io.BytesIO(data[2:] if self.binary else data)
        self.source = source
        self.kind = kind  # what the file should be, for messages

    def _fail(self, what: str):
        raise ValueError(f"{self.source}: not a Kaldi {self.kind} ({what} at byte {self.buf.tell()})")

    def _text_token(self) -> str:
        chars = []
        while (c := self.buf.read(1)) and c.isspace():
            pass
        while c and not c.isspace():
            chars.append(c)
            c = self.buf.read(1)
        if not chars:
            self._fail("unexpected end of file")
        return b"".join(chars).decode(errors="replace")

    def token(self) -> str:
        if not self.binary:
            return self._text_token()
        chars = []
        while (c := self.buf.read(1)) not in (b" ", b""):
            chars.append(c)
        return b"".join(chars).decode(errors="replace")

    def expect(self, token: str):
        got = self.token()
        if got != token:
            self._fail(f"expected {token}, found {got!r}")

    def _text_number(self, kind):
        token = self._text_token()
        try:
            return kind(token)
        except ValueError:
            self._fail(f"expected a number, found {token!r}")

    def _unpack(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        data = self.buf.read(size)
        if len(data) != size:
            self._fail(f"unexpected end of file in {what}")
        return struct.unpack(fmt, data)

    def int32(self) -> int:
        if not self.binary:
            return self._text_number(int)
        if self.buf.read(1) != b"\x04":
            self._fail("expected a 4-byte integer")
        return self._unpack("<i", "an integer")[0]

    def real(self) -> float:
        if not self.binary:
            return self._text_number(float)
        size = self.buf.read(1)
        if size not in (b"\x04", b"\x08"):
            self._fail("expected a float")
        return self._unpack("<f" if size == b"\x04" else "<d", "a float")[0]

    def _text_vector(self, kind) -> list:
        self.expect("[")
        values = []
        while (token := self._text_token()) != "]":
            try:
                values.append(kind(token))
            except ValueError:
                self._fail(f"expected a number or ], found {token!r}")
        return values

    def int_vector(self) -> list[int]:
        if not self.binary:
            return self._text_vector(int)
        if self.buf.read(1) != b"\x04":
            self._fail("expected an int32 vector")
        (size,) = self._unpack("<i", "a vector size")
        return list(self._unpack(f"<{size}i", "an int32 vector"))

    def real_vector(self) -> list[float]:
        """A Kaldi `Vector<float|double>`: text `[ … ]`, binary `FV`/`DV`, int32 size, raw values."""
        if not self.binary:
            return self._text_vector(float)
        kind = self.token()
        if kind not in ("FV", "DV"):
            self._fail(f"expected a float vector (FV or DV), found {kind!r}")
        size = self.int32()
        return list(self._unpack(f"<{size}{'f' if kind == 'FV' else 'd'}", "a float vector"))

    def real_matrix(self) -> np.ndarray:
        """A Kaldi `Matrix<float|double>` as float64: text `[` rows, one a line, `]`; binary `FM`/`DM`, int32 rows
        and columns, raw values row by row."""
        if self.binary:
            kind = self.token()
            if kind not in ("FM", "DM"):
                self._fail(f"expected a float matrix (FM or DM), found {kind!r}")
            rows, cols = self.int32(), self.int32()
            if rows < 0 or cols < 0:
                self._fail(f"matrix of {rows} x {cols}")
            values = self._unpack(f"<{rows * cols}{'f' if kind == 'FM' else 'd'}", f"a {rows} x {cols} matrix")
            return np.array(values, np.float64).reshape(rows, cols)
        self.expect("[")
        start = self.buf.tell()
        body = self.buf.getvalue()
        end = body.find(b"]", start)
        if end < 0:
            self._fail("unexpected end of file in a matrix")
        self.buf.seek(end + 1)
        try:
            rows = [[float(x) for x in line.split()] for line in body[start:end].splitlines() if line.strip()]
        except ValueError as error:
            self._fail(f"a matrix entry is not a number ({error})")
        if len({len(row) for row in rows}) > 1:
            self._fail(f"matrix rows of different lengths {sorted({len(row) for row in rows})}")
        return np.array(rows, np.float64).reshape(len(rows), len(rows[0]) if rows else 0)


@dataclasses.dataclass
class TransitionModelParts:
    """The TransitionModel at the head of a Kaldi model file, as stored (what `TransitionModel::Read` reads).

    Attributes:
      source: the file it was read from (for messages).
      topology: the HMM topology entries in file order, each `(phones, states)`; a state is
        `(forward_pdf_class, self_loop_pdf_class, [(destination, probability), …])`, pdf classes -1 for the
        final, non-emitting state.
      tuples: `(phone, hmm_state, forward_pdf, self_loop_pdf)` per transition state (`<Triples>` files repeat the pdf).
      log_probs: log-probability per transition id, index 0 unused (may be shorter in hand-made files).
    """

    source: str
    topology: list[tuple[list[int], list[tuple[int, int, list[tuple[int, float]]]]]]
    tuples: list[tuple[int, int, int, int]]
    log_probs: list[float]

    @property
    def phone_states(self) -> dict[int, list[tuple[int, int, list[tuple[int, float]]]]]:
        """`{phone: states}` of the topology."""
        return {phone: states for phones, states in self.topology for phone in phones}


def _read_topology(reader: _KaldiReader) -> list:
    """Reads `<Topology> … </Topology>` as `TransitionModelParts.topology`."""
    reader.expect("<Topology>")
    if reader.binary:
        phones = reader.int_vector()
        phone2idx = reader.int_vector()
        count = reader.int32()
        is_hmm = count != -1  # -1 flags the extended format with separate self-loop pdf classes
        if not is_hmm:
            count = reader.int32()
        entries = []
        for _ in range(count):
            states = []
            for _ in range(reader.int32()):
                forward = reader.int32()
                self_loop = forward if is_hmm else reader.int32()
                transitions = [(reader.int32(), reader.real()) for _ in range(reader.int32())]
                states.append((forward, self_loop, transitions))
            entries.append(states)
        if any(not 0 <= phone < len(phone2idx) or not 0 <= phone2idx[phone] < count for phone in phones):
            reader._fail("topology maps a phone to no entry")
        topology = [([p for p in phones if phone2idx[p] == i], states) for i, states in enumerate(entries)]
        reader.expect("</Topology>")
        return [(phones_of, states) for phones_of, states in topology if phones_of]
    topology = []
    while (token := reader.token()) != "</Topology>":
        if token != "<TopologyEntry>":
            reader._fail(f"unexpected {token!r} in topology")
        reader.expect("<ForPhones>")
        phones = []
        while (token := reader.token()) != "</ForPhones>":
            if not token.isdigit():
                reader._fail(f"expected a phone id or </ForPhones>, found {token!r}")
            phones.append(int(token))
        states = []
        while (token := reader.token()) != "</TopologyEntry>":
            if token != "<State>":
                reader._fail(f"expected <State>, found {token!r}")
            reader.int32()  # state index, implied by order
            forward = self_loop = -1
            transitions = []
            while (token := reader.token()) != "</State>":
                if token == "<PdfClass>":
                    forward = self_loop = reader.int32()
                elif token == "<ForwardPdfClass>":
                    forward = reader.int32()
                elif token == "<SelfLoopPdfClass>":
                    self_loop = reader.int32()
                elif token == "<Transition>":
                    transitions.append((reader.int32(), reader.real()))
                else:
                    reader._fail(f"unexpected {token!r} in a topology state")
            states.append((forward, self_loop, transitions))
        topology.append((phones, states))
    return topology


def topology_to_text(topology) -> str:
    """Kaldi's text form of `TransitionModelParts.topology` (what `HmmTopology::Read` reads)."""
    lines = ["<Topology>"]
    for phones, states in topology:
        lines += ["<TopologyEntry>", "<ForPhones>", " ".join(map(str, phones)), "</ForPhones>"]
        for index, (forward, self_loop, transitions) in enumerate(states):
            if forward == self_loop:
                pdf = "" if forward == -1 else f" <PdfClass> {forward}"
            else:
                pdf = f" <ForwardPdfClass> {forward} <SelfLoopPdfClass> {self_loop}"
            arcs = "".join(f" <Transition> {dst} {prob!r}" for dst, prob in transitions)
            lines.append(f"<State> {index}{pdf}{arcs} </State>")
        lines.append("</TopologyEntry>")
    return "\n".join(lines + ["</Topology>"]) + "\n"


def _model_reader(model_path: str) -> _KaldiReader:
    if not os.path.exists(model_path):
        raise FileNotFoundError(f"Kaldi model {model_path} does not exist")
    with open(model_path, "rb") as f:
        return _KaldiReader(f.read(), model_path)


def _parse_transition_model(reader: _KaldiReader) -> TransitionModelParts:
    reader.expect("<TransitionModel>")
    topology = _read_topology(reader)
    kind = reader.token()
    if kind not in ("<Triples>", "<Tuples>"):
        reader._fail(f"expected <Triples> or <Tuples>, found {kind!r}")
    tuples = []
    for _ in range(reader.int32()):
        phone, hmm_state, forward_pdf = reader.int32(), reader.int32(), reader.int32()
        tuples.append((phone, hmm_state, forward_pdf, forward_pdf if kind == "<Triples>" else reader.int32()))
    reader.expect("</" + kind[1:])
    reader.expect("<LogProbs>")
    log_probs = reader.real_vector()
    reader.expect("</LogProbs>")
    reader.expect("</TransitionModel>")
    return TransitionModelParts(reader.source, topology, tuples, log_probs)


def read_transition_model_parts(model_path: str) -> TransitionModelParts:
    """Parses the TransitionModel at the head of a Kaldi model file (`final.mdl`, `trans.mdl`), binary or text.

    The one reader of Kaldi transition models: `read_transition_id_to_pdf`, `read_gmm_model_parts` and
    `crnn_tf.hmm.model.read_transition_model` (which builds kaldi-hmm-gmm's object from it) use it. Handles
    `<Triples>` (older Kaldi) and `<Tuples>` (Kaldi >= 2019).

    Raises:
      ValueError: naming the file and the byte offset when it is not a Kaldi transition model.
    """
    return _parse_transition_model(_model_reader(model_path))


@dataclasses.dataclass
class DiagGmmParts:
    """One `<DiagGMM>` of an AmDiagGmm, as stored (Kaldi recomputes the `<GCONSTS>` on reading, and so do we).

    Attributes:
      weights: `[K]` mixture weights.
      means_invvars: `[K, D]` means times inverse variances.
      inv_vars: `[K, D]` inverse variances.
    """

    weights: np.ndarray
    means_invvars: np.ndarray
    inv_vars: np.ndarray


def read_gmm_model_parts(model_path: str) -> tuple[TransitionModelParts, list[DiagGmmParts]]:
    """Parses a whole Kaldi GMM model (`final.mdl` of a GMM system), binary or text: TransitionModel, then AmDiagGmm.

    The AmDiagGmm is `<DIMENSION> d <NUMPDFS> n` and n `<DiagGMM>` blocks, each `[<GCONSTS> vector] <WEIGHTS>
    vector <MEANS_INVVARS> matrix <INV_VARS> matrix </DiagGMM>` (as `AmDiagGmm::Read`/`DiagGmm::Read` take it).

    Args:
      model_path: the model file.

    Returns:
      `(transition model, one DiagGmmParts per pdf)`.

    Raises:
      ValueError: naming the file, the pdf and both numbers when a block disagrees with the header (dimension, pdf
        count, a weight count against the rows of its matrices), and the byte offset when the file is truncated
        or not a GMM model.

    Example:
      >>> tm, gmms = read_gmm_model_parts("exp/tri1/final.mdl"); len(gmms), gmms[0].inv_vars.shape
      (1000, (7, 39))
    """
    reader = _model_reader(model_path)
    parts = _parse_transition_model(reader)
    reader.kind = "GMM model (TransitionModel + AmDiagGmm)"
    reader.expect("<DIMENSION>")
    dim = reader.int32()
    reader.expect("<NUMPDFS>")
    num_pdfs = reader.int32()
    gmms = []
    for pdf in range(num_pdfs):
        token = reader.token()
        if token not in ("<DiagGMM>", "<DiagGMMBegin>"):  # the second from old Kaldi
            reader._fail(f"expected <DiagGMM> for pdf {pdf} of {num_pdfs}, found {token!r}")
        token = reader.token()
        if token == "<GCONSTS>":
            reader.real_vector()
            token = reader.token()
        if token != "<WEIGHTS>":
            reader._fail(f"expected <WEIGHTS> in pdf {pdf}, found {token!r}")
        weights = np.array(reader.real_vector(), np.float64)
        reader.expect("<MEANS_INVVARS>")
        means_invvars = reader.real_matrix()
        reader.expect("<INV_VARS>")
        inv_vars = reader.real_matrix()
        token = reader.token()
        if token not in ("</DiagGMM>", "<DiagGMMEnd>"):
            reader._fail(f"expected </DiagGMM> closing pdf {pdf}, found {token!r}")
        for name, matrix in (("<MEANS_INVVARS>", means_invvars), ("<INV_VARS>", inv_vars)):
            if matrix.shape != (len(weights), dim):
                raise ValueError(f"{model_path}: pdf {pdf} has {len(weights)} Gaussians of dimension {dim} (the "
                                 f"model's <DIMENSION>) but its {name} is {matrix.shape[0]} x {matrix.shape[1]}")
        if not len(weights) or np.any(inv_vars <= 0):
            raise ValueError(f"{model_path}: pdf {pdf} has {len(weights)} Gaussians or a non-positive inverse "
                             "variance: not a usable GMM")
        # Kaldi holds them as BaseFloat (float32) whichever form they were stored in; so do we, so that a text
        # model's 7 digits and its binary form give the same parameters wherever float32 can tell them apart.
        weights, means_invvars, inv_vars = (a.astype(np.float32).astype(np.float64)
                                            for a in (weights, means_invvars, inv_vars))
        gmms.append(DiagGmmParts(weights, means_invvars, inv_vars))
    num_tm_pdfs = max((max(t[2], t[3]) + 1 for t in parts.tuples), default=0)
    if num_tm_pdfs > num_pdfs:
        raise ValueError(f"{model_path}: the transition model uses {num_tm_pdfs} pdfs but the AmDiagGmm has "
                         f"{num_pdfs}")
    return parts, gmms


def transition_ids(phone_states: dict, tuples, source: str = "<memory>") -> tuple[list[int], ...]:
    """Kaldi's `TransitionModel::ComputeDerived`: numbers the transitions of each tuple from transition id 1.

    Args:
      phone_states: `{phone: [per HMM state, anything whose last item lists the transitions as (destination, …)]}`.
      tuples: `(phone, hmm_state, forward_pdf, self_loop_pdf)`.
      source: named in errors.

    Returns:
      `(state2id, id2state, id2pdf, self_loop_id)`: `state2id[s]` the first transition id of tuple s (1-based,
      one extra entry at the end), `id2state`/`id2pdf` per transition id (index 0 is 0 / -1), and `self_loop_id[s]`
      the transition id of tuple s's self-loop (0: none). A self-loop maps to the self-loop pdf, any other
      transition to the forward pdf.

    Raises:
      ValueError: naming `source` when a tuple has no topology state.
    """
    state2id, id2state, id2pdf, self_loop_id = [0], [0], [-1], [0]
    for state, (phone, hmm_state, forward_pdf, self_loop_pdf) in enumerate(tuples, start=1):
        states = phone_states.get(phone)
        if states is None or not 0 <= hmm_state < len(states):
            raise ValueError(f"{source}: not a Kaldi transition model (tuple for phone {phone} state {hmm_state} "
                             "has no topology)")
        state2id.append(len(id2pdf))
        self_loop_id.append(0)
        for transition in states[hmm_state][-1]:
            if transition[0] == hmm_state:
                self_loop_id[state] = len(id2pdf)
            id2state.append(state)
            id2pdf.append(self_loop_pdf if transition[0] == hmm_state else forward_pdf)
    state2id.append(len(id2pdf))
    return state2id, id2state, id2pdf, self_loop_id


def read_transition_id_to_pdf(model_path: str) -> np.ndarray:
    """Maps transition ids to pdf ids with the transition model of a Kaldi `final.mdl` (or a bare `.mdl`/`trans.mdl`).

    Args:
      model_path: binary or text Kaldi model file.

    Returns:
      int32 `[num_transition_ids + 1]`; entry 0 (no transition id 0 exists) is -1.

    Raises:
      ValueError: naming the file when it is not a Kaldi transition model.
    """
    parts = read_transition_model_parts(model_path)
    return np.asarray(transition_ids(parts.phone_states, parts.tuples, model_path)[2], np.int32)


def alignment_paths(path: str) -> list[str]:
    """The files an alignment argument names: itself, the matches of a glob, or a directory's `ali.*.gz`."""
    if os.path.isdir(path):
        path = os.path.join(path, "ali.*.gz")
    return sorted(glob.glob(path)) if any(c in path for c in "*?[") else [path]


def read_alignments(path: str, transition_model: str | None = None) -> dict[str, np.ndarray]:
    """Frame-level pdf-id alignments `{utt: int32 [T]}`.

    Args:
      path: a pdf-id table (ark/scp path or rspecifier), or transition-id alignments: one `ali.N.gz`, a glob such as
        `exp/tri/ali.*.gz`, or the alignment directory holding them.
      transition_model: Kaldi `final.mdl`; when given, the alignments are transition ids and are mapped to pdf ids.
        Default None (already pdf ids).

    Raises:
      ValueError: when no file matches, or a transition id is outside the model.
    """
    paths = alignment_paths(path)
    if not paths:
        raise ValueError(f"no alignment files match {path!r}")
    alignments = {}
    for one in paths:
        alignments.update(read_int32_vectors(one))
    if transition_model is None:
        return alignments
    id2pdf = read_transition_id_to_pdf(transition_model)
    for utt, tids in alignments.items():
        if tids.size and (tids.min() < 1 or tids.max() >= id2pdf.size):
            raise ValueError(f"alignment of {utt!r} has transition id outside [1, {id2pdf.size - 1}] of "
                             f"{transition_model}; wrong final.mdl?")
        alignments[utt] = id2pdf[tids]
    return alignments
