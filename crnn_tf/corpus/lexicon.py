"""Vocabularies, the ARPAbet lexicon shared by both synthesisers, and phone-timing alignment.

espeak-ng reports its own phoneme mnemonics (``w V n``), flite reports lower-case ARPAbet with ``pau``. Both are mapped
onto ONE phone set (ARPAbet without stress, plus ``SIL``) and then aligned, by a small dynamic programme, to the
lexicon pronunciation of the words that were spoken, so the timings always name exactly the lexicon's phones (with
optional ``SIL`` between words where the synthesiser paused).
"""
from __future__ import annotations

from crnn_tf.data.phone_times import Segment

SIL = "SIL"

# One pronunciation per word keeps the reference phone sequence of an utterance unique.
DIGITS = {
    "ZERO": "Z IH R OW", "OH": "OW", "ONE": "W AH N", "TWO": "T UW", "THREE": "TH R IY", "FOUR": "F AO R",
    "FIVE": "F AY V", "SIX": "S IH K S", "SEVEN": "S EH V AH N", "EIGHT": "EY T", "NINE": "N AY N",
}
COMMANDS = {
    "YES": "Y EH S", "NO": "N OW", "UP": "AH P", "DOWN": "D AW N", "LEFT": "L EH F T", "RIGHT": "R AY T",
    "GO": "G OW", "STOP": "S T AA P", "ON": "AA N", "OFF": "AO F", "START": "S T AA R T", "OPEN": "OW P AH N",
    "CLOSE": "K L OW Z", "PLAY": "P L EY", "PAUSE": "P AO Z", "NEXT": "N EH K S T", "BACK": "B AE K",
    "CALL": "K AO L", "HELP": "HH EH L P", "CANCEL": "K AE N S AH L",
}
TASKS = {"digits": DIGITS, "commands": COMMANDS}

# espeak-ng mnemonic -> ARPAbet. Modifiers (t[ dental, r- ...) are stripped before a second lookup; pauses are SIL.
ESPEAK_TO_ARPABET = {
    "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "g": "G", "f": "F", "v": "V", "T": "TH", "D": "DH",
    "s": "S", "z": "Z", "S": "SH", "Z": "ZH", "h": "HH", "m": "M", "n": "N", "N": "NG", "l": "L", "r": "R",
    "w": "W", "j": "Y", "tS": "CH", "dZ": "JH", "?": "T", "t#": "T", "*": "R", "R": "R", "x": "HH",
    "V": "AH", "@": "AH", "@2": "AH", "@5": "AH", "a#": "AH", "0": "AA", "A:": "AA", "A@": "AA", "aa": "AE",
    "a": "AE", "E": "EH", "e@": "EH", "e": "EH", "I": "IH", "I2": "IH", "I#": "IH", "i": "IY", "i:": "IY",
    "i@": "IH", "i@3": "IH", "U": "UH", "u:": "UW", "U@": "UH", "3:": "ER", "3": "ER", "O:": "AO", "O@": "AO",
    "o@": "AO", "O": "AO", "oU": "OW", "o:": "OW", "O2": "AO", "eI": "EY", "aI": "AY", "aI2": "AY", "aI@": "AY",
    "aU": "AW", "OI": "OY", "@L": "L", "@r": "ER", "_": SIL, "_:": SIL, "_!": SIL, "_^_": SIL, "||": SIL,
}
FLITE_TO_ARPABET = {"pau": SIL, "ax": "AH", "axr": "ER", "dx": "T"}
# ARPAbet -> the English espeak-ng mnemonic that says it (AH is "V" when stressed, "@" otherwise).
ARPABET_TO_ESPEAK = {
    "P": "p", "B": "b", "T": "t", "D": "d", "K": "k", "G": "g", "F": "f", "V": "v", "TH": "T", "DH": "D", "S": "s",
    "Z": "z", "SH": "S", "ZH": "Z", "HH": "h", "M": "m", "N": "n", "NG": "N", "L": "l", "R": "r", "W": "w", "Y": "j",
    "CH": "tS", "JH": "dZ", "AH": "@", "AA": "A:", "AE": "a", "EH": "E", "IH": "I", "IY": "i:", "UH": "U", "UW": "u:",
    "ER": "3:", "AO": "O:", "OW": "oU", "EY": "eI", "AY": "aI", "AW": "aU", "OY": "OI",
}
VOWELS = frozenset({"AH", "AA", "AE", "EH", "IH", "IY", "UH", "UW", "ER", "AO", "OW", "EY", "AY", "AW", "OY"})


def espeak_word_phonemes(pronunciation: str) -> list[str]:
    """A word's lexicon pronunciation as English espeak-ng mnemonics, stress (``'``) on its first vowel.

    Example: ``espeak_word_phonemes("W AH N") == ["w", "'V", "n"]``.
    """
    out, stressed = [], False
    for phone in pronunciation.split():
        mnemonic = ARPABET_TO_ESPEAK[phone]
        if phone in VOWELS and not stressed:
            mnemonic, stressed = "'" + ("V" if phone == "AH" else mnemonic), True
        out.append(mnemonic)
    return out


