"""Independent numpy/scipy/scikit-learn implementations of sim-metrics'
transferability scores, written from the papers and docs/SPEC.md
("Transferability scores"), not from the Rust code, each by another route
than the Rust side where one exists:

- LogME: the posterior mean through a linear solve per class and the
  log-determinant through slogdet (Rust: one eigenbasis of FᵀF for all);
- H-score: scikit-learn's Ledoit-Wolf shrinkage and numpy's pinv (Rust:
  the shrinkage from its formula, a Cholesky solve per class mean);
- N-LEEP: scikit-learn's GaussianMixture started from the same hard
  assignment (Rust: its own EM);
- GBC: per pair of classes as the paper writes it;
- TransRate: slogdet (LU) of each coding rate (Rust: Cholesky);
- SFDA: the generalised eigenproblem of the authors' code, scipy.linalg.eigh
  (Rust: a direct solve, the same projection since all directions are kept).

Writes the fixtures the Rust tests compare against (inputs as .npy, values
in expected.json; a score that must refuse an input is written as null):

    python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-metrics.txt
    .venv/bin/python scripts/transferability_reference.py crates/sim-metrics/tests/fixtures/transferability

Inputs: features samples × features (f64), labels any integers.
"""
import json
import sys
from pathlib import Path

import numpy as np
import scipy.linalg
from scipy import stats
from sklearn.covariance import ledoit_wolf_shrinkage
from sklearn.mixture import GaussianMixture

# docs/SPEC.md, "Transferability scores": the constants of each score.
LOGME_TOL = 1e-10
LOGME_MAX_ITER = 1000
TRANSRATE_EPS = 1e-4
NLEEP_VARIANCE = 0.8
NLEEP_COMPONENTS_PER_CLASS = 5
NLEEP_ITERATIONS = 100
NLEEP_REG = 1e-6


def classes_of(y):
    """Each sample's class as 0..c-1 (classes sorted), and c."""
    values, index = np.unique(y, return_inverse=True)
    return index, len(values)


def logme(f, y):
    """You et al. 2021: mean over classes of the per-sample log evidence of
    a Bayesian linear regression of the class indicator on f, α and β at
    MacKay's fixed point."""
    n, d = f.shape
    index, c = classes_of(y)
    ftf = f.T @ f
    sigma = np.clip(np.linalg.eigvalsh(ftf), 0.0, None)
    total = 0.0
    for k in range(c):
        t = (index == k).astype(np.float64)
        fty = f.T @ t

        def posterior(a, b):
            m = b * np.linalg.solve(a * np.eye(d) + b * ftf, fty)
            return m, np.sum((t - f @ m) ** 2)

        a, b = 1.0, 1.0
        for _ in range(LOGME_MAX_ITER):
            m, res = posterior(a, b)
            gamma = np.sum(b * sigma / (a + b * sigma))
            a_new, b_new = gamma / (m @ m), (n - gamma) / res
            done = abs(a_new / b_new - a / b) <= LOGME_TOL * (a / b)
            a, b = a_new, b_new
            if done:
                break
        else:
            raise RuntimeError("LogME did not converge")
        m, res = posterior(a, b)
        logdet = np.linalg.slogdet(a * np.eye(d) + b * ftf)[1]
        evidence = (d / 2 * np.log(a) + n / 2 * np.log(b) - logdet / 2
                    - b / 2 * res - a / 2 * (m @ m) - n / 2 * np.log(2 * np.pi))
        total += evidence / n
    return total / c


def hscore(f, y):
    """Bao et al. 2019 with Ibrahim et al.'s (2022) shrinkage:
    tr(Σ_α⁻¹ (1 − α) Σ_z), Σ_α = (1 − α) Σ_f + α tr(Σ_f)/p I, α by Ledoit-Wolf."""
    x = f - f.mean(0)
    n, p = x.shape
    alpha = ledoit_wolf_shrinkage(x, assume_centered=True)
    cov = x.T @ x / n
    shrunk = (1 - alpha) * cov + alpha * np.trace(cov) / p * np.eye(p)
    index, c = classes_of(y)
    g = np.zeros_like(x)
    for k in range(c):
        g[index == k] = x[index == k].mean(0)
    cov_z = g.T @ g / n
    return float(np.trace(np.linalg.pinv(shrunk, rcond=1e-15) @ ((1 - alpha) * cov_z)))


