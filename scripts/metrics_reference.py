"""Independent numpy implementations of sim-metrics' measures, written from the
formulas in docs/SPEC.md (not from the Rust code), and the fixtures the Rust tests
compare against.

    python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-metrics.txt
    .venv/bin/python scripts/metrics_reference.py crates/sim-metrics/tests/fixtures

Writes <name>.npy inputs and expected.json. Formulas differ from the Rust
side on purpose where they can: biased HSIC through an explicit centring
matrix H, unbiased HSIC through Song et al.'s (2012) closed form on the raw
(uncentred) Gram matrix, so agreement also checks the centring.
"""
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(20260501)
expected = {}


def save(name, array):
    np.save(out / f"{name}.npy", array)


def hsic_biased(k, l):
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h)


def hsic_unbiased(k, l):
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    one = np.ones(n)
    term = np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (one @ kt @ lt @ one)
    return term / (n * (n - 3))


def rbf_gram(x, frac):
    sq = np.sum(x**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    return np.exp(-d2 / (2 * frac**2 * np.median(d2)))


def cka_from(k, l, hsic):
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def minibatch_cka(x, y, batch):
    xy = xx = yy = 0.0
    for s in range(0, x.shape[0], batch):
        k, l = x[s : s + batch] @ x[s : s + batch].T, y[s : s + batch] @ y[s : s + batch].T
        xy += hsic_unbiased(k, l)
        xx += hsic_unbiased(k, k)
        yy += hsic_unbiased(l, l)
    return xy / np.sqrt(xx * yy)


cka_cases = {
    "random_n_gt_d": (rng.normal(size=(60, 20)), rng.normal(size=(60, 30))),
    "random_n_lt_d": (rng.normal(size=(40, 100)), rng.normal(size=(40, 80))),
}
# Real-looking: shared low-rank structure plus noise, shifted away from zero.
basis = rng.normal(size=(200, 5))
x_lr = basis @ rng.normal(size=(5, 50)) + 0.3 * rng.normal(size=(200, 50)) + 3.0
y_lr = basis @ rng.normal(size=(5, 40)) + 1.0 * rng.normal(size=(200, 40)) - 1.0
cka_cases["low_rank"] = (x_lr, y_lr)

expected["cka"] = {}
for name, (x, y) in cka_cases.items():
    x = x.astype(np.float32).astype(np.float64)  # the Rust side reads the f32 file
    y = y.astype(np.float32).astype(np.float64)
    save(f"cka_{name}_x", x.astype(np.float32))
    save(f"cka_{name}_y", y.astype(np.float32))
    kx, ky = x @ x.T, y @ y.T
    expected["cka"][name] = {
        "linear_biased": cka_from(kx, ky, hsic_biased),
        "linear_debiased": cka_from(kx, ky, hsic_unbiased),
        "rbf_biased_1.0": cka_from(rbf_gram(x, 1.0), rbf_gram(y, 1.0), hsic_biased),
        "rbf_biased_0.5": cka_from(rbf_gram(x, 0.5), rbf_gram(y, 0.5), hsic_biased),
        "rbf_debiased_1.0": cka_from(rbf_gram(x, 1.0), rbf_gram(y, 1.0), hsic_unbiased),
        "minibatch_20": minibatch_cka(x, y, 20),
    }

# Calibration: 7-class logits; labels drawn from a sharpened softmax so the
# model is over-confident.
logits = rng.normal(size=(500, 7)) * 2.5
p_true = np.exp(logits / 1.6)
p_true /= p_true.sum(1, keepdims=True)
labels = np.array([rng.choice(7, p=p) for p in p_true])
save("ece_logits", logits.astype(np.float32))
save("ece_labels", labels.astype(np.int64))
lg = logits.astype(np.float32).astype(np.float64)
probs = np.exp(lg - lg.max(1, keepdims=True))
probs /= probs.sum(1, keepdims=True)
conf, pred = probs.max(1), probs.argmax(1)
correct = (pred == labels).astype(np.float64)


def ece_of(groups):
    n, ece, mce, counts = len(conf), 0.0, 0.0, []
    for g in groups:
        counts.append(int(len(g)))
        if len(g):
            gap = abs(correct[g].mean() - conf[g].mean())
            ece += len(g) / n * gap
            mce = max(mce, gap)
    return {"ece": ece, "mce": mce, "counts": counts}


edges = np.linspace(0, 1, 16)
uniform = [np.where((conf > lo) & (conf <= hi))[0] for lo, hi in zip(edges[:-1], edges[1:])]
quantile = np.array_split(np.argsort(conf, kind="stable"), 15)
expected["ece"] = {"uniform_15": ece_of(uniform), "quantile_15": ece_of(quantile)}

# k-NN: five noisy clusters; queries from the same clusters.
centres = rng.normal(size=(5, 16))
bank_labels = rng.integers(0, 5, 300)
bank = centres[bank_labels] + 0.9 * rng.normal(size=(300, 16))
query_labels = rng.integers(0, 5, 100)
queries = centres[query_labels] + 0.9 * rng.normal(size=(100, 16))
save("knn_bank", bank.astype(np.float32))
save("knn_bank_labels", bank_labels.astype(np.int64))
save("knn_queries", queries.astype(np.float32))
save("knn_query_labels", query_labels.astype(np.int64))
b = bank.astype(np.float32).astype(np.float64)
q = queries.astype(np.float32).astype(np.float64)
b /= np.linalg.norm(b, axis=1, keepdims=True)
q /= np.linalg.norm(q, axis=1, keepdims=True)
sims = q @ b.T
expected["knn"] = {}
for k in [1, 5, 20]:
    hits = 0
    for i in range(len(q)):
        nn = np.argsort(-sims[i], kind="stable")[:k]
        votes = np.zeros(5)
        np.add.at(votes, bank_labels[nn], np.exp(sims[i, nn] / 0.07))
        hits += int(votes.argmax() == query_labels[i])
    expected["knn"][str(k)] = hits / len(q)
nearest = sims.argmax(1)
save("knn_nearest_label", bank_labels[nearest].astype(np.int64))

# Classification scores (scikit-learn's definitions).
truth = rng.integers(0, 6, 400)
predicted = np.where(rng.random(400) < 0.6, truth, rng.integers(0, 7, 400))
save("cls_truth", truth.astype(np.int64))
save("cls_predicted", predicted.astype(np.int64))
classes = np.union1d(truth, predicted)
recall = [np.mean(predicted[truth == c] == c) for c in np.unique(truth)]
f1 = []
for c in classes:
    tp = np.sum((predicted == c) & (truth == c))
    fp = np.sum((predicted == c) & (truth != c))
    fn = np.sum((predicted != c) & (truth == c))
    f1.append(2 * tp / (2 * tp + fp + fn))
expected["classification"] = {
    "accuracy": float(np.mean(predicted == truth)),
    "balanced_accuracy": float(np.mean(recall)),
    "macro_f1": float(np.mean(f1)),
}

# Figure 5's fit: ECE falling with similarity, plus noise.
sim = rng.uniform(0.2, 0.95, 300)
ece = 0.25 - 0.2 * sim + 0.03 * rng.normal(size=300)
save("fit_similarity", sim)
save("fit_metric", ece)
levels = np.linspace(sim.min(), sim.max(), 10)
assign = np.abs(sim[:, None] - levels[None, :]).argmin(1)
lx = np.array([levels[i] for i in range(10) if np.any(assign == i)])
ly = np.array([ece[assign == i].mean() for i in range(10) if np.any(assign == i)])
fit = stats.linregress(lx, ly)
t = stats.t.ppf(0.975, len(lx) - 2)
expected["fit"] = {
    "slope": fit.slope,
    "intercept": fit.intercept,
    "r": fit.rvalue,
    "r2": fit.rvalue**2,
    "slope_ci_low": fit.slope - t * fit.stderr,
    "slope_ci_high": fit.slope + t * fit.stderr,
    "levels": int(len(lx)),
    "pearson_raw": stats.pearsonr(sim, ece).statistic,
    "spearman_raw": stats.spearmanr(sim, ece).statistic,
}

# Uncertainty. Bootstrap intervals on resamples drawn here (the Rust side
# takes the same index arrays), percentile by numpy's default (linear).
run_values = rng.normal(0.6, 0.05, 7)
run_resamples = rng.integers(0, 7, size=(500, 7))
save("boot_run_values", run_values)
save("boot_run_resamples", run_resamples.astype(np.int64).ravel())  # 500 draws of 7, flattened
boot_means = run_values[run_resamples].mean(1)
expected["bootstrap_mean"] = {"low": np.percentile(boot_means, 2.5), "high": np.percentile(boot_means, 97.5)}
# A run's similarity over its test images: CKA recomputed on each resample of
# the rows, through the explicit centring matrix.
img_basis = rng.normal(size=(60, 4))
img_x = img_basis @ rng.normal(size=(4, 12)) + 0.5 * rng.normal(size=(60, 12)) + 2.0
img_y = img_basis @ rng.normal(size=(4, 9)) + 1.5 * rng.normal(size=(60, 9))
img_resamples = rng.integers(0, 60, size=(200, 60))
save("boot_images_x", img_x)
save("boot_images_y", img_y)
save("boot_images_resamples", img_resamples.astype(np.int64).ravel())  # 200 draws of 60, flattened
boot_cka = [cka_from(img_x[r] @ img_x[r].T, img_y[r] @ img_y[r].T, hsic_biased) for r in img_resamples]
expected["bootstrap_cka"] = {
    "full": cka_from(img_x @ img_x.T, img_y @ img_y.T, hsic_biased),
    "first": boot_cka[0],
    "low": np.percentile(boot_cka, 2.5),
    "high": np.percentile(boot_cka, 97.5),
}
# Permutation tests of mean(a) > mean(b), exact (scipy enumerates every split
# when n_resamples exceeds their number).
perm_cases = {
    "separated": (rng.normal(0.58, 0.03, 5), rng.normal(0.50, 0.03, 4)),
    "overlapping": (rng.normal(0.52, 0.05, 6), rng.normal(0.50, 0.05, 6)),
}
expected["permutation"] = {}
for name, (a, b) in perm_cases.items():
    save(f"perm_{name}_a", a)
    save(f"perm_{name}_b", b)
    res = stats.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        permutation_type="independent",
        alternative="greater",
        n_resamples=100_000,
        vectorized=True,
    )
    expected["permutation"][name] = {"difference": res.statistic, "p_value": res.pvalue}