def espeak_to_arpabet(mnemonic: str) -> str | None:
    """Maps an espeak-ng phoneme mnemonic to ARPAbet (None when unknown; the aligner then treats it as a mismatch).

    Example: ``espeak_to_arpabet("u:") == "UW"``; ``espeak_to_arpabet("t[") == "T"``.
    """
    if mnemonic in ESPEAK_TO_ARPABET:
        return ESPEAK_TO_ARPABET[mnemonic]
    if mnemonic.startswith("_"):
        return SIL
    stripped = mnemonic.rstrip("[]/-#;!^:23'")
    return ESPEAK_TO_ARPABET.get(stripped)


def flite_to_arpabet(phone: str) -> str:
    """Maps a flite phone (lower-case ARPAbet, ``pau``) to the corpus phone set. Example: ``"ax" -> "AH"``."""
    return FLITE_TO_ARPABET.get(phone, phone.upper())


def align_to_lexicon(segments: list[Segment], reference: list[str]) -> list[Segment]:
    """Relabels synthesiser segments with the reference (lexicon) phones, keeping the synthesiser's boundaries.

    A monotone edit-distance alignment: a synthesiser segment matching or substituting a reference phone gives it
    its span; an extra non-silence segment is merged into the preceding phone; a synthesiser pause becomes a ``SIL``
    segment; a reference phone the synthesiser skipped takes half of its predecessor's span.

    Args:
      segments: synthesiser segments in time order, phones already mapped to ARPAbet (None for unknown).
      reference: the lexicon phone sequence of the spoken words (no SIL).

    Returns:
      Contiguous segments whose non-SIL phones are exactly `reference`.

    Example:
      >>> segs = [Segment("W", 0, .1), Segment("AA", .1, .2), Segment("N", .2, .3)]
      >>> [s.phone for s in align_to_lexicon(segs, ["W", "AH", "N"])]
      ['W', 'AH', 'N']
    """
    n, m = len(segments), len(reference)
    inf = float("inf")
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    back = [[None] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            c = cost[i][j]
            if c == inf:
                continue
            if i < n and j < m:  # segment i takes reference phone j
                step = c + (0.0 if segments[i].phone == reference[j] else 1.0)
                if step < cost[i + 1][j + 1]:
                    cost[i + 1][j + 1], back[i + 1][j + 1] = step, "pair"
            if i < n:  # extra segment: a pause is free, anything else costs
                step = c + (0.0 if segments[i].phone == SIL else 1.0)
                if step < cost[i + 1][j]:
                    cost[i + 1][j], back[i + 1][j] = step, "extra"
            if j < m:  # reference phone the synthesiser did not produce
                step = c + 1.0
                if step < cost[i][j + 1]:
                    cost[i][j + 1], back[i][j + 1] = step, "skip"
    ops = []
    i, j = n, m
    while i or j:
        op = back[i][j]
        ops.append(op)
        i, j = (i - 1, j - 1) if op == "pair" else (i - 1, j) if op == "extra" else (i, j - 1)
    ops.reverse()

    out: list[list] = []  # [phone, start, end]
    i = j = 0
    pending_skips: list[str] = []
    for op in ops:
        if op == "skip":
            pending_skips.append(reference[j])
            j += 1
            continue
        seg = segments[i]
        i += 1
        if op == "pair":
            out.extend(_share(pending_skips, out, seg.start))
            pending_skips = []
            out.append([reference[j], seg.start, seg.end])
            j += 1
        elif seg.phone == SIL:
            if out and out[-1][0] == SIL:
                out[-1][2] = seg.end
            else:
                out.append([SIL, seg.start, seg.end])
        elif out and out[-1][0] != SIL:
            out[-1][2] = seg.end  # merge an extra sound into the phone before it
        else:
            out.append([None, seg.start, seg.end])  # leading extra: labelled by the next paired phone
    end = segments[-1].end if segments else 0.0
    out.extend(_share(pending_skips, out, end))
    # Resolve unlabelled leading spans into the following phone.
    for k in range(len(out) - 1, -1, -1):
        if out[k][0] is None:
            if k + 1 < len(out):
                out[k + 1][1] = out[k][1]
            out.pop(k)
    return [Segment(p, float(s), float(e)) for p, s, e in out]


def _share(phones: list[str], out: list[list], until: float) -> list[list]:
    """Splits the last emitted span to make room for skipped reference phones (each gets an equal share)."""
    if not phones:
        return []
    if out:
        start = out[-1][1]
        share = (out[-1][2] - start) / (len(phones) + 1)
        out[-1][2] = start + share
        t = start + share
    else:
        t = until
        share = 0.0
    spans = []
    for p in phones:
        spans.append([p, t, t + share])
        t += share
    return spans
