"""OpenFst binary files as Kaldi writes them: vector FSTs and const FSTs (`mkgraph.sh`'s HCLG.fst), read by content.

kaldifst reads only vector FSTs, so a const FST is parsed here from OpenFst's file layout and handed to kaldifst as
a vector FST in memory. The layout (all little-endian):

* header: int32 magic 2125659606, fst type and arc type as int32-length strings ("const", "standard"), int32
  version, int32 flags (1: input symbols follow, 2: output symbols follow, 4: aligned), uint64 properties, int64
  start, int64 number of states, int64 number of arcs; then the symbol tables the flags announce.
* const body: per state (float32 final weight, uint32 first arc, uint32 arcs, uint32 input-epsilon arcs, uint32
  output-epsilon arcs), then per arc (int32 ilabel, int32 olabel, float32 weight, int32 next state). Version 1
  files and files flagged aligned pad to a multiple of 16 bytes (from the start of the file) before the states and
  before the arcs.
* vector body: per state (float32 final weight, int64 arcs, then the arcs as above).

Example:
    >>> hclg = read_fst("exp/tri1/graph/HCLG.fst")     # const (Kaldi) or vector (ours), same result
    >>> hclg.num_states
    202
"""
from __future__ import annotations

import dataclasses
import os
import struct
import tempfile

import kaldi_hmm_gmm  # noqa: F401  before kaldifst: the other order can deadlock (kaldifst 1.7.x wheels)
import kaldifst
import numpy as np

FST_MAGIC = 2125659606
SYMBOL_TABLE_MAGIC = 2125658996
HAS_ISYMBOLS, HAS_OSYMBOLS, IS_ALIGNED = 1, 2, 4
_ALIGNMENT = 16  # OpenFst's MappedFile::kArchAlignment
_CONST_ALIGNED_VERSION = 1
_EXPANDED, _MUTABLE, _ERROR = 0x1, 0x2, 0x4
CONST_STATE = np.dtype([("final", "<f4"), ("pos", "<u4"), ("narcs", "<u4"), ("niepsilons", "<u4"),
                        ("noepsilons", "<u4")])
ARC = np.dtype([("ilabel", "<i4"), ("olabel", "<i4"), ("weight", "<f4"), ("nextstate", "<i4")])


@dataclasses.dataclass
class FstHeader:
    """An OpenFst file header.

    Attributes:
      fst_type: "vector", "const", …; arc_type: "standard" (tropical float weights), "log", ….
      version, flags, properties, start, num_states, num_arcs: as stored.
      size: bytes taken by the header and the symbol tables after it.
    """

    fst_type: str
    arc_type: str
    version: int
    flags: int
    properties: int
    start: int
    num_states: int
    num_arcs: int
    size: int