# Linear probe: class-balanced multinomial logistic regression on
# standardised features, L2 on the weights only, minimised by scipy's
# L-BFGS-B (sim-metrics runs its own L-BFGS on the same objective).
n_train, n_test, d, k, l2 = 300, 120, 6, 4, 1e-3
centres = rng.normal(0.0, 1.5, size=(k, d))
probe_y = rng.choice(k, size=n_train + n_test, p=[0.55, 0.25, 0.15, 0.05])
probe_x = centres[probe_y] + rng.normal(0.0, 1.0, size=(n_train + n_test, d)) * 1.5 + 3.0
save("probe_train_x", probe_x[:n_train])
save("probe_train_y", probe_y[:n_train].astype(np.int64))
save("probe_test_x", probe_x[n_train:])
save("probe_test_y", probe_y[n_train:].astype(np.int64))
mu, sd = probe_x[:n_train].mean(0), probe_x[:n_train].std(0)
z = (probe_x[:n_train] - mu) / sd
yt = probe_y[:n_train]
sample_w = 1.0 / np.bincount(yt, minlength=k)[yt]
sample_w /= sample_w.sum()
onehot = np.eye(k)[yt]


def probe_objective(theta):
    w, b = theta[: d * k].reshape(d, k), theta[d * k :]
    logits = z @ w + b
    logits -= logits.max(1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    loss = -(sample_w * (onehot * logp).sum(1)).sum() + 0.5 * l2 * (w**2).sum()
    g = (np.exp(logp) - onehot) * sample_w[:, None]
    return loss, np.concatenate([(z.T @ g + l2 * w).ravel(), g.sum(0)])


from scipy.optimize import minimize

res = minimize(probe_objective, np.zeros((d + 1) * k), jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000})
w, b = res.x[: d * k].reshape(d, k), res.x[d * k :]
pred = np.argmax((probe_x[n_train:] - mu) / sd @ w + b, axis=1)
yv = probe_y[n_train:]
recalls = [np.mean(pred[yv == c] == c) for c in range(k) if np.any(yv == c)]
expected["probe"] = {"objective": res.fun, "params": res.x.tolist(), "balanced_accuracy": float(np.mean(recalls))}

