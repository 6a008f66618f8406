"""OpenFst files by content: const FSTs (aligned or not) written from the format spec, checked against OpenFst's own
writer (kaldifst), read back as the vector FST they hold; truncated and corrupt files are errors naming them."""
import struct

import kaldifst
import numpy as np
import pytest

from crnn_tf.hmm.fst_io import FST_MAGIC, max_input_label, read_const_fst_arrays, read_fst, read_fst_header

INF = float("inf")


def _string(text: str) -> bytes:
    return struct.pack("<i", len(text)) + text.encode()


def const_fst_bytes(start, finals, arcs, *, properties=0x1, version=2, flags=0, fst_type="const",
                    arc_type="standard", symbols=b"") -> bytes:
    """An OpenFst const FST file from the format spec: header, [pad to 16], states, [pad to 16], arcs.

    Args:
      start: start state. finals: final weight per state (inf: not final).
      arcs: per state, its arcs `(ilabel, olabel, weight, nextstate)`.
      properties, version, flags, fst_type, arc_type: header fields; version 1 or flag 4 mean aligned.
      symbols: symbol-table bytes placed after the header (the flags must announce them).
    """
    num_arcs = sum(len(a) for a in arcs)
    out = (struct.pack("<i", FST_MAGIC) + _string(fst_type) + _string(arc_type)
           + struct.pack("<iiQqqq", version, flags, properties, start, len(finals), num_arcs) + symbols)
    aligned = version == 1 or flags & 4
    pad = lambda b: b + b"\0" * (-len(b) % 16 if aligned else 0)  # noqa: E731
    out, pos = pad(out), 0
    for final, state_arcs in zip(finals, arcs):
        out += struct.pack("<fIIII", final, pos, len(state_arcs), sum(a[0] == 0 for a in state_arcs),
                           sum(a[1] == 0 for a in state_arcs))
        pos += len(state_arcs)
    out = pad(out)
    for state_arcs in arcs:
        out += b"".join(struct.pack("<iifi", *arc) for arc in state_arcs)
    return out


TINY_ARCS = [[(1, 2, 0.5, 1), (0, 3, 1.5, 1)], []]
TINY_FINALS = [INF, 0.25]


def _tiny_vector() -> kaldifst.StdVectorFst:
    fst = kaldifst.StdVectorFst()
    for _ in TINY_FINALS:
        fst.add_state()
    fst.start = 0
    for s, state_arcs in enumerate(TINY_ARCS):
        for arc in state_arcs:
            fst.add_arc(s, kaldifst.StdArc(*arc))
    fst.set_final(1, TINY_FINALS[1])
    return fst


def test_spec_bytes_are_what_openfst_writes(tmp_path):
    kaldifst.StdConstFst(_tiny_vector()).write(str(tmp_path / "openfst.fst"))
    written = (tmp_path / "openfst.fst").read_bytes()
    properties = read_fst_header(str(tmp_path / "openfst.fst")).properties
    assert written == const_fst_bytes(0, TINY_FINALS, TINY_ARCS, properties=properties)
    # Golden bytes: magic, "const", "standard", version 2, flags 0, then (after properties, start 0, 2 states,
    # 2 arcs) state 0: not final (inf), arcs from 0, 2 arcs, 1 input epsilon, 0 output epsilons.
    assert written[:33].hex() == "d6fdb27e05000000636f6e7374080000007374616e646172640200000000000000"
    assert written[41:65] == struct.pack("<qqq", 0, 2, 2)
    assert written[65:85].hex() == "0000807f" "00000000" "02000000" "01000000" "00000000"


@pytest.mark.parametrize("version,flags", [(2, 0), (1, 0), (2, 4)], ids=["unaligned", "aligned-v1", "aligned-flag"])
def test_const_fst_reads_as_the_vector_fst(tmp_path, version, flags):
    path = tmp_path / "c.fst"
    path.write_bytes(const_fst_bytes(0, TINY_FINALS, TINY_ARCS, version=version, flags=flags))
    fst = read_fst(str(path))
    assert isinstance(fst, kaldifst.StdVectorFst)
    assert fst.to_str() == _tiny_vector().to_str()
    arrays = read_const_fst_arrays(str(path))
    assert arrays.states["narcs"].tolist() == [2, 0] and arrays.states["niepsilons"].tolist() == [1, 0]


