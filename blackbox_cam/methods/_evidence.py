"""What DE-CAM keeps of its search: constant-memory statistics of every evaluated mask.

Every mask DE-CAM scores is an experiment on the model: which pixels were kept, and what the
target probability was. Two summaries are accumulated as the search runs, both of bounded size
whatever the budget (so memory does not grow with the number of queries):

* :class:`RidgeStats`, the sufficient statistics (``X^T X``, ``X^T y``, sums) of a ridge
  regression of the target probability on the mask's value at the centres of a fine ``r x r``
  grid. Because every mask is drawn at its own sub-cell shift, the fine grid sees the search's
  masks at many positions: the regression recovers each fine cell's marginal effect at a
  resolution finer than the genome's grid (what RISE's random shifts give RISE, Petsiuk et al.
  2018, sec. 3.2), while correcting for the search's non-uniform sampling, which the plain
  score-weighted mean of RISE would not.
* :class:`Elite`, the best masks seen (lowest fitness), at most ``capacity`` of them: where the
  search converged.

:func:`grid_values` samples a batch of shifted low-resolution masks at the fine grid's centres,
with the bilinear convention of the Numba kernels (:func:`blackbox_cam.methods.masks.axis_weights`).
"""
from __future__ import annotations

import heapq

import numpy as np
from scipy import linalg

from .masks import axis_weights


def _axis(n_fine: int, size: int, offsets: np.ndarray, cell: float, n_grid: int):
    return axis_weights((np.arange(n_fine) + 0.5) * size / n_fine, offsets, cell, n_grid)


def grid_values(masks: np.ndarray, cell: tuple[float, float], offsets: np.ndarray, size: tuple[int, int],
                r: int) -> np.ndarray:
    """Each mask's value at the centres of an ``r x r`` grid over an image of ``size``: ``(B, r*r)``.

    ``masks`` is ``(B, g, g)``, ``cell`` the upsampled grid cell in pixels and ``offsets`` the
    ``(B, 2)`` pixel shifts, exactly as passed to :func:`blackbox_cam.methods.masks.compose`.
    """
    b, gh, gw = masks.shape
    y0, y1, fy = _axis(r, size[0], offsets[:, 0], cell[0], gh)
    x0, x1, fx = _axis(r, size[1], offsets[:, 1], cell[1], gw)
    idx = np.arange(b)[:, None, None]
    m = masks.astype(np.float64)
    a, c = m[idx, y0[:, :, None], x0[:, None, :]], m[idx, y0[:, :, None], x1[:, None, :]]
    d, e = m[idx, y1[:, :, None], x0[:, None, :]], m[idx, y1[:, :, None], x1[:, None, :]]
    top = a + fx[:, None, :] * (c - a)
    bot = d + fx[:, None, :] * (e - d)
    return (top + fy[:, :, None] * (bot - top)).reshape(b, r * r)


