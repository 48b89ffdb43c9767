"""Independent numpy/scipy implementations of sim-metrics' similarity
measures besides CKA, written from the papers and docs/SPEC.md ("Similarity
measures"), not from the Rust code, and each by another route than the Rust
side's one SVD per side: CCA through the inverse square roots of covariance
matrices, Procrustes through scipy's orthogonal_procrustes, RSA through
scipy's pdist and spearmanr, the neighbour measures through dense masks as
platonic-rep's metrics.py. Used by metrics_reference.py (the fixtures) and
bench_similarity.py (the timings). Inputs: samples × features, f64.
"""
import numpy as np
from scipy import stats
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.distance import pdist


def centre(x):
    return x - x.mean(0)


def inv_sqrt(c):
    w, v = np.linalg.eigh(c)
    return v @ np.diag(w**-0.5) @ v.T


def cca(x, y):
    """Canonical correlations, and the canonical variates of x (unit columns)."""
    x, y = centre(x), centre(y)
    sxx, syy, sxy = x.T @ x, y.T @ y, x.T @ y
    ix, iy = inv_sqrt(sxx), inv_sqrt(syy)
    u, rho, _ = np.linalg.svd(ix @ sxy @ iy, full_matrices=False)
    return np.clip(rho, 0, 1), x @ ix @ u


def svcca(x, y, variance=0.99):
    def reduce(m):
        u, s, _ = np.linalg.svd(centre(m), full_matrices=False)
        share = np.cumsum(s**2) / np.sum(s**2)
        k = int(np.searchsorted(share, variance * (1 - 1e-12)) + 1)
        return u[:, :k] * s[:k]

    rho, _ = cca(reduce(x), reduce(y))
    return float(np.mean(rho))


def pwcca(x, y):
    if np.linalg.matrix_rank(centre(y)) < np.linalg.matrix_rank(centre(x)):
        x, y = y, x
    rho, h = cca(x, y)
    weights = np.abs(h.T @ centre(x)).sum(1)
    return float(np.sum(weights / weights.sum() * rho))


def procrustes(x, y):
    x, y = centre(x), centre(y)
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    d = max(x.shape[1], y.shape[1])
    x = np.pad(x, ((0, 0), (0, d - x.shape[1])))
    y = np.pad(y, ((0, 0), (0, d - y.shape[1])))
    r, _ = orthogonal_procrustes(y, x)
    return float(np.arccos(np.clip(np.sum(x * (y @ r)), 0, 1)))


def rsa(x, y, cap=2000):
    n = x.shape[0]
    m = min(n, cap)
    rows = [i * n // m for i in range(m)]
    return float(stats.spearmanr(pdist(x[rows], "correlation"), pdist(y[rows], "correlation")).statistic)


def knn_mask(x, k):
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = u @ u.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    mask = np.zeros_like(sims)
    np.put_along_axis(mask, order, 1.0, axis=1)
    np.fill_diagonal(sims, 1.0)
    return mask, u @ u.T


def mutual_knn(x, y, k=10):
    (ma, _), (mb, _) = knn_mask(x, k), knn_mask(y, k)
    return float(np.mean((ma * mb).sum(1) / k))


def hsic_unbiased_dense(k, l):
    # platonic-rep's hsic_unbiased: (K̃ ∘ L̃ᵀ) summed is tr(K̃ L̃) for any K̃, L̃.
    m = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    value = (kt * lt.T).sum() + kt.sum() * lt.sum() / ((m - 1) * (m - 2)) - 2 * (kt @ lt).sum() / (m - 2)
    return value / (m * (m - 3))


def cknna(x, y, k=10):
    (ma, ka), (mb, kb) = knn_mask(x, k), knn_mask(y, k)
    mask = ma * mb
    cross = hsic_unbiased_dense(mask * ka, mask * kb)
    return float(cross / np.sqrt(hsic_unbiased_dense(ma * ka, ma * ka) * hsic_unbiased_dense(mb * kb, mb * kb)))