class _Bytes:
    """A cursor over a file's bytes whose every short read is an error naming the file."""

    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = data, 0, source

    def fail(self, what: str):
        raise ValueError(f"{self.source}: not a readable OpenFst file ({what} at byte {self.pos})")

    def unpack(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            self.fail(f"truncated in {what}: {len(self.data) - self.pos} bytes left, {size} needed")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def string(self, what: str) -> str:
        (size,) = self.unpack("<i", what)
        if not 0 <= size <= 4096:
            self.fail(f"implausible length {size} of {what}")
        return self.unpack(f"<{size}s", what)[0].decode(errors="replace")

    def array(self, dtype: np.dtype, count: int, what: str) -> np.ndarray:
        size = dtype.itemsize * count
        if self.pos + size > len(self.data):
            self.fail(f"truncated in {what}: {count} records of {dtype.itemsize} bytes need {size}, "
                      f"{len(self.data) - self.pos} left")
        out = np.frombuffer(self.data, dtype, count, self.pos)
        self.pos += size
        return out

    def align(self):
        self.pos += -self.pos % _ALIGNMENT


def _skip_symbol_table(cursor: _Bytes, which: str) -> None:
    (magic,) = cursor.unpack("<i", f"the {which} symbol table")
    if magic != SYMBOL_TABLE_MAGIC:
        cursor.fail(f"bad {which} symbol table magic {magic}")
    cursor.string(f"the {which} symbol table name")
    _, size = cursor.unpack("<qq", f"the {which} symbol table")
    for _ in range(size):
        cursor.string(f"a symbol of the {which} symbol table")
        cursor.unpack("<q", f"a key of the {which} symbol table")


def _read_header(cursor: _Bytes) -> FstHeader:
    (magic,) = cursor.unpack("<i", "the magic number")
    if magic != FST_MAGIC:
        cursor.fail(f"magic number {magic}, expected {FST_MAGIC}")
    fst_type, arc_type = cursor.string("the FST type"), cursor.string("the arc type")
    version, flags, properties, start, num_states, num_arcs = cursor.unpack("<iiQqqq", "the header")
    if flags & HAS_ISYMBOLS:
        _skip_symbol_table(cursor, "input")
    if flags & HAS_OSYMBOLS:
        _skip_symbol_table(cursor, "output")
    return FstHeader(fst_type, arc_type, version, flags, properties, start, num_states, num_arcs, cursor.pos)


def read_fst_header(path: str) -> FstHeader:
    """The header of an OpenFst binary file.

    Raises:
      ValueError: naming the file when it is not an OpenFst file or ends inside the header.

    Example:
      >>> read_fst_header("exp/tri1/graph/HCLG.fst").fst_type
      'const'
    """
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    return _read_header(_Bytes(data, path))


@dataclasses.dataclass
class ConstFstArrays:
    """A const FST's states and arcs as numpy views of the file (see the module docstring for the layout).

    Attributes:
      header: the file header.
      states: structured `[num_states]` (final, pos, narcs, niepsilons, noepsilons); final +inf: not final.
      arcs: structured `[num_arcs]` (ilabel, olabel, weight, nextstate).
    """

    header: FstHeader
    states: np.ndarray
    arcs: np.ndarray


def read_const_fst_arrays(path: str, data: bytes | None = None) -> ConstFstArrays:
    """Parses an OpenFst const FST with standard arcs, aligned or not, and checks it is whole and consistent.

    Args:
      path: the file (named in errors).
      data: its bytes, when already read. Default None (read `path`).

    Raises:
      ValueError: naming the file when it is not a const standard-arc FST, is truncated, or its arcs point
        outside its arc or state arrays.

    Example:
      >>> fst = read_const_fst_arrays("exp/tri1/graph/HCLG.fst"); fst.arcs["ilabel"][:3]
      array([ 0, 12, 13], dtype=int32)
    """
    if data is None:
        with open(path, "rb") as f:
            data = f.read()
    cursor = _Bytes(data, path)
    header = _read_header(cursor)
    if header.fst_type != "const" or header.arc_type != "standard":
        cursor.fail(f"a '{header.fst_type}' FST of '{header.arc_type}' arcs, expected 'const' of 'standard'")
    start_ok = header.start == -1 or 0 <= header.start < header.num_states  # -1: OpenFst's empty FST
    if header.num_states < 0 or header.num_arcs < 0 or not start_ok:
        cursor.fail(f"header with {header.num_states} states, {header.num_arcs} arcs, start {header.start}")
    aligned = header.version == _CONST_ALIGNED_VERSION or header.flags & IS_ALIGNED
    if aligned:
        cursor.align()
    states = cursor.array(CONST_STATE, header.num_states, f"the states ({header.num_states} in the header)")
    if aligned:
        cursor.align()
    arcs = cursor.array(ARC, header.num_arcs, f"the arcs ({header.num_arcs} in the header)")
    ends = states["pos"].astype(np.int64) + states["narcs"]
    if len(ends) and ends.max() > header.num_arcs:
        s = int(np.argmax(ends))
        cursor.fail(f"state {s} has arcs up to {ends[s]} of {header.num_arcs}: corrupt")
    nextstate = arcs["nextstate"]
    if len(arcs) and (nextstate.min() < 0 or nextstate.max() >= header.num_states):
        a = int(np.argmax((nextstate < 0) | (nextstate >= header.num_states)))
        cursor.fail(f"arc {a} leads to state {nextstate[a]} of {header.num_states}: corrupt")
    return ConstFstArrays(header, states, arcs)


def vector_fst_bytes(fst: ConstFstArrays) -> bytes:
    """The same FST in OpenFst's vector layout (what `kaldifst.StdVectorFst.read` reads), built with numpy.

    A state record is 3 little-endian 32-bit words (final weight, int64 arc count) and an arc 4, so the file is
    filled as one uint32 array: each state's record at 3 words per earlier state plus 4 per earlier arc.
    """
    header, states = fst.header, fst.states
    narcs = states["narcs"].astype(np.int64)
    before = np.concatenate([[0], np.cumsum(narcs)[:-1]]).astype(np.int64)
    total = int(narcs.sum())
    words = np.zeros(3 * len(states) + 4 * total, np.uint32)
    state_at = 3 * np.arange(len(states)) + 4 * before
    words[state_at] = states["final"].view(np.uint32)
    words[state_at + 1] = narcs.astype(np.uint32)  # high word stays 0: fewer than 2**32 arcs per state
    owner = np.repeat(np.arange(len(states)), narcs)
    rank = np.arange(total) - before[owner]
    source = states["pos"].astype(np.int64)[owner] + rank  # the arcs in state order, wherever the file put them
    arc_at = state_at[owner] + 3 + 4 * rank
    for k in range(4):
        words[arc_at + k] = fst.arcs.view(np.uint32).reshape(-1, 4)[source, k]
    # The properties carry over; the vector type adds "mutable" and no symbol tables are kept.
    properties = (header.properties & ~(_ERROR | _MUTABLE)) | _EXPANDED | _MUTABLE
    head = struct.pack("<ii6si8siiQqqq", FST_MAGIC, 6, b"vector", 8, b"standard", 2, 0, properties, header.start,
                       len(states), total)
    return head + words.tobytes()


def max_input_label(path: str) -> int | None:
    """The largest input label of a const FST file (0 without arcs), from its arc array; None for a vector FST,
    whose arcs are interleaved with its states (finding it would cost a pass over the graph in Python).

    For HCLG the input labels are transition ids: a graph built for another model has labels beyond the model's.

    Example:
      >>> max_input_label("exp/tri1/graph/HCLG.fst")
      9642
    """
    if read_fst_header(path).fst_type != "const":
        return None
    labels = read_const_fst_arrays(path).arcs["ilabel"]
    return int(labels.max()) if len(labels) else 0


def read_fst(path: str) -> kaldifst.StdVectorFst:
    """Reads an OpenFst binary FST with standard arcs, vector or const (aligned or not), as a kaldifst vector FST.

    The one FST reader of the package: HCLG.fst, L.fst, L_disambig.fst and G.fst all come through here, so a graph
    or lang dir written by Kaldi (const HCLG from `mkgraph.sh`) works as one written by `crnn_tf.hmm.graph`.

    Args:
      path: the file.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: naming the file when it is not an OpenFst file, has another FST or arc type, or is truncated or
        corrupt.

    Example:
      >>> read_fst("exp/tri1/graph/HCLG.fst").num_states
      202
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"FST {path} does not exist")
    header = read_fst_header(path)
    if header.arc_type != "standard":
        raise ValueError(f"{path}: an FST of '{header.arc_type}' arcs; only 'standard' (tropical) arcs are read")
    if header.fst_type == "vector":
        fst = kaldifst.StdVectorFst.read(path)
    elif header.fst_type == "const":
        # kaldifst reads from a file only: the converted bytes go through a temporary one.
        with tempfile.NamedTemporaryFile(suffix=".fst") as plain:
            plain.write(vector_fst_bytes(read_const_fst_arrays(path)))
            plain.flush()
            fst = kaldifst.StdVectorFst.read(plain.name)
    else:
        raise ValueError(f"{path}: an OpenFst '{header.fst_type}' FST; 'vector' and 'const' FSTs are read")
    if fst is None or (header.num_states >= 0 and fst.num_states != header.num_states):
        raise ValueError(f"{path}: not a readable OpenFst file (truncated or corrupt {header.fst_type} FST: "
                         f"{header.num_states} states in the header)")
    return fst