# The probe's test probabilities (what epoch 0's accuracy and calibration are
# scored by) from scikit-learn's LogisticRegression on the same standardised
# features: its objective C·Σ sᵢ CEᵢ + ½‖W‖² with class_weight="balanced"
# (sᵢ = n / (K n_{yᵢ})) and an unpenalised intercept is the one above times
# 1 / λ when C = 1 / (λ n). Logits are defined up to a constant per row (the
# intercept is not penalised), so probabilities are compared.
from sklearn.linear_model import LogisticRegression

clf = LogisticRegression(C=1.0 / (l2 * n_train), class_weight="balanced", tol=1e-12, max_iter=100_000)
clf.fit(z, yt)
expected["probe"]["test_probabilities"] = clf.predict_proba((probe_x[n_train:] - mu) / sd).ravel().tolist()

# Similarity measures besides CKA (scripts/similarity_reference.py),
# each by another route than the Rust side's one SVD per side: CCA through
# the inverse square roots of covariance matrices, Procrustes through
# scipy's orthogonal_procrustes, RSA through scipy's pdist and spearmanr,
# the neighbour measures through dense masks as platonic-rep's metrics.py.
from similarity_reference import cknna, mutual_knn, procrustes, pwcca, rsa, svcca

srng = np.random.default_rng(20261205)
RSA_MAX, ALIGN_K = 50, 5
measures = {
    "svcca": lambda x, y: svcca(x, y, variance=0.99),
    "pwcca": pwcca,
    "procrustes": procrustes,
    "rsa": lambda x, y: rsa(x, y, cap=RSA_MAX),
    "mutual_knn": lambda x, y: mutual_knn(x, y, k=ALIGN_K),
    "cknna": lambda x, y: cknna(x, y, k=ALIGN_K),
}

