#!/usr/bin/env python3
"""Tables and plots of the study (issue 17, docs/study.md) from scripts/study.sh's outputs.

    python3 scripts/study_tables.py [OUT_DIR] [--doc docs/study.md] [--plots docs/study]

OUT_DIR (default $STUDY_DIR/out, else ~/.cache/ctrust/study/out) holds, per model M:
  report-flips-M.json   `ctrust report M-base M-<variant>... --json` (per task: n, accuracies, Δacc, c2w/w2c,
                        flips and answer-level KL with their 95% bootstrap intervals, McNemar p)
  kld-M-V.json          `ctrust kld --json` of variant V against the base on WikiText-2 test
  report-trust-M.json   `ctrust report` over the trust runs (part 2), when it exists
The generated markdown replaces the text between `<!-- study:NAME:begin -->` and `<!-- study:NAME:end -->` in the
doc (NAME = flips-summary, flips-tasks, flips-statements, trust; the trust table sets the paper's Llama-2-13b-chat
differences, ../shared/reference/decoding-compressed-trust-results/deltas_table.md or STUDY_PAPER_DELTAS, under
each variant of the same method and rate); plots are SVG files written by this script
(standard library only, no plotting package).

Pooled figures (all seven tasks of a model × variant) are computed here from the per-task counts, items treated
as independent: flips = Σ(c2w + w2c) / Σn with a Wilson 95% interval; Δacc = Σ(w2c − c2w) / Σn with the normal
interval of a paired difference, var = (flips − Δacc²) / N; answer-level KL = the item-weighted mean of the
per-task means, its standard error combined from the per-task bootstrap intervals (se_t = width / 3.92).
The size statement is checked twice: pooled over the seven tasks, and pooled over the tasks on which every
measured model's base is above chance (the lower end of its base accuracy's 95% interval above 1 / choices).
"""
import argparse
import json
import math
import os
import re
import sys

TASKS = ["arc_easy", "arc_challenge", "hellaswag", "piqa", "winogrande", "boolq", "mmlu"]
MODELS = ["smollm2", "qwen0.5b", "qwen1.5b"]
# Parameter counts (the models' own; `ctrust info` prints them): the x axis of "flips vs model size".
# chance accuracy per task (1 / number of choices; ARC has a few 3- and 5-choice items, counted as 4)
CHANCE = {"arc_easy": 0.25, "arc_challenge": 0.25, "hellaswag": 0.25, "piqa": 0.5, "winogrande": 0.5,
          "boolq": 0.5, "mmlu": 0.25}
PARAMS = {"smollm2": 134.5e6, "qwen0.5b": 494.0e6, "qwen1.5b": 1543.7e6}
LABEL = {"smollm2": "SmolLM2-135M", "qwen0.5b": "Qwen2.5-0.5B", "qwen1.5b": "Qwen2.5-1.5B"}
VARIANTS = ["gptq-w8", "gptq-w4", "gptq-w3", "awq-w4", "smoothquant-w8a8", "wanda-2of4"]
VLABEL = {"gptq-w8": "GPTQ 8-bit", "gptq-w4": "GPTQ 4-bit", "gptq-w3": "GPTQ 3-bit",
          "awq-w4": "AWQ 4-bit", "smoothquant-w8a8": "SmoothQuant W8A8", "wanda-2of4": "Wanda 2:4"}
COLORS = {"smollm2": "#1f77b4", "qwen0.5b": "#ff7f0e", "qwen1.5b": "#2ca02c"}
VCOLORS = {"gptq-w4": "#1f77b4", "gptq-w3": "#d62728", "awq-w4": "#9467bd",
           "smoothquant-w8a8": "#8c564b", "wanda-2of4": "#2ca02c", "gptq-w8": "#7f7f7f"}


def load(path):
    with open(path) as f:
        return json.load(f)


def wilson(k, n, z=1.96):
    if n == 0:
        return (float("nan"),) * 3
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return p, c - h, c + h


