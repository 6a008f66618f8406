"""Kaldi tables and models: scp/ark matrices and vectors (via kaldi-native-io), CMVN stats, alignments.

Alignments come either as pdf-id arks (`utt → int32[T]`, e.g. from `ali-to-pdf`) or as Kaldi's transition-id
`ali.*.gz`, mapped to pdf ids with the transition model at the head of a Kaldi `final.mdl` (binary or text). The
model is parsed here because kaldi-hmm-gmm's `TransitionModel` has no reader; its `transition_id_to_pdf_array()`
is the oracle the tests compare against.
"""
import glob
import io
import os
import struct
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


def _rspecifier(path: str) -> str:
    if ":" in path.split("/")[0] or path.endswith("|"):
        return path  # already "ark:…", "scp:…" or a pipe
    if path.endswith(".gz"):
        return f"ark:gunzip -c {path} |"
    return f"scp:{path}" if path.endswith(".scp") else f"ark:{path}"


def read_matrices(rspecifier: str) -> Iterator[tuple[str, np.ndarray]]:
    """Yields `(key, float32 [rows, cols])` from a Kaldi table (`scp:feats.scp`, `ark:x.ark`, or a plain path)."""
    for key, value in kio.SequentialFloatMatrixReader(_rspecifier(rspecifier)):
        yield key, np.array(value, dtype=np.float32, copy=True)  # the reader reuses its buffer


def read_matrix_table(rspecifier: str):
    """Random access to float32 matrices by key: `table[key]`, `key in table`."""
    return kio.RandomAccessFloatMatrixReader(_rspecifier(rspecifier))


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
    """Reads an int32-vector table (pdf alignments) as `{utt: int32 [T]}`; `.gz` paths are gunzipped."""
    return {key: np.asarray(value, np.int32) for key, value in kio.SequentialInt32VectorReader(_rspecifier(rspecifier))}


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

    def __init__(self, data: bytes, source: str):
        self.binary = data.startswith(b"\0B")
        self.buf = io.BytesIO(data[2:] if self.binary else data)
        self.source = source

    def _fail(self, what: str):
        raise ValueError(f"{self.source}: not a Kaldi transition model ({what} at byte {self.buf.tell()})")

    def _text_token(self) -> str:
        chars = []
        while (c := self.buf.read(1)) and c.isspace():
            pass
        while c and not c.isspace():
            chars.append(c)
            c = self.buf.read(1)
        if not chars:
            self._fail("unexpected end of file")
        return b"".join(chars).decode()

    def token(self) -> str:
        if not self.binary:
            return self._text_token()
        chars = []
        while (c := self.buf.read(1)) not in (b" ", b""):
            chars.append(c)
        return b"".join(chars).decode()

    def expect(self, token: str):
        got = self.token()
        if got != token:
            self._fail(f"expected {token}, found {got!r}")

    def int32(self) -> int:
        if not self.binary:
            return int(self._text_token())
        size = self.buf.read(1)
        if size != b"\x04":
            self._fail("expected a 4-byte integer")
        return struct.unpack("<i", self.buf.read(4))[0]

    def real(self) -> float:
        if not self.binary:
            return float(self._text_token())
        size = self.buf.read(1)
        if size not in (b"\x04", b"\x08"):
            self._fail("expected a float")
        return struct.unpack("<f" if size == b"\x04" else "<d", self.buf.read(ord(size)))[0]

    def int_vector(self) -> list[int]:
        if not self.binary:
            self.expect("[")
            values = []
            while (token := self._text_token()) != "]":
                values.append(int(token))
            return values
        if self.buf.read(1) != b"\x04":
            self._fail("expected an int32 vector")
        (size,) = struct.unpack("<i", self.buf.read(4))
        return list(struct.unpack(f"<{size}i", self.buf.read(4 * size)))


def _read_topology(reader: _KaldiReader):
    """Returns `{phone: [(forward_pdf_class, self_loop_pdf_class, [destination states]) per HMM state]}`."""
    reader.expect("<Topology>")
    by_phone = {}
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
                destinations = []
                for _ in range(reader.int32()):
                    destinations.append(reader.int32())
                    reader.real()
                states.append((forward, self_loop, destinations))
            entries.append(states)
        by_phone = {phone: entries[phone2idx[phone]] for phone in phones}
    else:
        while (token := reader.token()) != "</Topology>":
            if token != "<TopologyEntry>":
                reader._fail(f"unexpected {token!r} in topology")
            reader.expect("<ForPhones>")
            phones = []
            while (token := reader.token()) != "</ForPhones>":
                phones.append(int(token))
            states = []
            token = reader.token()
            while token != "</TopologyEntry>":
                reader.int32()  # state index, implied by order
                forward = self_loop = -1
                destinations = []
                while (token := reader.token()) != "</State>":
                    if token == "<PdfClass>":
                        forward = self_loop = reader.int32()
                    elif token == "<ForwardPdfClass>":
                        forward = reader.int32()
                    elif token == "<SelfLoopPdfClass>":
                        self_loop = reader.int32()
                    elif token == "<Transition>":
                        destinations.append(reader.int32())
                        reader.real()
                    else:
                        reader._fail(f"unexpected {token!r} in a topology state")
                states.append((forward, self_loop, destinations))
                token = reader.token()
            by_phone.update({phone: states for phone in phones})
        return by_phone
    reader.expect("</Topology>")
    return by_phone


def read_transition_id_to_pdf(model_path: str) -> np.ndarray:
    """Maps transition ids to pdf ids with the transition model of a Kaldi `final.mdl` (or a bare `.mdl`/`trans.mdl`).

    Follows Kaldi's `TransitionModel::ComputeDerived`: transition ids count up from 1 over the transitions of each
    (phone, hmm-state, pdf) tuple; a self-loop maps to the tuple's self-loop pdf, any other transition to its
    forward pdf.

    Args:
      model_path: binary or text Kaldi model file.

    Returns:
      int32 `[num_transition_ids + 1]`; entry 0 (no transition id 0 exists) is -1.

    Raises:
      ValueError: naming the file when it is not a Kaldi transition model.
    """
    with open(model_path, "rb") as f:
        reader = _KaldiReader(f.read(), model_path)
    reader.expect("<TransitionModel>")
    topology = _read_topology(reader)
    kind = reader.token()
    if kind not in ("<Triples>", "<Tuples>"):
        reader._fail(f"expected <Triples> or <Tuples>, found {kind!r}")
    id2pdf = [-1]
    for _ in range(reader.int32()):
        phone, hmm_state, forward_pdf = reader.int32(), reader.int32(), reader.int32()
        self_loop_pdf = forward_pdf if kind == "<Triples>" else reader.int32()
        if phone not in topology or hmm_state >= len(topology[phone]):
            reader._fail(f"tuple for phone {phone} state {hmm_state} has no topology")
        for destination in topology[phone][hmm_state][2]:
            id2pdf.append(self_loop_pdf if destination == hmm_state else forward_pdf)
    return np.asarray(id2pdf, np.int32)


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
    if os.path.isdir(path):
        path = os.path.join(path, "ali.*.gz")
    paths = sorted(glob.glob(path)) if any(c in path for c in "*?[") else [path]
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
