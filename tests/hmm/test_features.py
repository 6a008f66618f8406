"""A Kaldi delta system's features from a data dir: apply-cmvn with cmvn.scp, then add-deltas (numpy oracle)."""
import numpy as np
import pytest

from crnn_tf.data import kaldi_io
from crnn_tf.hmm.features import kaldi_delta_features


def _add_deltas(x: np.ndarray) -> np.ndarray:
    """add-deltas (order 2, window 2): each order's filter is the previous one convolved with the regression
    [-2 -1 0 1 2] / 10, applied to the statics with frame indices clamped to the utterance."""
    filters = [np.array([1.0])]
    for _ in range(2):
        filters.append(np.convolve(filters[-1], np.arange(-2, 3) / 10.0))
    out = []
    for taps in filters:
        half = len(taps) // 2
        frames = np.clip(np.arange(len(x))[:, None] + np.arange(-half, half + 1), 0, len(x) - 1)
        out.append(np.einsum("tjd,j->td", x[frames], taps))
    return np.hstack(out)


def test_feats_scp_with_speaker_cmvn_then_deltas(tmp_path):
    rng = np.random.default_rng(0)
    utt2spk = {"a-1": "a", "a-2": "a", "b-1": "b"}
    static = {u: rng.normal(size=(12 + 3 * i, 13)).astype(np.float32) * 2 + 5 for i, u in enumerate(utt2spk)}
    kaldi_io.write_matrices(f"ark,scp:{tmp_path}/feats.ark,{tmp_path}/feats.scp", sorted(static.items()))
    (tmp_path / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utt2spk.items()))
    stats = {spk: np.stack([np.append(rng.normal(size=13) * 10, 7.0), np.append(np.ones(13), 0.0)])
             for spk in ("a", "b")}
    kaldi_io.write_matrices(f"ark,scp:{tmp_path}/cmvn.ark,{tmp_path}/cmvn.scp", sorted(stats.items()), double=True)
    feats = kaldi_delta_features(str(tmp_path))
    assert sorted(feats) == sorted(utt2spk)
    for utt, spk in utt2spk.items():
        x = static[utt] - stats[spk][0, :-1] / stats[spk][0, -1]
        np.testing.assert_allclose(feats[utt], _add_deltas(x), atol=1e-4)
    assert sorted(kaldi_delta_features(str(tmp_path), ["b-1"])) == ["b-1"]
    kaldi_io.write_matrices(f"ark,scp:{tmp_path}/cmvn.ark,{tmp_path}/cmvn.scp", [("a", stats["a"])], double=True)
    with pytest.raises(ValueError, match=r"cmvn\.scp: speaker 'b' of utterance 'b-1' needs 2 x 14 statistics"):
        kaldi_delta_features(str(tmp_path))