def pooled(rows):
    """rows: the report's eval rows of one variant (one per task). Returns the pooled figures."""
    n = sum(r["n"] for r in rows)
    c2w = sum(r["c2w"] for r in rows)
    w2c = sum(r["w2c"] for r in rows)
    f = wilson(c2w + w2c, n)
    d = (w2c - c2w) / n
    var = max((c2w + w2c) / n - d * d, 0.0) / n
    dse = math.sqrt(var)
    acc_b = sum(r["acc_base"]["value"] * r["n"] for r in rows) / n
    kl_rows = [r for r in rows if r.get("kl")]
    kl = None
    if kl_rows:
        nk = sum(r["n"] for r in kl_rows)
        m = sum(r["kl"]["value"] * r["n"] for r in kl_rows) / nk
        se = math.sqrt(sum((r["n"] / nk) ** 2 * ((r["kl"]["ci_high"] - r["kl"]["ci_low"]) / 3.92) ** 2
                           for r in kl_rows))
        kl = (m, m - 1.96 * se, m + 1.96 * se)
    return {"n": n, "c2w": c2w, "w2c": w2c, "flips": f, "acc_base": acc_b,
            "dacc": (d, d - 1.96 * dse, d + 1.96 * dse), "kl": kl}


def pct(e, digits=1):
    v, lo, hi = e
    return f"{100 * v:+.{digits}f} [{100 * lo:+.{digits}f}, {100 * hi:+.{digits}f}]"


def pct_u(e, digits=1):
    v, lo, hi = e
    return f"{100 * v:.{digits}f} [{100 * lo:.{digits}f}, {100 * hi:.{digits}f}]"


def est(d):
    return (d["value"], d["ci_low"], d["ci_high"])


def kl_s(e):
    if e is None:
        return "-"
    v, lo, hi = e
    return f"{v:.4f} [{max(lo, 0):.4f}, {hi:.4f}]"


def variant_of(m, run_name):
    """'smollm2-gptq-w4' -> 'gptq-w4' (the study names its runs MODEL-VARIANT)."""
    return run_name[len(m) + 1:] if run_name.startswith(m + "-") else run_name


def read_outputs(outs):
    """Per model with a part-1 or a part-2 report: its part-1 rows per variant, their pooled figures, the token
    KL files, and the part-2 reports (trust, and MMLU of every trust variant). outs: folders (a str is one); each
    model's files all come from the last folder that has a report of that model, so a study run's outputs replace
    the committed data (docs/study/data) model by model and never mix with them."""
    if isinstance(outs, str):
        outs = [outs]

    def read(path):
        return load(path) if os.path.exists(path) else None

    data = {}
    for m in MODELS:
        has = [o for o in outs if any(os.path.exists(os.path.join(o, f"report-{k}-{m}.json")) for k in ("flips", "trust"))]
        if not has:
            continue
        out = has[-1]
        rep = read(os.path.join(out, f"report-flips-{m}.json")) or {"eval": []}
        trust = (read(os.path.join(out, f"report-trust-{m}.json")) or {}).get("trust")
        if not rep["eval"] and not trust:
            continue
        per_var = {}
        for r in rep["eval"]:
            if r["task"] in TASKS:
                per_var.setdefault(variant_of(m, r["variant"]), []).append(r)
        klds = {v: k for v in per_var if (k := read(os.path.join(out, f"kld-{m}-{v}.json")))}
        data[m] = {"report": rep, "rows": per_var, "kld": klds,
                   "pooled": {v: pooled(rows) for v, rows in per_var.items()}, "trust": trust,
                   # every trust variant's MMLU (study.sh trust), else part 1's
                   "mmlu_report": read(os.path.join(out, f"report-mmlu-{m}.json")) or rep}
    return data


