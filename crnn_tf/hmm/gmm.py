"""Diagonal-covariance GMMs for HMM states (one GMM per pdf), vectorised in numpy.

Same model and update as Kaldi's AmDiagGmm / MleDiagGmmUpdate / SplitByCount, but evaluated for whole utterances
at once ([T, num_gaussians] matrix products) instead of one pybind call per frame, which keeps the EM loop fast.
`to_kaldi_text` writes the AmDiagGmm part of a Kaldi final.mdl; `from_kaldi_parts` builds the set from one read by
`crnn_tf.data.kaldi_io.read_gmm_model_parts`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

_LOG_2PI = float(np.log(2 * np.pi))


@dataclasses.dataclass
class GmmStats:
    """Sufficient statistics per Gaussian (occupancy, first and second order)."""

    occ: np.ndarray  # [G]
    x: np.ndarray  # [G, D]
    xx: np.ndarray  # [G, D]
    loglik: float = 0.0
    frames: int = 0


class DiagGmmSet:
    """One diagonal GMM per pdf id.

    Args:
      weights, means, variances: per pdf, arrays [K], [K, D], [K, D].

    Example:
      >>> g = DiagGmmSet.single(num_pdfs=3, mean=np.zeros(2), var=np.ones(2))
      >>> g.loglik(np.zeros((5, 2), np.float32)).shape
      (5, 3)
    """

    def __init__(self, weights, means, variances):
        self.weights = [np.asarray(w, np.float64) for w in weights]
        self.means = [np.asarray(m, np.float64) for m in means]
        self.vars = [np.asarray(v, np.float64) for v in variances]
        self._pack()

    @classmethod
    def single(cls, num_pdfs: int, mean: np.ndarray, var: np.ndarray) -> "DiagGmmSet":
        """Every pdf one Gaussian with the given mean and variance (flat start)."""
        return cls([np.ones(1)] * num_pdfs, [mean[None]] * num_pdfs, [var[None]] * num_pdfs)

    @property
    def num_pdfs(self) -> int:
        return len(self.weights)

    @property
    def dim(self) -> int:
        return self.means[0].shape[1]

    @property
    def num_gauss(self) -> int:
        return int(sum(len(w) for w in self.weights))

    def _pack(self):
        self._owner = np.concatenate([np.full(len(w), p) for p, w in enumerate(self.weights)])
        self._starts = np.concatenate([[0], np.cumsum([len(w) for w in self.weights])[:-1]]).astype(np.int64)
        means, var = np.concatenate(self.means), np.concatenate(self.vars)
        self._ivar = 1.0 / var
        self._mivar = means * self._ivar
        self._gconst = (np.log(np.concatenate(self.weights)) - 0.5 * means.shape[1] * _LOG_2PI
                        - 0.5 * np.log(var).sum(1) - 0.5 * (means * self._mivar).sum(1))
        self._gconst32, self._mivar32, self._ivar32 = (a.astype(np.float32) for a in (self._gconst, self._mivar,
                                                                                      self._ivar))

    def component_loglik(self, x: np.ndarray) -> np.ndarray:
        """[T, G] float32 log(w_g N(x_t; g)) for all Gaussians of all pdfs (float32 matmuls: 2x faster, and the
        values are differences of numbers of order 100, far above float32 resolution)."""
        x = np.asarray(x, np.float32)
        return (self._gconst32 + x @ self._mivar32.T) - 0.5 * (x * x) @ self._ivar32.T

    def loglik(self, x: np.ndarray | None = None, comp: np.ndarray | None = None) -> np.ndarray:
        """[T, num_pdfs] float32 log-likelihoods (log-sum-exp over each pdf's Gaussians), from features `x` or from
        a `component_loglik` matrix already computed."""
        comp = self.component_loglik(x) if comp is None else comp
        peak = np.maximum.reduceat(comp, self._starts, axis=1)
        total = np.add.reduceat(np.exp(comp - peak[:, self._owner]), self._starts, axis=1)
        return (peak + np.log(total)).astype(np.float32)

    def zero_stats(self) -> GmmStats:
        g, d = self.num_gauss, self.dim
        return GmmStats(np.zeros(g), np.zeros((g, d)), np.zeros((g, d)))

    def accumulate(self, stats: GmmStats, x: np.ndarray, pdfs: np.ndarray) -> None:
        """Adds the statistics of frames `x` [N, D] aligned to `pdfs` [N] (Gaussian posteriors within each frame's
        pdf). Frames are grouped by pdf, so the cost is N x (Gaussians per pdf) x D, not N x all Gaussians x D:
        pass many utterances' frames at once."""
        x = np.asarray(x, np.float64)
        pdfs = np.asarray(pdfs)
        order = np.argsort(pdfs, kind="stable")
        bounds = np.searchsorted(pdfs[order], np.arange(self.num_pdfs + 1))
        for p in range(self.num_pdfs):
            idx = order[bounds[p]:bounds[p + 1]]
            if not len(idx):
                continue
            s, k = self._starts[p], len(self.weights[p])
            xp = x[idx]
            comp = self._gconst[s:s + k] + xp @ self._mivar[s:s + k].T - 0.5 * (xp * xp) @ self._ivar[s:s + k].T
            peak = comp.max(axis=1, keepdims=True)
            post = np.exp(comp - peak)
            norm = post.sum(axis=1, keepdims=True)
            post /= norm
            stats.loglik += float((peak[:, 0] + np.log(norm[:, 0])).sum())
            stats.occ[s:s + k] += post.sum(0)
            stats.x[s:s + k] += post.T @ xp
            stats.xx[s:s + k] += post.T @ (xp * xp)
        stats.frames += len(x)

    def update(self, stats: GmmStats, min_variance: float = 1e-3, min_occupancy: float = 3.0) -> None:
        """Maximum-likelihood re-estimation; Gaussians with occupancy below `min_occupancy` keep their parameters
        (Kaldi's default min_gaussian_occupancy 10 is too high for tiny test corpora; 3 is used here)."""
        for p in range(self.num_pdfs):
            s, k = self._starts[p], len(self.weights[p])
            occ = stats.occ[s:s + k]
            if occ.sum() <= 0:
                continue
            self.weights[p] = np.maximum(occ / occ.sum(), 1e-5)
            self.weights[p] /= self.weights[p].sum()
            ok = occ >= min_occupancy
            mean = stats.x[s:s + k][ok] / occ[ok, None]
            self.means[p][ok] = mean
            self.vars[p][ok] = np.maximum(stats.xx[s:s + k][ok] / occ[ok, None] - mean ** 2, min_variance)
        self._pack()

    def pdf_occupancy(self, stats: GmmStats) -> np.ndarray:
        return np.add.reduceat(stats.occ, self._starts)

    def mixup(self, pdf_occ: np.ndarray, target: int, power: float = 0.2, min_count: float = 20.0,
              perturb: float = 0.01, seed: int = 0) -> None:
        """Splits Gaussians towards `target` in total, allotted to pdfs in proportion to occupancy**power and at most
        one per `min_count` frames (Kaldi's SplitByCount); the heaviest Gaussian is split by moving the two copies
        ±perturb standard deviations apart."""
        if target <= self.num_gauss:
            return
        rng = np.random.default_rng(seed)
        share = np.power(np.maximum(pdf_occ, 0), power)
        share = share / max(share.sum(), 1e-10) * target
        for p in range(self.num_pdfs):
            want = int(min(max(round(share[p]), len(self.weights[p])), max(1, pdf_occ[p] // min_count)))
            while len(self.weights[p]) < want:
                k = int(np.argmax(self.weights[p]))
                delta = perturb * np.sqrt(self.vars[p][k]) * rng.standard_normal(self.dim)
                self.weights[p] = np.append(self.weights[p], self.weights[p][k] / 2)
                self.weights[p][k] /= 2
                self.means[p] = np.vstack([self.means[p], self.means[p][k] - delta])
                self.means[p][k] = self.means[p][k] + delta
                self.vars[p] = np.vstack([self.vars[p], self.vars[p][k]])
        self._pack()

    def to_kaldi_text(self) -> str:
        """The AmDiagGmm in Kaldi text format (``<DIMENSION> d <NUMPDFS> n <DiagGMM> ... </DiagGMM>`` ...)."""
        def vec(v):
            return " [ " + " ".join(f"{x:.7g}" for x in v) + " ]\n"

        def mat(m):
            return " [\n" + "\n".join("  " + " ".join(f"{x:.7g}" for x in row) for row in m) + " ]\n"

        out = [f"<DIMENSION> {self.dim} <NUMPDFS> {self.num_pdfs} "]
        for p in range(self.num_pdfs):
            ivar = 1.0 / self.vars[p]
            mivar = self.means[p] * ivar
            gconst = (np.log(self.weights[p]) - 0.5 * self.dim * _LOG_2PI - 0.5 * np.log(self.vars[p]).sum(1)
                      - 0.5 * (self.means[p] * mivar).sum(1))
            out.append("<DiagGMM> \n<GCONSTS> " + vec(gconst) + "<WEIGHTS> " + vec(self.weights[p])
                       + "<MEANS_INVVARS> " + mat(mivar) + "<INV_VARS> " + mat(ivar) + "</DiagGMM> \n")
        return "".join(out)

    @classmethod
    def from_kaldi_parts(cls, gmms) -> "DiagGmmSet":
        """The set of a Kaldi AmDiagGmm as stored, one `crnn_tf.data.kaldi_io.DiagGmmParts` per pdf (from
        `kaldi_io.read_gmm_model_parts`, binary or text): means and variances from the inverse variances."""
        if not gmms:
            raise ValueError("no <DiagGMM> blocks: not a GMM model")
        return cls([g.weights for g in gmms], [g.means_invvars / g.inv_vars for g in gmms],
                   [1.0 / g.inv_vars for g in gmms])