def coding_rate(z, eps=TRANSRATE_EPS):
    n, d = z.shape
    return 0.5 * np.linalg.slogdet(np.eye(d) + z.T @ z / (n * eps))[1]


def transrate(f, y):
    """Huang et al. 2022, as the authors' code computes it: R(Z) − mean over
    classes of R(Z_c), Z the centred features, R(Z) = ½ logdet(I + ZᵀZ/(nε))."""
    z = f - f.mean(0)
    index, c = classes_of(y)
    return coding_rate(z) - np.mean([coding_rate(z[index == k]) for k in range(c)])


def gbc(f, y):
    """Pándy et al. 2022, diagonal Gaussians: −Σ over ordered pairs of
    classes of the Bhattacharyya coefficient exp(−D_B)."""
    index, c = classes_of(y)
    mu = [f[index == k].mean(0) for k in range(c)]
    var = [f[index == k].var(0) for k in range(c)]
    if any(np.any(v == 0) for v in var):
        return None
    total = 0.0
    for i in range(c):
        for j in range(c):
            if i == j:
                continue
            s = (var[i] + var[j]) / 2
            db = (np.sum((mu[i] - mu[j]) ** 2 / s) / 8
                  + 0.5 * np.sum(np.log(s / np.sqrt(var[i] * var[j]))))
            total += np.exp(-db)
    return -total


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def sfda_lda(x, index, c, shrinkage=None):
    """The authors' regularised Fisher discriminant: logits of each class,
    and the shrinkage (exp(−5 λ_max(S_w)) when not given)."""
    n, d = x.shape
    priors = np.bincount(index, minlength=c) / n
    means = np.stack([x[index == k].mean(0) for k in range(c)])
    sw = np.zeros((d, d))
    for k in range(c):
        xk = x[index == k] - means[k]
        sw += priors[k] * (xk.T @ xk) / len(xk)
    if shrinkage is None:
        shrinkage = np.exp(-5 * np.linalg.eigvalsh(sw)[-1])
    shrunk = (1 - shrinkage) * sw + shrinkage * np.trace(sw) / d * np.eye(d)
    xc = x - x.mean(0)
    st = xc.T @ xc / n
    _, v = scipy.linalg.eigh(st - shrunk, shrunk)
    coef = means @ v @ v.T
    intercept = -0.5 * np.sum(means * coef, axis=1) + np.log(priors)
    return x @ coef.T + intercept, shrinkage


def sfda(f, y):
    """Shao et al. 2022: a Fisher discriminant, its softened confidences mix
    each sample towards the other classes' mean (ConfMix), a second
    discriminant on the mixed features with the same shrinkage; the mean
    probability of the true class."""
    n = len(f)
    index, c = classes_of(y)
    logits, shrinkage = sfda_lda(f, index, c)
    q = softmax(softmax(logits))
    means = np.stack([f[index == k].mean(0) for k in range(c)])
    others = (means.sum(0) - means) / (c - 1)
    conf = q[np.arange(n), index][:, None]
    mixed = conf * f + (1 - conf) * others[index]
    logits, _ = sfda_lda(mixed, index, c, shrinkage)
    return float(softmax(logits)[np.arange(n), index].mean())


