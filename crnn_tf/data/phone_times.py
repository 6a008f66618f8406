"""Phone timings: Kaldi-CTM `phone_times.ctm` files (``utt 1 start duration phone``) and their frame labels.

The synthetic corpus writes them; the GMM-HMM bootstraps from them and measures its alignments against them.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Segment:
    """A phone with its time span in seconds."""

    phone: str
    start: float
    end: float


def read_phone_times(path: str) -> dict[str, list[Segment]]:
    """Reads a phone_times.ctm (``utt 1 start duration phone``) into utt -> segments.

    Example:
      >>> times = read_phone_times("corpus/train/phone_times.ctm"); times[next(iter(times))][0].phone  # doctest: +SKIP
      'SIL'
    """
    out: dict[str, list[Segment]] = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 5:
                raise ValueError(f"{path}:{n}: expected 'utt channel start duration phone', got {line!r}")
            start, dur = float(parts[2]), float(parts[3])
            out.setdefault(parts[0], []).append(Segment(parts[4], start, start + dur))
    return out


def frame_phones(segments: list[Segment], num_frames: int, frame_shift: float = 0.01,
                 frame_length: float = 0.025) -> list[str]:
    """Phone label of each analysis frame: the segment containing the frame's centre (snip_edges=True framing).

    Example:
      >>> frame_phones([Segment("SIL", 0, .05), Segment("W", .05, .2)], 3)
      ['SIL', 'SIL', 'SIL']
    """
    starts = np.array([s.start for s in segments])
    centres = np.arange(num_frames) * frame_shift + frame_length / 2
    idx = np.clip(np.searchsorted(starts, centres, side="right") - 1, 0, len(segments) - 1)
    return [segments[i].phone for i in idx]
