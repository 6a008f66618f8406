"""Priors: pdf counts from alignments and floored log priors, against numbers written out by hand."""
import math

import numpy as np
import pytest

from crnn_tf.data.priors import count_pdfs, log_priors


def test_counts_and_floored_log_priors_golden():
    counts = count_pdfs([np.array([3, 3, 2, 3]), np.array([3, 2, 2, 3], np.int32), np.array([], np.int32)], 5)
    np.testing.assert_array_equal(counts, [0, 0, 3, 5, 0])
    priors = log_priors(np.array([0.0, 1.0, 3.0, 996.0]), floor=1e-3)
    # 0 and 1 of 1000 are under the floor; 3/1000 and 996/1000 are not.
    np.testing.assert_allclose(priors, [math.log(1e-3), math.log(1e-3), math.log(0.003), math.log(0.996)],
                               rtol=1e-6)
    assert priors.dtype == np.float32 and np.all(priors <= 0)


def test_bad_counts_and_ids_are_refused():
    with pytest.raises(ValueError, match="all zero"):
        log_priors(np.zeros(3))
    with pytest.raises(ValueError, match=r"pdf id 7 outside \[0, 5\)"):
        count_pdfs([np.array([1, 7])], 5)