def nleep(f, y):
    """Li et al. 2021: LEEP with the source classifier replaced by a
    Gaussian mixture (diagonal, 5 components per class) on the principal
    components that explain 80 % of the variance; EM started from the
    samples cut into equal groups by their rank on the first component."""
    n = len(f)
    index, c = classes_of(y)
    x = f - f.mean(0)
    w, v = np.linalg.eigh(x.T @ x / n)
    w, v = w[::-1], v[:, ::-1]
    share = np.cumsum(w) / w.sum()
    kept = min(int(np.searchsorted(share, NLEEP_VARIANCE, side="right")) + 1, len(w))
    v = v[:, :kept]
    v = v * np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(kept)])
    z = x @ v
    components = NLEEP_COMPONENTS_PER_CLASS * c
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(z[:, 0], kind="stable")] = np.arange(n)
    group = rank * components // n
    counts = np.bincount(group, minlength=components).astype(np.float64)
    means = np.stack([z[group == g].mean(0) for g in range(components)])
    variances = np.stack([z[group == g].var(0) for g in range(components)]) + NLEEP_REG
    gmm = GaussianMixture(
        n_components=components, covariance_type="diag", reg_covar=NLEEP_REG,
        max_iter=NLEEP_ITERATIONS, tol=0.0, weights_init=counts / n,
        means_init=means, precisions_init=1.0 / variances, random_state=0,
    )
    gmm.fit(z)
    p_zx = gmm.predict_proba(z)
    joint = np.stack([p_zx[index == k].sum(0) for k in range(c)]) / n
    marginal = joint.sum(0)
    p_yz = joint / np.where(marginal > 0, marginal, 1.0)  # a component no sample reaches predicts nothing
    return float(np.mean(np.log((p_zx @ p_yz.T)[np.arange(n), index])))


SCORES = {"logme": logme, "hscore": hscore, "nleep": nleep, "gbc": gbc,
          "transrate": transrate, "sfda": sfda}


def blobs(rng, n, d, c, spread, weights=None):
    """c Gaussian classes in d dimensions, means `spread` apart on average,
    a shared random covariance; f32 values (as features are stored)."""
    y = rng.choice(c, size=n, p=weights)
    centres = rng.normal(size=(c, d)) * spread
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    x = rng.normal(size=(n, d)) @ mix + centres[y]
    return x.astype(np.float32), y.astype(np.int64)


def main():
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    warnings.simplefilter("ignore", ConvergenceWarning)  # tol = 0: every iteration runs

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261206)
    cases = {}
    cases["three_classes"] = blobs(rng, 300, 12, 3, 0.35)
    cases["seven_imbalanced"] = blobs(rng, 1500, 24, 7, 0.3,
                                      weights=[0.45, 0.2, 0.12, 0.1, 0.06, 0.04, 0.03])
    # More features than samples: every score but SFDA (its within-class
    # scatter is singular) is defined.
    cases["wide"] = blobs(rng, 40, 60, 2, 1.0)
    # A constant feature: GBC's variance of it is 0 in every class.
    x, y = blobs(rng, 200, 8, 3, 0.5)
    x[:, 5] = 0.75
    cases["constant_feature"] = (x, y)
    # A class with one sample: GBC's variance of it is 0.
    x, y = blobs(rng, 120, 6, 3, 0.5)
    y[y == 2] = 1
    y[17] = 2
    cases["singleton_class"] = (x, y)
    # Labels that are not 0..c-1.
    x, y = blobs(rng, 150, 5, 2, 0.6)
    cases["labels_3_and_9"] = (x, np.where(y == 0, 3, 9).astype(np.int64))

    expected = {}
    for name, (x, y) in cases.items():
        np.save(out / f"{name}_x.npy", x)
        np.save(out / f"{name}_y.npy", y)
        f = x.astype(np.float64)
        row = {}
        for score, fn in SCORES.items():
            if score == "sfda" and name == "wide":
                row[score] = None
                continue
            value = fn(f, y)
            row[score] = None if value is None else float(value)
        expected[name] = row
    # Model selection's rank agreement: scipy's weightedtau (defaults), on
    # scores against outcomes with and without ties.
    tau_cases = {
        "scipy_docs": ([12, 2, 1, 12, 2], [1, 4, 7, 1, 0]),
        "random_12": (rng.normal(size=12).tolist(), rng.normal(size=12).tolist()),
        "ties_both": ([3, 1, 3, 2, 2, 5, 1, 4], [0.5, 0.2, 0.1, 0.9, 0.9, 0.3, 0.2, 0.7]),
        "agreeing": (list(range(10)), [v * v for v in range(10)]),
    }
    expected["weighted_tau"] = {}
    for name, (a, b) in tau_cases.items():
        expected["weighted_tau"][name] = {"x": [float(v) for v in a], "y": [float(v) for v in b],
                                          "tau": float(stats.weightedtau(a, b).statistic)}
    (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(json.dumps(expected, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
