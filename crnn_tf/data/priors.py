"""State priors for hybrid decoding: pdf-id counts from an alignment, and floored log priors."""
from collections.abc import Iterable

import numpy as np


def count_pdfs(alignments: Iterable[np.ndarray], num_pdfs: int) -> np.ndarray:
    """Counts how often each pdf id occurs in frame-level alignments.

    Args:
      alignments: iterable of int arrays of pdf ids (one per utterance).
      num_pdfs: number of pdfs (senones); ids must lie in [0, num_pdfs).

    Returns:
      float64 array (num_pdfs,) of counts.
    """
    counts = np.zeros(num_pdfs, dtype=np.float64)
    for ali in alignments:
        ali = np.asarray(ali)
        if ali.size and (ali.min() < 0 or ali.max() >= num_pdfs):
            raise ValueError(
                f"alignment has pdf id {int(ali.max()) if ali.max() >= num_pdfs else int(ali.min())} "
                f"outside [0, {num_pdfs})")
        counts += np.bincount(ali, minlength=num_pdfs)
    return counts


def log_priors(counts: np.ndarray, floor: float = 1e-8) -> np.ndarray:
    """Log prior per pdf, with unseen or rare pdfs floored to `floor` (relative) as Kaldi nnet1's --prior-floor.

    Args:
      counts: (num_pdfs,) occurrence counts.
      floor: smallest prior; a pdf with a smaller relative count gets log(floor).

    Returns:
      float32 array (num_pdfs,) of log priors.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("prior counts are all zero: the alignment is empty")
    priors = np.maximum(counts / total, floor)
    return np.log(priors).astype(np.float32)
