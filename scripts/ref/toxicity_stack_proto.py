#!/usr/bin/env python3
"""numpy prototype of the built-in toxicity stack (ctrust-tox, src/trust/toxicity.cpp), used to screen changes to
it before they are written in C++ (docs/trust.md, Toxicity scorer: "How the configuration was chosen").

  c++ -std=c++20 -O2 -fopenmp -Isrc scripts/ref/toxicity_dump.cpp build/libctrust_core.a \
      -lfmt -lpcre2-8 -lbz2 -lsqlite3 -lopenblas -llapacke -lcurl -o /tmp/toxicity_dump
  /tmp/toxicity_dump ../shared/data /tmp/toxicity_inputs.tsv
  python3 scripts/ref/toxicity_stack_proto.py /tmp/toxicity_inputs.tsv VARIANT [--seeds 4 5 6]

VARIANT: base | oof | ngram-feature | hinge | hinge-oof | group-l2 A B C | char-text
       | probe-only | probe | probe-x | pca   (with --lm DUMP.bin --layer L --pool P --probe-l2 X --k K: a linear
         probe on a language model's pooled states, scripts/ref/toxicity_lm_dump.cpp; docs/trust.md, session 7)
Each variant is cross-validated on `ctrust toxicity-eval`'s own folds (the dump holds them for seeds 1-6; select on
4-6, the command reports 1-3): trained on the training corpus's continuations of 4 folds, scored on every
continuation of the 5th. Prints the continuations' AUC (label Perspective >= 0.5) per seed, their mean, Spearman
and the least-squares slope. The replica of the shipped stack ("base") differs from the C++ one only in the n-gram
part's shuffle order (measured on seeds 4-6: 0.9502 / 0.9502 / 0.9499 here, 0.9507 / 0.9500 / 0.9502 in C++).
Needs numpy and scipy (scripts/setup_ref.sh installs both; scipy comes with scikit-learn). One BLAS thread is
enough (OMP_NUM_THREADS=1).
"""
import argparse, json, os, re, sys, time, zlib

import numpy as np
from scipy.stats import rankdata, spearmanr

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("CTRUST_SHARED", os.path.join(ROOT, "..", "shared"))


def load(path):
    C = dict(rec=[], tr=[], y=[], folds=[], dense=[], sp=[], line=[])
    for li, line in enumerate(open(path)):
        k, r, tr, y, f, d, s = line.rstrip("\n").split("\t")
        if k != "c":
            continue
        C["line"].append(li)
        C["rec"].append(int(r)); C["y"].append(float(y)); C["tr"].append(tr == "1")
        C["folds"].append([int(v) for v in f.split(",")])
        C["dense"].append(np.array(d.split(","), float))
        C["sp"].append(np.array([int(v) for v in s.split(",")] if s else [], np.int64))
    for key in ("rec", "y", "dense", "tr", "folds", "line"):
        C[key] = np.array(C[key])
    return C


def load_lm(path, lines, layer, pool):  # the pooled states of the continuations (rows = the TSV's c lines)
    raw = np.fromfile(path, np.int32, 3)
    n, nl, dim = (int(v) for v in raw)
    layers = list(np.fromfile(path, np.int32, nl, offset=12))
    if layer not in layers:
        sys.exit(f"{path}: layer {layer} not dumped (have {layers})")
    k = layers.index(layer); off = 12 + 4 * nl
    bos = np.fromfile(path, np.float32, nl * dim, offset=off).reshape(nl, dim)[k]
    X = np.memmap(path, np.float32, "r", offset=off + 4 * nl * dim, shape=(n, nl, 3, dim))
    cnt = np.fromfile(path, np.int32, n, offset=off + 4 * nl * dim + 4 * n * nl * 3 * dim).astype(float)
    X = np.array(X[lines, k], np.float64); cnt = cnt[lines]
    mean, mx, last = X[:, 0], X[:, 1], X[:, 2]
    out = {"mean": mean, "max": mx, "last": last, "bmean": (bos + cnt[:, None] * mean) / (cnt[:, None] + 1),
           "meanmax": np.concatenate([mean, mx], 1), "meanlast": np.concatenate([mean, last], 1)}
    if pool not in out:
        sys.exit(f"unknown pool {pool}")
    return out[pool]