class RidgeStats:
    """Streaming ridge regression ``y ~ b0 + X beta`` from its sufficient statistics.

    Memory is ``O(d^2)`` for ``d`` features, independent of the number of observations. The
    penalty is relative: ``alpha`` times the mean variance of a feature, so it means the same
    at any budget and grid size. With ``targets = T`` the response is ``[n, T]`` (several
    targets scored on the same masks): ``X^T X`` is shared, and every statistic and result of
    ``y`` gains a last axis of ``T``; ``targets = None`` (default) keeps a 1-D response.
    """

    def __init__(self, d: int, targets: int | None = None) -> None:
        self.targets = targets
        self.xtx = np.zeros((d, d))
        self.xty = np.zeros(d) if targets is None else np.zeros((d, targets))
        self.sx = np.zeros(d)
        self.sy = 0.0 if targets is None else np.zeros(targets)
        self.syy = 0.0 if targets is None else np.zeros(targets)
        self.n = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        self.xtx += x.T @ x
        self.xty += x.T @ y
        self.sx += x.sum(axis=0)
        if y.ndim == 1:
            self.sy += float(y.sum())
            self.syy += float(y @ y)
        else:
            self.sy += y.sum(axis=0)
            self.syy += (y * y).sum(axis=0)
        self.n += len(y)

    def __add__(self, other: RidgeStats) -> RidgeStats:
        """The statistics of both sets of observations (two halves -> the whole)."""
        out = RidgeStats(len(self.sx), self.targets)
        for k in ("xtx", "xty", "sx", "sy", "syy", "n"):
            setattr(out, k, getattr(self, k) + getattr(other, k))
        return out

    def _centred(self, alpha: float):
        """``(C_xx, C_xy, A, S_yy, penalty)``: the centred statistics, ``A = C_xx + penalty I``."""
        d = len(self.sx)
        mx, my = self.sx / self.n, self.sy / self.n
        cxx = self.xtx - self.n * np.outer(mx, mx)
        cxy = self.xty - self.n * np.multiply.outer(mx, my)
        penalty = alpha * max(float(np.trace(cxx)) / d, 1e-12)
        return cxx, cxy, cxx + penalty * np.eye(d), self.syy - self.n * my * my, penalty

    def solve_se(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """``(beta, se)``: the ridge coefficients and their standard errors from the covariance
        ``s^2 A^-1 C A^-1`` (``A = C + penalty``, ``s^2`` = residual sum of squares over
        ``n - 1 - tr(A^-1 C)`` degrees of freedom; Hoerl and Kennard 1970), all from the
        sufficient statistics. Treats the observations as independent with equal variance: the
        search's adaptivity is not in it (docs/uncertainty.md measures the coverage).

        ``A^-1`` comes from a Cholesky factorisation (``A`` is symmetric positive definite when the
        penalty is positive), and ``A^-1 C = I - penalty A^-1`` gives the trace and the diagonal of
        ``A^-1 C A^-1`` without a further ``d^3`` product (issue 30: DE-CAM's fixed cost per image)."""
        if self.n < 2:
            return np.zeros(self.xty.shape), np.zeros(self.xty.shape)
        cxx, cxy, a, syy, penalty = self._centred(alpha)
        ainv = _spd_inverse(a)
        beta = ainv @ cxy
        if beta.ndim == 1:
            rss = max(syy - 2 * float(beta @ cxy) + float(beta @ cxx @ beta), 0.0)
        else:
            rss = np.maximum(syy - 2 * (beta * cxy).sum(axis=0) + np.einsum("it,ij,jt->t", beta, cxx, beta), 0.0)
        dof = max(self.n - 1 - (len(a) - penalty * float(np.trace(ainv))), 1.0)
        diag = np.diagonal(ainv) - penalty * np.einsum("ij,ij->i", ainv, ainv)
        var = (rss / dof) * diag if beta.ndim == 1 else np.multiply.outer(diag, rss / dof)
        return beta, np.sqrt(np.maximum(var, 0.0))

    def solve(self, alpha: float) -> np.ndarray:
        """Ridge coefficients ``beta`` (centred data, intercept not penalised)."""
        if self.n < 2:
            return np.zeros(self.xty.shape)
        _, cxy, a, _, _ = self._centred(alpha)
        try:
            return linalg.cho_solve(linalg.cho_factor(a, check_finite=False), cxy, check_finite=False)
        except linalg.LinAlgError:  # no penalty and collinear masks: not positive definite
            return np.linalg.solve(a, cxy)


def _spd_inverse(a: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix by Cholesky (LAPACK ``potrf``/``potri``:
    half the work of a general inverse); a general inverse when ``a`` is not positive definite."""
    c, info = linalg.lapack.dpotrf(a, lower=False, clean=False)
    if info == 0:
        inv, info = linalg.lapack.dpotri(c, lower=False)
        if info == 0:
            return np.triu(inv) + np.triu(inv, 1).T
    return np.linalg.inv(a)


class Elite:
    """The ``capacity`` lowest-fitness masks seen so far (ties: the earlier one stays).

    Masks are binary (DE-CAM's thresholded genomes) and kept as ``uint8``. They may come from
    genomes of different sizes (DE-CAM's coarse-to-fine schedule); each is
    kept with the grid cell it was drawn at. :meth:`weights` gives their fitness weights:
    ``f_worst - f`` over the kept set, so the best masks count most and the worst kept one not
    at all.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, int(capacity))
        self._heap: list[tuple] = []  # (-fitness, -order, mask, offset, cell)
        self._count = 0

    def add(self, fitness: np.ndarray, masks: np.ndarray, offsets: np.ndarray, cell: tuple[float, float]) -> None:
        for f, m, o in zip(fitness, masks, offsets):
            item = (-float(f), -self._count, np.asarray(m, np.uint8), o.copy(), tuple(cell))
            self._count += 1
            if len(self._heap) < self.capacity:
                heapq.heappush(self._heap, item)
            elif item[:2] > self._heap[0][:2]:
                heapq.heapreplace(self._heap, item)

    def groups(self) -> list[tuple[tuple[float, float], np.ndarray, np.ndarray, np.ndarray]]:
        """The kept masks as ``(cell, weights, masks, offsets)``, one group per grid (weights over
        all groups sum to 1), each best first."""
        items = sorted(self._heap, key=lambda t: (-t[0], -t[1]))
        w = self.weights(np.array([-t[0] for t in items]))
        out = []
        for cell in dict.fromkeys(t[4] for t in items):
            sel = [k for k, t in enumerate(items) if t[4] == cell]
            out.append((cell, w[sel], np.stack([items[k][2] for k in sel]), np.stack([items[k][3] for k in sel])))
        return out

    @staticmethod
    def weights(fitness: np.ndarray) -> np.ndarray:
        """Weights of masks from their fitness (sorted best first), summing to 1."""
        w = (fitness[-1] - fitness) + 1e-12 if len(fitness) > 1 else np.ones(1)
        return w / w.sum()