# Inputs: the CKA cases (n > d, n < d, low rank with offsets), plus a side
# with a constant and a duplicated feature (rank-deficient: CCA on the
# column space, which the reference reaches by dropping both), and one with
# repeated samples (tied RDM entries for RSA).
sim_cases = dict(cka_cases)
base = srng.normal(size=(80, 12))
deficient = np.concatenate([base, base[:, :1] * 2.0, np.full((80, 1), 3.0)], axis=1)
sim_cases["rank_deficient"] = (deficient, srng.normal(size=(80, 9)) + base[:, :9])
repeated = np.repeat(srng.normal(size=(20, 15)), 3, axis=0)
sim_cases["repeated_samples"] = (repeated, repeated @ srng.normal(size=(15, 15)) + 0.1 * srng.normal(size=(60, 15)))

expected["similarity"] = {}
for name, (x, y) in sim_cases.items():
    x = x.astype(np.float32).astype(np.float64)
    y = y.astype(np.float32).astype(np.float64)
    if name not in cka_cases:  # the CKA cases' files are there already
        save(f"sim_{name}_x", x.astype(np.float32))
        save(f"sim_{name}_y", y.astype(np.float32))
    row = {}
    for measure, f in measures.items():
        if measure in ("svcca", "pwcca") and x.shape[0] <= max(x.shape[1], y.shape[1]):
            continue  # n ≤ d: every canonical correlation is 1 (a property test)
        if name == "rank_deficient" and measure in ("svcca", "pwcca"):
            row[measure] = f(x[:, :12], y)  # the same column space, full rank
        elif name == "repeated_samples" and measure in ("mutual_knn", "cknna"):
            continue  # exact ties in the neighbour order: a Rust unit test
        else:
            row[measure] = f(x, y)
    expected["similarity"][name] = row