def auc(s, lab):
    r = rankdata(s); pos = lab.sum(); neg = len(lab) - pos
    return (r[lab == 1].sum() - pos * (pos + 1) / 2) / (pos * neg)


def sig(z):
    return 1 / (1 + np.exp(-z))


def stack_feats(D):  # toxicity_stack_features: the 124 inputs + the 300 products of the 24 outputs
    u = np.concatenate([D[:, :12], D[:, 112:124]], 1)
    iu, ju = np.triu_indices(u.shape[1])
    return np.concatenate([D, u[:, iu] * u[:, ju]], 1)


def newton(X, y, pen):  # soft-target logistic regression, unpenalized intercept (newton_logistic)
    n, d = X.shape
    X1 = np.concatenate([np.ones((n, 1)), X], 1)
    c = np.zeros(d + 1); P = np.concatenate([[1e-9], pen])
    for _ in range(50):
        p = sig(X1 @ c); w = np.maximum(p * (1 - p), 1e-12)
        st = np.linalg.solve((X1 * w[:, None]).T @ X1 + np.diag(P), X1.T @ (p - y) + P * c)
        c -= st
        if np.abs(st).max() < 1e-10:
            break
    return c


class Dense:  # standardized features, L2 per feature
    def __init__(self, F, y, pen):
        self.m = F.mean(0); self.s = np.maximum(F.std(0), 1e-6)
        self.c = newton((F - self.m) / self.s, y, pen)

    def logit(self, F):
        return self.c[0] + ((F - self.m) / self.s) @ self.c[1:]


def adagrad(sp, y, z0, seed, bits=18, epochs=3, lr=0.05, l2=1e-4):  # the n-gram part, dense logit as offset
    w = np.zeros(1 << bits); g2 = np.full(1 << bits, 1e-8)
    rng = np.random.RandomState(seed)
    for _ in range(epochs):
        for i in rng.permutation(len(y)):
            f = sp[i]
            if len(f) == 0:
                continue
            v = 1 / np.sqrt(len(f))
            gi = (sig(z0[i] + w[f].sum() * v) - y[i]) * v + l2 * w[f]
            g2[f] += gi * gi
            w[f] -= lr * gi / np.sqrt(g2[f])
    return w


