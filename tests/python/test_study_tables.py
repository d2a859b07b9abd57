# scripts/study_tables.py (docs/study.md's tables and plots): its formulas on hand-computed cases, the paper's
# deltas as read from the reference, and docs/study.md being exactly what the script makes of docs/study/data.
import importlib.util
import math
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED

spec = importlib.util.spec_from_file_location("study_tables", ROOT / "scripts" / "study_tables.py")
st = importlib.util.module_from_spec(spec)
spec.loader.exec_module(st)


def test_wilson_interval_by_hand():
    # 5 of 10: centre (0.5 + 1.96^2/20) / (1 + 1.96^2/10) = 0.5; half-width
    # 1.96 * sqrt(0.25/10 + 1.96^2/400) / 1.38416 = 0.263411
    p, lo, hi = st.wilson(5, 10)
    assert p == 0.5
    assert lo == pytest.approx(0.236589, abs=1e-6)
    assert hi == pytest.approx(0.763411, abs=1e-6)


def test_pooled_figures_by_hand():
    rows = [
        {"n": 10, "c2w": 2, "w2c": 1, "acc_base": {"value": 0.5},
         "kl": {"value": 0.2, "ci_low": 0.1, "ci_high": 0.492}},  # width 0.392 -> se 0.1
        {"n": 30, "c2w": 0, "w2c": 3, "acc_base": {"value": 0.7},
         "kl": {"value": 0.4, "ci_low": 0.3, "ci_high": 0.496}},  # width 0.196 -> se 0.05
    ]
    p = st.pooled(rows)
    assert p["n"] == 40
    assert p["flips"][0] == pytest.approx(6 / 40)
    # Δacc = (w2c - c2w) / N = 2/40; var = (0.15 - 0.05^2) / 40 = 0.0036875
    half = 1.96 * math.sqrt(0.0036875)
    assert p["dacc"] == pytest.approx((0.05, 0.05 - half, 0.05 + half))
    assert p["acc_base"] == pytest.approx((10 * 0.5 + 30 * 0.7) / 40)
    # KL: item-weighted mean 0.35; se = sqrt((0.25 * 0.1)^2 + (0.75 * 0.05)^2)
    se = math.sqrt((0.25 * 0.1) ** 2 + (0.75 * 0.05) ** 2)
    assert p["kl"] == pytest.approx((0.35, 0.35 - 1.96 * se, 0.35 + 1.96 * se))


def test_spearman_by_hand():
    assert st.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ties share their mean rank: x ranks (0.5, 0.5, 2), y ranks (0, 1, 2) -> 1.5 / sqrt(1.5 * 2)
    assert st.spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(1.5 / math.sqrt(3.0))


def test_paper_deltas_read_from_the_reference():
    path = SHARED / "reference" / "decoding-compressed-trust-results" / "deltas_table.md"
    d = st.paper_deltas(str(path))
    # deltas_table.md: |LLAMA2 13b Chat|GPTQ|4bit|-1.5|-3.3|-4.7|-0.0|+13.8|+5.8|-3.7|-2.4|-3.3|+0.0|
    row = d[("GPTQ", "4bit")]
    assert row["ΔMMLU"] == -1.5 and row["ΔEthics"] == 13.8 and row["ΔToxicity"] == -3.7
    assert d[("wanda", "2:4")]["ΔToxicity"] == -31.7
    assert set(st.PAPER_ROW.values()) <= set(d)


def test_study_doc_is_what_the_script_makes_of_its_data(tmp_path):
    doc = tmp_path / "study.md"
    shutil.copy(ROOT / "docs" / "study.md", doc)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "study_tables.py"), str(ROOT / "docs" / "study" / "data"),
                    "--doc", str(doc), "--plots", str(tmp_path / "plots")], check=True)
    assert doc.read_text() == (ROOT / "docs" / "study.md").read_text()
    for name in ("flips_vs_dacc.svg", "flips_vs_size.svg"):
        assert (tmp_path / "plots" / name).read_text() == (ROOT / "docs" / "study" / name).read_text()


def test_size_statement_on_the_tasks_above_chance_by_hand():
    def row(task, n, c2w, w2c, acc, lo):
        return {"task": task, "n": n, "c2w": c2w, "w2c": w2c,
                "acc_base": {"value": acc, "ci_low": lo, "ci_high": acc + 0.05}}
    # piqa (chance 0.5) is above chance for both bases; boolq is not for the larger one, so only piqa counts:
    # small model 20/100 flips, large 5/100 -> decreasing with disjoint Wilson intervals.
    small = [row("piqa", 100, 10, 10, 0.7, 0.6), row("boolq", 100, 0, 0, 0.7, 0.6)]
    large = [row("piqa", 100, 3, 2, 0.8, 0.7), row("boolq", 100, 40, 40, 0.5, 0.45)]
    data = {m: {"rows": {"gptq-w4": rows}, "pooled": {"gptq-w4": st.pooled(rows)}}
            for m, rows in (("smollm2", small), ("qwen0.5b", large))}
    text = st.statements(data)
    line = [ln for ln in text.splitlines() if "above chance" in ln]
    assert len(line) == 1 and "(piqa:" in line[0] and "1 of 1 methods decrease" in line[0]
    assert "GPTQ 4-bit: 20.0 [" in text and "→ 5.0 [" in text and "intervals disjoint" in text
    # pooled over both tasks the larger model flips more (85/200 against 20/200): the first check says so
    assert "larger models flip less (pooled flips, smallest → largest model)**: 0 of 1" in text