def test_empty_and_single_state_fsts(tmp_path):
    fst = kaldifst.StdVectorFst()
    kaldifst.StdConstFst(fst).write(str(tmp_path / "empty.fst"))
    assert read_fst(str(tmp_path / "empty.fst")).num_states == 0
    fst.add_state()
    fst.start = 0
    fst.set_final(0, 0.5)
    kaldifst.StdConstFst(fst).write(str(tmp_path / "one.fst"))
    assert read_fst(str(tmp_path / "one.fst")).to_str() == fst.to_str()
    (tmp_path / "bad_start.fst").write_bytes(const_fst_bytes(2, TINY_FINALS, TINY_ARCS))
    with pytest.raises(ValueError, match="bad_start.fst: .*2 states, 2 arcs, start 2"):
        read_fst(str(tmp_path / "bad_start.fst"))


def test_random_fst_round_trips_through_openfsts_const_writer(tmp_path):
    rng = np.random.default_rng(0)
    fst = kaldifst.StdVectorFst()
    for _ in range(300):
        fst.add_state()
    fst.start = 7
    for s in range(300):
        for _ in range(rng.integers(0, 6)):
            fst.add_arc(s, kaldifst.StdArc(int(rng.integers(0, 50)), int(rng.integers(0, 9)),
                                           float(rng.uniform(0, 5)), int(rng.integers(0, 300))))
        if rng.random() < 0.1:
            fst.set_final(s, float(rng.uniform(0, 2)))
    kaldifst.arcsort(fst, sort_type="ilabel")
    kaldifst.StdConstFst(fst).write(str(tmp_path / "c.fst"))
    fst.write(str(tmp_path / "v.fst"))
    const, vector = read_fst(str(tmp_path / "c.fst")), read_fst(str(tmp_path / "v.fst"))
    assert const.to_str() == vector.to_str() == fst.to_str()
    assert const.start == 7 and const.is_ilabel_sorted
    assert max_input_label(str(tmp_path / "c.fst")) == max(
        a.ilabel for s in range(300) for a in kaldifst.ArcIterator(fst, s))
    assert max_input_label(str(tmp_path / "v.fst")) is None  # not known without a pass over a vector FST


def test_symbol_tables_are_skipped(tmp_path):
    fst = _tiny_vector()
    table = kaldifst.SymbolTable()
    for word in ("<eps>", "a", "b", "c"):
        table.add_symbol(word)
    fst.input_symbols = table
    fst.output_symbols = table
    kaldifst.StdConstFst(fst).write(str(tmp_path / "c.fst"))
    assert read_fst_header(str(tmp_path / "c.fst")).flags & 3 == 3
    assert read_fst(str(tmp_path / "c.fst")).to_str() == _tiny_vector().to_str()


def test_bad_files_are_errors_naming_them(tmp_path):
    good = const_fst_bytes(0, TINY_FINALS, TINY_ARCS)
    path = tmp_path / "HCLG.fst"
    for cut, what in ((10, "truncated in the FST type"), (60, "truncated in the header"),
                      (80, "truncated in the states"), (len(good) - 1, "truncated in the arcs")):
        path.write_bytes(good[:cut])
        with pytest.raises(ValueError, match=f"HCLG.fst: not a readable OpenFst file \\({what}"):
            read_fst(str(path))
    path.write_bytes(const_fst_bytes(0, TINY_FINALS, [[(1, 2, 0.5, 5)], []]))
    with pytest.raises(ValueError, match="HCLG.fst: .*arc 0 leads to state 5 of 2: corrupt"):
        read_fst(str(path))
    path.write_bytes(const_fst_bytes(0, TINY_FINALS, TINY_ARCS, arc_type="log"))
    with pytest.raises(ValueError, match="HCLG.fst: an FST of 'log' arcs"):
        read_fst(str(path))
    path.write_bytes(const_fst_bytes(0, TINY_FINALS, TINY_ARCS, fst_type="compact8_acceptor"))
    with pytest.raises(ValueError, match="HCLG.fst: an OpenFst 'compact8_acceptor' FST"):
        read_fst(str(path))
    path.write_bytes(b"#!/bin/sh\nnot an fst\n")
    with pytest.raises(ValueError, match="HCLG.fst: not a readable OpenFst file \\(magic number"):
        read_fst(str(path))
    _tiny_vector().write(str(path))
    path.write_bytes(path.read_bytes()[:-6])
    with pytest.raises(ValueError, match="HCLG.fst: not a readable OpenFst file \\(truncated or corrupt vector FST"):
        read_fst(str(path))
    with pytest.raises(FileNotFoundError, match="missing.fst does not exist"):
        read_fst(str(tmp_path / "missing.fst"))