def sparse_sum(w, sp):
    return np.array([w[f].sum() / np.sqrt(len(f)) if len(f) else 0 for f in sp])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inputs"); ap.add_argument("variant"); ap.add_argument("l2", nargs="*", type=float)
    ap.add_argument("--seeds", nargs="+", type=int, default=[4, 5, 6])
    ap.add_argument("--lm", help="pooled LM states from scripts/ref/toxicity_lm_dump.cpp (probe/pca variants)")
    ap.add_argument("--layer", type=int, default=4)
    ap.add_argument("--pool", default="mean", help="mean | max | last | bmean (mean with BOS) | meanmax | meanlast")
    ap.add_argument("--probe-l2", type=float, default=100.0)
    ap.add_argument("--k", type=int, default=16, help="pca: number of components")
    ap.add_argument("--save", help="write the held-out continuation scores (one row per seed) to this .npy file")
    ap.add_argument("--paired", help="a --save file of another variant (same seeds): paired bootstrap of the AUC "
                    "difference (this - that; 1,000 resamples of the texts, per seed)")
    a = ap.parse_args()
    C = load(a.inputs)
    H = load_lm(a.lm, C["line"], a.layer, a.pool) if a.lm else None
    y = C["y"]; lab = (y >= 0.5).astype(int)
    FS = stack_feats(C["dense"]); SP = C["sp"]
    U = np.concatenate([C["dense"][:, :12], C["dense"][:, 112:124]], 1)
    grp = np.zeros(FS.shape[1], int); grp[12:112] = 1; grp[124:] = 2  # outputs / pooled states / products

    def hinge_feats(tr):  # per-output calibration: max(0, u - q) at the training quartiles of the 24 outputs
        H = [np.maximum(0, U[:, j] - q) for j in range(24) for q in np.quantile(U[tr, j], (0.25, 0.5, 0.75))]
        return np.concatenate([FS, np.array(H).T], 1)

    def inner_oof(F, tr, seed, pen, k=5):  # dense logit of each training text, fitted without its inner fold
        inner = np.random.RandomState(1000 + seed).randint(0, k, len(tr)); z = np.zeros(len(tr))
        for f in range(k):
            z[inner == f] = Dense(F[tr[inner != f]], y[tr[inner != f]], pen).logit(F[tr[inner == f]])
        return z

    def stack(tr, te, seed, F=None, pen=None, oof=False, sp=SP):
        F = FS if F is None else F
        pen = np.full(F.shape[1], 100.0) if pen is None else pen
        d = Dense(F[tr], y[tr], pen)
        z0 = inner_oof(F, tr, seed, pen) if oof else d.logit(F[tr])
        w = adagrad([sp[i] for i in tr], y[tr], z0, seed)
        return sig(d.logit(F[te]) + sparse_sum(w, [sp[i] for i in te]))

    def ngram_feature(tr, te, seed):  # the n-gram model alone, its out-of-fold logit as a stack feature
        z0 = np.full(len(tr), np.log(y[tr].mean() / (1 - y[tr].mean())))
        inner = np.random.RandomState(1000 + seed).randint(0, 5, len(tr)); g = np.zeros(len(tr))
        for f in range(5):
            a_, b_ = np.where(inner != f)[0], np.where(inner == f)[0]
            w = adagrad([SP[tr[i]] for i in a_], y[tr[a_]], z0[a_], seed)
            g[b_] = sparse_sum(w, [SP[tr[i]] for i in b_])
        g_te = sparse_sum(adagrad([SP[i] for i in tr], y[tr], z0, seed), [SP[i] for i in te])
        Ftr = np.concatenate([FS[tr], g[:, None]], 1); Fte = np.concatenate([FS[te], g_te[:, None]], 1)
        return sig(Dense(Ftr, y[tr], np.full(Ftr.shape[1], 100.0)).logit(Fte))

    def groups_of(idx):  # texts with equal stack inputs (equal text) share an inner fold
        keys = {}
        return np.array([keys.setdefault(FS[i].tobytes(), len(keys)) for i in idx])

    def probe_oof(tr, te, seed, k=5):  # the probe's logit: out-of-fold on the training texts, full fit on te
        pen = np.full(H.shape[1], a.probe_l2)
        g = groups_of(tr); inner = np.random.RandomState(1000 + seed).randint(0, k, g.max() + 1)[g]
        z = np.zeros(len(tr))
        for f in range(k):
            z[inner == f] = Dense(H[tr[inner != f]], y[tr[inner != f]], pen).logit(H[tr[inner == f]])
        return z, Dense(H[tr], y[tr], pen).logit(H[te])

    def probe_only(tr, te, seed):
        return sig(Dense(H[tr], y[tr], np.full(H.shape[1], a.probe_l2)).logit(H[te]))

    def probe_stack(tr, te, seed, products=False):
        ztr, zte = probe_oof(tr, te, seed)
        F = np.zeros((len(y), 1)); F[tr, 0] = ztr; F[te, 0] = zte
        if products:
            F = np.concatenate([F, F[:, :1] * C["dense"][:, :12]], 1)
        return stack(tr, te, seed, F=np.concatenate([FS, F], 1))

    def pca_stack(tr, te, seed):  # the states' first K principal components (fitted on tr) as dense features
        m = H[tr].mean(0); sd = np.maximum(H[tr].std(0), 1e-6)
        _, _, Vt = np.linalg.svd((H[tr] - m) / sd, full_matrices=False)
        return stack(tr, te, seed, F=np.concatenate([FS, ((H - m) / sd) @ Vt[:a.k].T], 1))

    char_sp = None
    if a.variant == "char-text":  # + character 2-4-grams over the whole lower-cased text (crc32-hashed)
        texts = []
        for name in ("toxic", "nontoxic"):
            for line in open(os.path.join(SHARED, "data/decodingtrust/toxicity/user_prompts", name + ".jsonl")):
                texts.append(json.loads(line)["continuation"]["text"])

        def cg(t):
            t = " " + re.sub(r"\s+", " ", t.lower()).strip() + " "
            return {zlib.crc32(("x:" + t[k:k + n]).encode()) & ((1 << 18) - 1)
                    for n in (2, 3, 4) for k in range(len(t) - n + 1)}
        char_sp = [np.array(sorted(set(SP[i].tolist()) | cg(texts[C["rec"][i]])), np.int64) for i in range(len(y))]

    methods = {
        "base": lambda tr, te, s: stack(tr, te, s),
        "oof": lambda tr, te, s: stack(tr, te, s, oof=True),
        "ngram-feature": ngram_feature,
        "hinge": lambda tr, te, s: stack(tr, te, s, F=hinge_feats(tr)),
        "hinge-oof": lambda tr, te, s: stack(tr, te, s, F=hinge_feats(tr), oof=True),
        "group-l2": lambda tr, te, s: stack(tr, te, s, pen=np.array(a.l2, float)[grp]),
        "char-text": lambda tr, te, s: stack(tr, te, s, sp=char_sp),
        "probe-only": probe_only,
        "probe": probe_stack,
        "probe-x": lambda tr, te, s: probe_stack(tr, te, s, products=True),
        "pca": pca_stack,
    }
    if a.variant in ("probe-only", "probe", "probe-x", "pca") and H is None:
        sys.exit(f"{a.variant} needs --lm")
    if a.variant not in methods:
        sys.exit(f"unknown variant {a.variant}: one of {', '.join(methods)}")
    if a.variant == "group-l2" and len(a.l2) != 3:
        sys.exit("group-l2 needs 3 penalties: outputs, pooled states, products")
    t = time.time(); aucs, rhos, slopes, preds = [], [], [], []
    for s in a.seeds:
        fold = C["folds"][:, s - 1]; p = np.zeros(len(y))
        for f in range(5):
            p[fold == f] = methods[a.variant](np.where((fold != f) & C["tr"])[0], np.where(fold == f)[0], s)
        aucs.append(auc(p, lab)); rhos.append(spearmanr(p, y)[0]); slopes.append(np.polyfit(p, y, 1)[0])
        preds.append(p)
    name = ' '.join([a.variant] + [f'{v:g}' for v in a.l2])
    if H is not None:
        name += f" [{os.path.basename(a.lm)} layer {a.layer} {a.pool} l2 {a.probe_l2:g}" + (f" k {a.k}" if a.variant == "pca" else "") + "]"
    print(f"{name}: AUC {' / '.join(f'{v:.4f}' for v in aucs)} (seeds "
          f"{', '.join(map(str, a.seeds))}), mean {np.mean(aucs):.4f}; Spearman {np.mean(rhos):.4f}; slope "
          f"{np.mean(slopes):.3f} ({time.time() - t:.0f} s)")
    if a.save:
        np.save(a.save, np.array(preds))
    if a.paired:
        other = np.load(a.paired); rng = np.random.RandomState(4242)
        for k, s in enumerate(a.seeds):
            d = []
            for _ in range(1000):
                i = rng.randint(0, len(y), len(y))
                if 0 < lab[i].sum() < len(i):
                    d.append(auc(preds[k][i], lab[i]) - auc(other[k][i], lab[i]))
            print(f"seed {s}: AUC difference {aucs[k] - auc(other[k], lab):+.4f} "
                  f"[{np.percentile(d, 2.5):+.4f}, {np.percentile(d, 97.5):+.4f}] (paired bootstrap)")


if __name__ == "__main__":
    main()