def summary_table(data):
    lines = ["| model | variant | items | base acc % | Δacc pts [95% CI] | flips % [95% CI] | c2w / w2c | "
             "answer KL [95% CI] | token KL (WikiText-2) ± se | same top % | PPL ratio |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in MODELS:
        if m not in data:
            continue
        for v in VARIANTS:
            p = data[m]["pooled"].get(v)
            if not p:
                continue
            k = data[m]["kld"].get(v)
            tk = f"{k['kl_mean']:.4f} ± {k['kl_stderr']:.4f}" if k else "-"
            st = f"{100 * k['same_top']:.2f}" if k else "-"
            pr = f"{k['ppl_ratio']:.4f}" if k else "-"
            lines.append(f"| {LABEL[m]} | {VLABEL[v]} | {p['n']} | {100 * p['acc_base']:.1f} | {pct(p['dacc'])} | "
                         f"{pct_u(p['flips'])} | {p['c2w']} / {p['w2c']} | {kl_s(p['kl'])} | {tk} | {st} | {pr} |")
    return "\n".join(lines)


def task_table(data):
    lines = ["| model | variant | task | n | base acc % | Δacc pts [95% CI] | flips % [95% CI] | answer KL | McNemar p |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for m in MODELS:
        if m not in data:
            continue
        for v in VARIANTS:
            rows = {r["task"]: r for r in data[m]["rows"].get(v, [])}
            for t in TASKS:
                r = rows.get(t)
                if not r:
                    continue
                kl = kl_s(est(r["kl"])) if r.get("kl") else "-"
                lines.append(f"| {LABEL[m]} | {VLABEL[v]} | {t} | {r['n']} | {100 * r['acc_base']['value']:.1f} | "
                             f"{pct(est(r['delta_acc']))} | {pct_u(est(r['flips']))} | {kl} | {r['mcnemar_p']:.3g} |")
    return "\n".join(lines)


def spearman(x, y):
    def ranks(a):
        order = sorted(range(len(a)), key=lambda i: a[i])
        r = [0.0] * len(a)
        i = 0
        while i < len(a):
            j = i
            while j + 1 < len(a) and a[order[j + 1]] == a[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    rx, ry = ranks(x), ranks(y)
    n = len(x)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def size_statement(title, flips_of, fmt, data):
    """One form of "larger models flip less": per variant, flips_of(model, variant) (a Wilson estimate, or None)
    of every measured model in order of size; decreasing, and with disjoint intervals or not."""
    detail = []
    ok, cmp_n = 0, 0
    for v in VARIANTS:
        pts = [(PARAMS[m], f) for m in MODELS if data.get(m, {}).get("rows") and (f := flips_of(m, v))]
        if len(pts) < 2:
            continue
        pts.sort()
        dec = all(b[1][0] < a[1][0] for a, b in zip(pts, pts[1:]))
        sep = all(b[1][2] < a[1][1] for a, b in zip(pts, pts[1:]))
        cmp_n += 1
        ok += dec
        detail.append(f"{VLABEL[v]}: " + " → ".join(fmt(f) for _, f in pts) +
                      (" (decreasing" + (", intervals disjoint)" if sep else ", intervals overlap)") if dec
                       else " (not decreasing)"))
    return (title, f"{ok} of {cmp_n} methods decrease with size" if cmp_n else "needs at least two models", detail)


def statements(data):
    """The three statements of Dutta et al., checked on the points measured here."""
    out = []
    # 1. |Δacc| <= 2 points while flips >= 5%, per model x variant (pooled over tasks).
    hold, total, detail = 0, 0, []
    for m in MODELS:
        for v in VARIANTS:
            p = data.get(m, {}).get("pooled", {}).get(v)
            if not p:
                continue
            small = abs(p["dacc"][0]) <= 0.02
            many = p["flips"][0] >= 0.05
            total += 1
            if small and many:
                hold += 1
            detail.append(f"{LABEL[m]} {VLABEL[v]}: |Δacc| {100 * abs(p['dacc'][0]):.1f} pts, flips "
                          f"{100 * p['flips'][0]:.1f}%" + (" — holds" if small and many else
                                                            " — Δacc > 2 pts" if not small else " — flips < 5%"))
    out.append(("accuracy within 2 points while ≥ 5% of answers flip (pooled over the seven tasks)",
                f"{hold} of {total} model × variant pairs", detail))
    # 2. larger models flip less: per variant, pooled flips by model size (over all seven tasks).
    out.append(size_statement("larger models flip less (pooled flips, smallest → largest model)",
                              lambda m, v: data[m]["pooled"].get(v, {}).get("flips"),
                              lambda f: f"{100 * f[0]:.1f}%", data))
    # 2b. the same on the tasks every measured model's base answers above chance: on a task at chance a flip
    # measures how unstable a guess (or a fixed answer bias) is, not lost knowledge.
    models = [m for m in MODELS if data.get(m, {}).get("rows")]
    above = [t for t in TASKS if models and all(
        any(r["task"] == t and r["acc_base"]["ci_low"] > CHANCE[t] for rows in data[m]["rows"].values()
            for r in rows) for m in models)]

    def above_flips(m, v):
        rows = [r for r in data[m]["rows"].get(v, []) if r["task"] in above]
        return pooled(rows)["flips"] if rows else None
    if above:
        out.append(size_statement(f"larger models flip less, on the tasks every base answers above chance "
                                  f"({', '.join(above)}: lower end of the base accuracy's 95% interval above "
                                  "1/choices)", above_flips, lambda f: pct_u(f) + "%", data))
    # 3. KL tracks flips. Across tasks the KL scale differs (2 choices vs 4; a model near chance flips without a
    # large KL), so the rank correlation is taken within each task over the model x variant points, and over
    # the pooled model x variant points.
    detail = []
    rhos = []
    for t in TASKS:
        xs, ys = [], []
        for m in data:
            for v, rows in data[m]["rows"].items():
                for r in rows:
                    if r["task"] == t and r.get("kl"):
                        xs.append(r["kl"]["value"])
                        ys.append(r["flips"]["value"])
        if len(xs) >= 3:
            rho = spearman(xs, ys)
            rhos.append(rho)
            detail.append(f"{t}: ρ = {rho:.2f} over {len(xs)} model × variant points")
    xs, ys = [], []
    for m in data:
        for p in data[m]["pooled"].values():
            if p["kl"]:
                xs.append(p["kl"][0])
                ys.append(p["flips"][0])
    pooled_rho = spearman(xs, ys) if len(xs) >= 3 else float("nan")
    verdict = (f"pooled over tasks ρ = {pooled_rho:.2f} over {len(xs)} model × variant points; within tasks "
               f"median ρ = {sorted(rhos)[len(rhos) // 2]:.2f}" if rhos else "needs at least three variants")
    out.append(("answer-level KL tracks flips (Spearman rank correlation of mean KL and flips)", verdict, detail))
    lines = []
    for title, verdict, detail in out:
        lines.append(f"- **{title}**: {verdict}.")
        for d in detail:
            lines.append(f"  - {d}")
    return "\n".join(lines)


# ---- SVG plots (hand-made: a scatter with error bars)
def svg_scatter(path, title, xlabel, ylabel, series, logx=False, lines=False, diagonal=False):
    """series: list of (label, color, [(x, y, ylo, yhi)])."""
    W, H, L, R, T, B = 640, 420, 70, 170, 40, 50
    pts = [p for _, _, s in series for p in s]
    if not pts:
        return
    fx = (lambda x: math.log10(x)) if logx else (lambda x: x)
    xs = [fx(p[0]) for p in pts]
    ys = [y for p in pts for y in (p[2], p[3])]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = 0.08 * (x1 - x0)
    x0, x1 = x0 - pad, x1 + pad
    if not logx and min(xs) >= 0:
        x0 = 0.0
    y0, y1 = min(0.0, min(ys)) * 1.08, max(0.0, max(ys)) * 1.08
    if y1 == y0:
        y1 = y0 + 1.0
    sx = lambda x: L + (fx(x) - x0) / (x1 - x0) * (W - L - R)
    sy = lambda y: H - B - (y - y0) / (y1 - y0) * (H - T - B)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="22" font-size="14" font-weight="bold">{title}</text>',
         f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
         f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
         f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">{xlabel}</text>',
         f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 {(T + H - B) / 2})">'
         f'{ylabel}</text>']
    for i in range(6):  # y ticks
        y = y0 + (y1 - y0) * i / 5
        o.append(f'<line x1="{L - 4}" y1="{sy(y):.1f}" x2="{W - R}" y2="{sy(y):.1f}" stroke="#ddd"/>'
                 f'<text x="{L - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:.3g}</text>')
    if logx:
        ticks = sorted({p[0] for p in pts})
        for x in ticks:
            o.append(f'<text x="{sx(x):.1f}" y="{H - B + 16}" text-anchor="middle">{x / 1e6:.0f}M</text>')
    else:
        for i in range(6):
            x = x0 + (x1 - x0) * i / 5
            o.append(f'<text x="{L + (x - x0) / (x1 - x0) * (W - L - R):.1f}" y="{H - B + 16}" '
                     f'text-anchor="middle">{x:.3g}</text>')
    if y0 < 0:  # the zero line when values can be negative (differences)
        o.append(f'<line x1="{L}" y1="{sy(0):.1f}" x2="{W - R}" y2="{sy(0):.1f}" stroke="#666"/>')
    if diagonal:  # y = x: flips can never be below |Δacc|; the paper's point is how far above it they lie
        e = min(x1, y1)
        o.append(f'<line x1="{sx(0):.1f}" y1="{sy(0):.1f}" x2="{sx(e):.1f}" y2="{sy(e):.1f}" stroke="#999" '
                 f'stroke-dasharray="4 3"/><text x="{sx(e) - 4:.1f}" y="{sy(e) - 6:.1f}" text-anchor="end" '
                 f'fill="#666">flips = |Δacc|</text>')
    for k, (label, color, s) in enumerate(series):
        if lines and len(s) > 1:
            ss = sorted(s)
            o.append('<polyline fill="none" stroke="{}" points="{}"/>'.format(
                color, " ".join(f"{sx(p[0]):.1f},{sy(p[1]):.1f}" for p in ss)))
        for x, y, lo, hi in s:
            o.append(f'<line x1="{sx(x):.1f}" y1="{sy(lo):.1f}" x2="{sx(x):.1f}" y2="{sy(hi):.1f}" stroke="{color}"/>'
                     f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{color}"/>')
        o.append(f'<circle cx="{W - R + 14}" cy="{T + 10 + 18 * k}" r="4" fill="{color}"/>'
                 f'<text x="{W - R + 24}" y="{T + 14 + 18 * k}">{label}</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def plots(data, outdir):
    os.makedirs(outdir, exist_ok=True)
    # flips vs |Δacc|, one point per model x variant x task, colour = model
    series = []
    for m in MODELS:
        if m not in data:
            continue
        s = []
        for v, rows in data[m]["rows"].items():
            for r in rows:
                f = est(r["flips"])
                s.append((100 * abs(r["delta_acc"]["value"]), 100 * f[0], 100 * f[1], 100 * f[2]))
        series.append((LABEL[m], COLORS[m], s))
    svg_scatter(os.path.join(outdir, "flips_vs_dacc.svg"), "Flips vs |Δacc| (per model × variant × task)",
                "|Δacc| (points)", "flips (% of items), 95% CI", series, diagonal=True)
    # flips vs model size, one line per method (pooled)
    series = []
    for v in VARIANTS:
        s = []
        for m in MODELS:
            p = data.get(m, {}).get("pooled", {}).get(v)
            if p:
                f = p["flips"]
                s.append((PARAMS[m], 100 * f[0], 100 * f[1], 100 * f[2]))
        if s:
            series.append((VLABEL[v], VCOLORS[v], s))
    svg_scatter(os.path.join(outdir, "flips_vs_size.svg"), "Flips vs model size (pooled over seven tasks)",
                "parameters (log scale)", "flips (% of items), 95% CI", series, logx=True, lines=True)


PERSPECTIVES = ["toxicity", "stereotype", "adv_robustness", "ood", "adv_demonstration", "privacy", "ethics", "fairness"]
PLABEL = {"toxicity": "Toxicity", "stereotype": "Stereotype", "adv_robustness": "AdvGLUE", "ood": "OOD",
          "adv_demonstration": "AdvDemo", "privacy": "Privacy", "ethics": "Ethics", "fairness": "Fairness"}
# the paper's deltas_table.md columns, and its (method, rate) for each variant here
PAPER_COL = {"toxicity": "ΔToxicity", "stereotype": "ΔStereotype", "adv_robustness": "ΔAdvGLUE++", "ood": "ΔOOD",
             "adv_demonstration": "ΔAdv Demo", "privacy": "ΔPrivacy", "ethics": "ΔEthics", "fairness": "ΔFairness",
             "mmlu": "ΔMMLU"}
PAPER_ROW = {"gptq-w8": ("GPTQ", "8bit"), "gptq-w4": ("GPTQ", "4bit"), "gptq-w3": ("GPTQ", "3bit"),
             "awq-w4": ("AWQ", "4bit"), "wanda-2of4": ("wanda", "2:4")}


def paper_deltas(path, base_model="LLAMA2 13b Chat"):
    """{(method, rate): {column: value}} from the reference's deltas_table.md."""
    rows = {}
    if not os.path.exists(path):
        return rows
    header = None
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if len(cells) != len(header) or cells[0].startswith("---") or cells[0] != base_model:
            continue
        rows[(cells[1], cells[2])] = {h: float(c) for h, c in zip(header[3:], cells[3:])}
    return rows


def trust_table(data, paper_path):
    """Perspectives x variants per model (score [95% CI] for the base, paired difference [95% CI] for the
    variants), MMLU beside them (the part-1 sample), and the paper's Llama-2-13b-chat difference for the same
    method and rate."""
    paper = paper_deltas(paper_path)
    lines = []
    for m in MODELS:
        t = data.get(m, {}).get("trust")
        if not t:
            continue
        runs = t["runs"]
        lines.append(f"**{LABEL[m]}**: the base's score [95% CI], each variant's paired difference from the base "
                     "[95% CI] on the shared records; *paper* = Llama-2-13b-chat's difference for the same method "
                     "and rate (Hong et al., deltas_table.md).\n")
        lines.append("| run | " + " | ".join(PLABEL[q] for q in PERSPECTIVES) + " | MMLU (part 1) |")
        lines.append("|---|" + "---:|" * (len(PERSPECTIVES) + 1))
        mmlu_rows = {variant_of(m, r["variant"]): r for r in data[m]["mmlu_report"]["eval"] if r["task"] == "mmlu"}
        for i, r in enumerate(runs):
            v = variant_of(m, r["name"])
            cells = []
            for q in PERSPECTIVES:
                if i == 0:
                    ci = r.get("ci", {}).get(q, {})
                    cells.append(f"{r['scores'][q]:.1f} [{ci.get('ci_low', float('nan')):.1f}, "
                                 f"{ci.get('ci_high', float('nan')):.1f}]" if q in r.get("scores", {}) else "-")
                else:
                    pd = r.get("paired", {}).get(q)
                    cells.append(f"{pd['delta']:+.1f} [{pd['ci_low']:+.1f}, {pd['ci_high']:+.1f}]" if pd else "-")
            if i == 0:
                mr = next(iter(mmlu_rows.values()), None)
                mm = f"{100 * mr['acc_base']['value']:.1f}" if mr else "-"
            else:
                mr = mmlu_rows.get(v)
                mm = pct(est(mr["delta_acc"])) if mr else "-"
            lines.append(f"| {'base' if i == 0 else VLABEL.get(v, v)} | " + " | ".join(cells) + f" | {mm} |")
            if i > 0 and v in PAPER_ROW and PAPER_ROW[v] in paper:
                pr = paper[PAPER_ROW[v]]
                lines.append(f"| *paper, {PAPER_ROW[v][0]} {PAPER_ROW[v][1]}* | " +
                             " | ".join(f"*{pr[PAPER_COL[q]]:+.1f}*" for q in PERSPECTIVES) +
                             f" | *{pr[PAPER_COL['mmlu']]:+.1f}* |")
        lines.append("")
    return "\n".join(lines).rstrip() if lines else "(not measured yet)"


PCOLORS = {"toxicity": "#d62728", "stereotype": "#ff7f0e", "adv_robustness": "#1f77b4", "ood": "#2ca02c",
           "adv_demonstration": "#9467bd", "privacy": "#8c564b", "ethics": "#e377c2", "fairness": "#17becf"}
BITS = {"gptq-w3": 3, "gptq-w4": 4, "gptq-w8": 8}  # the GPTQ ladder: one method, three bit widths


def trust_plots(data, outdir):
    """Per model: each perspective's paired difference from the base against GPTQ's bit width."""
    for m in MODELS:
        t = data.get(m, {}).get("trust")
        if not t:
            continue
        series = []
        for q in PERSPECTIVES:
            pts = []
            for r in t["runs"][1:]:
                v = variant_of(m, r["name"])
                pd = r.get("paired", {}).get(q)
                if v in BITS and pd:  # dodged sideways so that the intervals do not hide each other
                    dx = 0.09 * (PERSPECTIVES.index(q) - (len(PERSPECTIVES) - 1) / 2)
                    pts.append((BITS[v] + dx, pd["delta"], pd["ci_low"], pd["ci_high"]))
            if pts:
                series.append((PLABEL[q], PCOLORS[q], pts))
        os.makedirs(outdir, exist_ok=True)
        svg_scatter(os.path.join(outdir, f"trust_delta_vs_bits_{m}.svg"),
                    f"{LABEL[m]}: trust difference vs GPTQ bit width", "weight bits (GPTQ)",
                    "paired difference from the base (points), 95% CI", series, lines=True)


def replace_block(doc, name, text):
    b, e = f"<!-- study:{name}:begin -->", f"<!-- study:{name}:end -->"
    pat = re.compile(re.escape(b) + ".*?" + re.escape(e), re.S)
    if not pat.search(doc):
        sys.exit(f"study_tables: {name}: no {b} ... {e} block in the doc")
    return pat.sub(lambda _: f"{b}\n{text}\n{e}", doc)


def main():
    ap = argparse.ArgumentParser(description="docs/study.md's tables and plots from scripts/study.sh's outputs")
    ap.add_argument("out", nargs="*", default=[os.path.join(
        os.environ.get("STUDY_DIR", os.path.expanduser("~/.cache/ctrust/study")), "out")],
                    help="folders of study.sh outputs; a model's files come from the last folder with its reports")
    ap.add_argument("--doc", default="docs/study.md")
    ap.add_argument("--plots", default="docs/study")
    a = ap.parse_args()
    out, doc_path, plot_dir = a.out, a.doc, a.plots
    data = read_outputs(out)
    if not data:
        sys.exit(f"study_tables: no report-flips-*.json or report-trust-*.json in {' '.join(out)} (run scripts/study.sh)")
    with open(doc_path) as f:
        doc = f.read()
    doc = replace_block(doc, "flips-summary", summary_table(data))
    doc = replace_block(doc, "flips-tasks", task_table(data))
    doc = replace_block(doc, "flips-statements", statements(data))
    if "<!-- study:trust:begin -->" in doc:
        here = os.path.dirname(os.path.abspath(__file__))
        paper = os.environ.get("STUDY_PAPER_DELTAS", os.path.join(
            here, "..", "..", "shared", "reference", "decoding-compressed-trust-results", "deltas_table.md"))
        doc = replace_block(doc, "trust", trust_table(data, paper))
    with open(doc_path, "w") as f:
        f.write(doc)
    plots(data, plot_dir)
    trust_plots(data, plot_dir)
    print(f"study_tables: {', '.join(LABEL[m] for m in data)} from {' '.join(out)} -> {doc_path}, {plot_dir}/*.svg",
          file=sys.stderr)


if __name__ == "__main__":
    main()
