"""Builders for tiny, self-generated test data: waveforms, wav files and Kaldi data directories."""
import os
import shutil
import subprocess
import wave

import numpy as np


def synth(seconds: float, sample_rate: int = 8000, seed: int = 0) -> np.ndarray:
    """int16 test signal: two chirping tones plus noise (a broad, speech-like spectrum)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 150 + 60 * seed
    x = 4000 * np.sin(2 * np.pi * f0 * t * (1 + t)) + 2000 * np.sin(2 * np.pi * 3.1 * f0 * t)
    x += rng.normal(0, 300, t.size)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def write_wav(path, samples: np.ndarray, sample_rate: int = 8000) -> str:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(np.asarray(samples, np.int16).tobytes())
    return str(path)


def make_data_dir(root, num_utts: int = 5, sample_rate: int = 8000, pipe: bool = True):
    """A Kaldi data dir with `num_utts` utterances of 0.3–0.7 s by two speakers; utt 1 is a `sox … |` pipe.

    Returns:
      `(data_dir, {utt: int16 samples})`.
    """
    data_dir = os.path.join(str(root), "data")
    wav_dir = os.path.join(str(root), "wav")
    os.makedirs(data_dir, exist_ok=True)
    os.makedirs(wav_dir, exist_ok=True)
    samples, wav_scp, utt2spk = {}, [], []
    for i in range(num_utts):
        utt = f"spk{i % 2}-utt{i}"
        samples[utt] = synth(0.3 + 0.1 * (i % 5), sample_rate, seed=i)
        path = write_wav(os.path.join(wav_dir, f"{utt}.wav"), samples[utt], sample_rate)
        entry = f"sox {path} -t wav - |" if pipe and i == 1 else path
        wav_scp.append(f"{utt} {entry}")
        utt2spk.append(f"{utt} spk{i % 2}")
    _write_lines(os.path.join(data_dir, "wav.scp"), wav_scp)
    _write_lines(os.path.join(data_dir, "utt2spk"), utt2spk)
    _write_lines(os.path.join(data_dir, "text"), [f"{utt} HELLO" for utt in samples])
    return data_dir, samples


def add_utterance(data_dir, utt: str, entry: str, speaker: str = "spk9") -> None:
    """Appends one wav.scp entry (and utt2spk line), keeping the tables sorted."""
    for name, line in (("wav.scp", f"{utt} {entry}"), ("utt2spk", f"{utt} {speaker}")):
        path = os.path.join(data_dir, name)
        lines = open(path).read().splitlines() + [line]
        _write_lines(path, sorted(lines))


def _write_lines(path, lines):
    with open(path, "w") as f:
        f.write("".join(f"{line}\n" for line in lines))


def have_sox() -> bool:
    return shutil.which("sox") is not None and subprocess.run(["sox", "--version"], capture_output=True).returncode == 0


def write_kaldi_transition_model(path, model, binary: bool, tuples_token: str = "<Triples>", gmm=None) -> None:
    """Writes a kaldi-hmm-gmm `TransitionModel` as Kaldi's `TransitionModel::Write` does, then the AmDiagGmm `gmm`
    (a `crnn_tf.hmm.gmm.DiagGmmSet`) or a stand-in for one.

    Text is kaldi-hmm-gmm's own `str(model)` and `gmm.to_kaldi_text()`; binary is built byte by byte (kaldi-hmm-gmm
    cannot write it): the topology's entries and phone→entry map, `<Triples>` (older Kaldi) or `<Tuples>` (Kaldi
    >= 2019), the log-probs as a float vector, then `AmDiagGmm::Write`'s layout in float32 (`FV`/`FM` tokens).
    """
    import struct

    if gmm is not None and not binary:
        with open(path, "w") as f:
            f.write(str(model) + gmm.to_kaldi_text())
        return
    if not binary:
        text = str(model)
        if tuples_token == "<Tuples>":
            head, rest = text.split("<Triples>")
            rows, tail = rest.split("</Triples>")
            lines = rows.strip().split("\n")
            tuples = "".join(f"{r.strip()} {r.split()[2]}\n" for r in lines[1:])
            text = f"{head}<Tuples> {lines[0].strip()}\n{tuples}</Tuples>{tail}"
        with open(path, "w") as f:
            f.write(text + "<DIMENSION> 3\n")
        return
    i32 = lambda v: b"\x04" + struct.pack("<i", v)  # noqa: E731
    f32 = lambda v: b"\x04" + struct.pack("<f", v)  # noqa: E731
    ivec = lambda vs: b"\x04" + struct.pack(f"<i{len(vs)}i", len(vs), *vs)  # noqa: E731
    topo = model.topo
    entries, phone2idx = [], [-1] * (max(topo.phones) + 1)
    for phone in topo.phones:
        states = [(s.forward_pdf_class, s.self_loop_pdf_class, list(s.transitions))
                  for s in topo.topology_for_phone(phone)]
        if states not in entries:
            entries.append(states)
        phone2idx[phone] = entries.index(states)
    is_hmm = all(fwd == loop for states in entries for fwd, loop, _ in states)
    out = bytearray(b"\0B<TransitionModel> <Topology> ")
    out += ivec(list(topo.phones)) + ivec(phone2idx) + (b"" if is_hmm else i32(-1)) + i32(len(entries))
    for states in entries:
        out += i32(len(states))
        for forward, self_loop, transitions in states:
            out += i32(forward) + (b"" if is_hmm else i32(self_loop)) + i32(len(transitions))
            for dst, prob in transitions:
                out += i32(dst) + f32(prob)
    tuples = [t.__getstate__() for t in model.tuples]
    out += f"</Topology> {tuples_token} ".encode() + i32(len(tuples))
    for t in tuples:
        out += b"".join(i32(v) for v in (t[:3] if tuples_token == "<Triples>" else t))
    log_probs = list(model.log_probs)
    out += (f"</{tuples_token[1:]} <LogProbs> FV ".encode() + i32(len(log_probs))
            + struct.pack(f"<{len(log_probs)}f", *log_probs) + b"</LogProbs> </TransitionModel> <DIMENSION> ")
    if gmm is not None:
        out += _binary_am_diag_gmm(gmm)
    with open(path, "wb") as f:
        f.write(bytes(out))


def _binary_am_diag_gmm(gmm) -> bytes:
    """`AmDiagGmm::Write` in binary after its `<DIMENSION> ` token: per pdf `DiagGmm::Write` (gconsts, weights,
    means times inverse variances, inverse variances), vectors as `FV` + int32 size, matrices as `FM` + int32 rows
    and columns, then the float32 values."""
    import struct

    import numpy as np

    def i32(v):
        return b"\x04" + struct.pack("<i", v)

    def fv(v):
        return b"FV " + i32(len(v)) + np.asarray(v, "<f4").tobytes()

    def fm(m):
        return b"FM " + i32(m.shape[0]) + i32(m.shape[1]) + np.asarray(m, "<f4").tobytes()

    out = bytearray(i32(gmm.dim) + b"<NUMPDFS> " + i32(gmm.num_pdfs))
    for weights, means, variances in zip(gmm.weights, gmm.means, gmm.vars):
        inv_vars = 1.0 / variances
        gconsts = (np.log(weights) - 0.5 * gmm.dim * np.log(2 * np.pi) - 0.5 * np.log(variances).sum(1)
                   - 0.5 * (means * means * inv_vars).sum(1))
        out += (b"<DiagGMM> <GCONSTS> " + fv(gconsts) + b"<WEIGHTS> " + fv(weights) + b"<MEANS_INVVARS> "
                + fm(means * inv_vars) + b"<INV_VARS> " + fm(inv_vars) + b"</DiagGMM> ")
    return bytes(out)


def compress_matrix(matrix, method: str) -> bytes:
    """Kaldi's binary `CompressedMatrix::Write` of a float matrix, from the format spec: the token ("CM", "CM2" or
    "CM3"), a header (float32 min, float32 range, int32 rows, int32 columns), then

    * CM2: uint16 per value, row by row, value = min + range * q / 65535;
    * CM3: uint8 per value, row by row, value = min + range * q / 255;
    * CM (copy-feats --compress=true on features): per column four uint16 quantiles (0, 25, 75, 100 %) on the CM2
      scale, then per column one byte a value, mapped piecewise linearly: 0–64 between the 0 and 25 % quantiles,
      64–192 between 25 and 75 %, 192–255 between 75 and 100 %.
    """
    import struct

    import numpy as np

    m = np.asarray(matrix, np.float32)
    low, high = float(m.min()), float(m.max())
    span = max(high - low, 1e-6)
    head = method.encode() + b" " + struct.pack("<ffii", low, span, *m.shape)
    if method == "CM2":
        return head + np.round((m - low) / span * 65535).astype("<u2").tobytes()
    if method == "CM3":
        return head + np.round((m - low) / span * 255).astype("u1").tobytes()
    assert method == "CM", method
    rows = m.shape[0]
    quantiles = np.sort(m, axis=0)[[0, rows // 4, (3 * rows) // 4, rows - 1]]
    q = np.round((quantiles - low) / span * 65535).astype(np.int64)
    q = np.maximum(q, np.arange(4)[:, None] + np.maximum.accumulate(q - np.arange(4)[:, None], axis=0))  # ascending
    q = np.minimum(q, 65535 - (3 - np.arange(4))[:, None])
    p = low + span * (1.0 / 65535) * q.astype(np.float32)
    codes = np.empty(m.shape, np.int64)
    for lo, hi, first, steps in ((0, 1, 0, 64), (1, 2, 64, 128), (2, 3, 192, 63)):
        part = first + np.round((m - p[lo]) / (p[hi] - p[lo]) * steps)
        pick = (m <= p[hi]) if lo < 2 else (m > p[lo])
        if lo == 1:
            pick &= m > p[lo]
        codes = np.where(pick, np.clip(part, first, first + steps), codes)
    return head + q.T.astype("<u2").tobytes() + codes.T.astype("u1").tobytes()


def write_compressed_ark(ark_path, items) -> dict[str, int]:
    """Writes `(key, matrix, method)` triples as a binary Kaldi archive of compressed matrices; returns each key's
    byte offset (what `feats.scp`'s `ark:OFFSET` points at: the `\\0B` after `key `)."""
    offsets = {}
    with open(ark_path, "wb") as f:
        for key, matrix, method in items:
            f.write(key.encode() + b" ")
            offsets[key] = f.tell()
            f.write(b"\0B" + compress_matrix(matrix, method))
    return offsets


def decompress_cm(data: bytes):
    """Decodes what `compress_matrix` wrote, by the same spec (the oracle for readers of compressed arks)."""
    import struct

    import numpy as np

    token, _, rest = data.partition(b" ")
    low, span, rows, cols = struct.unpack_from("<ffii", rest)
    body = rest[16:]
    step = np.float32(span * 1.52590218966964e-05)  # Kaldi's float32 1/65535 arithmetic
    if token == b"CM2":
        return np.float32(low) + step * np.frombuffer(body, "<u2", rows * cols).reshape(rows, cols).astype(np.float32)
    if token == b"CM3":
        q = np.frombuffer(body, "u1", rows * cols).reshape(rows, cols).astype(np.float32)
        return np.float32(low) + q * np.float32(span / 255.0)
    p = np.float32(low) + step * np.frombuffer(body, "<u2", 4 * cols).reshape(cols, 4).T.astype(np.float32)
    c = np.frombuffer(body, "u1", rows * cols, 8 * cols).reshape(cols, rows).T.astype(np.float32)
    return np.where(c <= 64, p[0] + (p[1] - p[0]) * c * (1 / 64.0),
                    np.where(c <= 192, p[1] + (p[2] - p[1]) * (c - 64) * (1 / 128.0),
                             p[2] + (p[3] - p[2]) * (c - 192) * (1 / 63.0)))