# Chance levels: the measure between x and x with its rows permuted, over
# the permutations saved here (the Rust side takes the same ones).
x = x_lr.astype(np.float32).astype(np.float64)
perms = np.stack([srng.permutation(x.shape[0]) for _ in range(7)])
save("sim_null_orders", perms.astype(np.int64).ravel())  # 7 orders of the 200 rows, one after another
expected["similarity_null"] = {}
for measure, f in measures.items():
    if measure == "rsa":
        # The Rust side permutes the capped samples among themselves: the
        # order of those below the cap, as it reads them.
        m = min(x.shape[0], RSA_MAX)
        rows = np.array([i * x.shape[0] // m for i in range(m)])
        values = [f(x[rows], x[rows][[i for i in p if i < m]]) for p in perms]
    else:
        values = [f(x, x[p]) for p in perms]
    q = 5 if measure == "procrustes" else 95
    expected["similarity_null"][measure] = {"mean": float(np.mean(values)), "q95": float(np.percentile(values, q))}

# Per-class scores (scikit-learn's roc_auc_score and recall_score). Logits
# on a coarse grid, so that rows (and so softmax probabilities) tie; class 6
# never in the truth (its sensitivity and AUROC are null). A generator of its
# own keeps every fixture above as it was.
from sklearn.metrics import recall_score, roc_auc_score

crng = np.random.default_rng(20261206)
expected["class_scores"] = {}
for name, classes, n in [("multiclass", 7, 300), ("binary", 2, 120)]:
    truth = crng.integers(0, min(classes, 6), n)
    logits = np.round(crng.normal(size=(n, classes)), 0) + 1.5 * np.eye(classes)[truth]
    save(f"cls_{name}_logits", logits.astype(np.float32))
    save(f"cls_{name}_truth", truth.astype(np.int64))
    lg = logits.astype(np.float32).astype(np.float64)
    probs = np.exp(lg - lg.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    pred = probs.argmax(1)
    auroc, sens, spec = [], [], []
    for c in range(classes):
        present = bool(np.any(truth == c))
        auroc.append(roc_auc_score(truth == c, probs[:, c]) if present else None)
        sens.append(recall_score(truth == c, pred == c) if present else None)
        spec.append(recall_score(truth == c, pred == c, pos_label=False))
    row = {"auroc": auroc, "sensitivity": sens, "specificity": spec,
           "support": [int(np.sum(truth == c)) for c in range(classes)]}
    # Macro one-vs-rest: the mean over the classes in the truth (sklearn's
    # multi_class="ovr" refuses a class absent from it); with two classes
    # it is the binary AUROC of class 1's probability.
    if name == "binary":
        row["macro_auroc"] = roc_auc_score(truth, probs[:, 1])
    else:
        row["macro_auroc"] = float(np.mean([a for a in auroc if a is not None]))
    expected["class_scores"][name] = row

# Temperature scaling: the T in [0.01, 100] minimising the validation NLL
# (scipy's bounded Brent on T itself), then NLL (scikit-learn's log_loss)
# and Brier score of the test logits at T = 1 and at the fitted T.
from scipy.optimize import minimize_scalar
from sklearn.metrics import log_loss


def softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def val_nll(t, lg, y):
    return log_loss(y, softmax(lg / t), labels=list(range(lg.shape[1])))


val_truth = crng.integers(0, 5, 200)
val_logits = 3.0 * crng.normal(size=(200, 5)) + 2.0 * np.eye(5)[val_truth]  # over-confident
test_truth = crng.integers(0, 5, 150)
test_logits = 3.0 * crng.normal(size=(150, 5)) + 2.0 * np.eye(5)[test_truth]
for name, a in [("ts_val_logits", val_logits), ("ts_test_logits", test_logits)]:
    save(name, a.astype(np.float32))
save("ts_val_truth", val_truth.astype(np.int64))
save("ts_test_truth", test_truth.astype(np.int64))
vl = val_logits.astype(np.float32).astype(np.float64)
tl = test_logits.astype(np.float32).astype(np.float64)
fit = minimize_scalar(val_nll, bounds=(0.01, 100.0), args=(vl, val_truth), method="bounded",
                      options={"xatol": 1e-12, "maxiter": 2000})
onehot = np.eye(5)[test_truth]
expected["temperature"] = {"temperature": fit.x}
for key, t in [("before", 1.0), ("after", fit.x)]:
    p = softmax(tl / t)
    expected["temperature"][key] = {
        "nll": log_loss(test_truth, p, labels=list(range(5))),
        "brier": float(np.mean(np.sum((p - onehot) ** 2, axis=1))),
    }

(out / "expected.json").write_text(json.dumps(expected, indent=1, default=float) + "\n")
print(json.dumps({k: expected[k] for k in ("cka", "similarity", "similarity_null")}, indent=1))
