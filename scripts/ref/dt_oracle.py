#!/usr/bin/env python3
"""DecodingTrust's own scoring code as an oracle for ctrust's parsers and scores (machine ethics, fairness, OOD,
adversarial demonstrations).

Runs the scoring and parsing functions of the fork the "Decoding Compressed Trust" paper ran
(decoding-comp-trust/DecodingTrust @0cf3fc1, read in place from shared/reference/decodingtrust-code/, never
copied) on the answers of a stored ctrust trust run, plus hand-written tricky answers
(tests/data/trust/tricky_answers.json), and writes tests/golden/trust_<perspective>.json: per answer the fork's
label, and the fork's sub-scores over the stored answers. tests/test_trust_oracle.cpp feeds the same answers
through ctrust's parse and score functions and asserts equality.

What is stubbed (only to import the fork's modules): `dt.chat` (imports openai / helm / torch clients; the scoring
functions never call it) is replaced by an empty module with a dummy `Chat` class. Functions used:
  machine_ethics/calculate_score.py main()            (check_all_scenarios patched to True: cm_train.csv, hence the
                                                       few-shot file, is missing upstream)
  machine_ethics/test_machine_ethics.py load_dataset() (items, labels: checked against ctrust's prompts)
  fairness/score_calculation_script.py aggregate_current_scores()  (np.random.uniform patched to ctrust's
                                                       seeded coin for the item being parsed; the fork's is unseeded)
  ood/evaluation_ood.py load_prompts(), load_demonstrations(), evaluation(), aggregate_score()
  adv_demonstration/aggregate_score.py test(), counterfactual_score(), backdoor_score()
Per-answer labels come from running the same functions on one answer at a time (fairness: one answer plus three
fixed "yes"/"High" anchor answers, because the script needs >= 3 answered items; the answer's prediction is read
back from the accuracy and its answered flag from the rejection rate).

Needs: numpy, pandas, fairlearn (scripts/setup_ref.sh). Usage:
  python3 scripts/ref/dt_oracle.py --db trust.db --run NAME [--seed 0] [--out tests/golden]
"""
import argparse
import bz2
import contextlib
import io
import json
import os
import sqlite3
import sys
import tempfile
import types
from argparse import Namespace

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("CTRUST_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
FORK_SRC = os.path.join(SHARED, "reference/decodingtrust-code/decoding-comp-trust_DecodingTrust/src")
DATA = os.path.join(SHARED, "data/decodingtrust")
FORK = "decoding-comp-trust/DecodingTrust@0cf3fc1e77c2c38bae358c57ff2efad76b396c7e"

# ---- import the fork in place, with dt.chat stubbed ----
sys.path.insert(0, FORK_SRC)
_chat = types.ModuleType("dt.chat")


class _Chat:  # never called by the scoring functions
    pass


_chat.Chat = _Chat
sys.modules["dt.chat"] = _chat
import dt.perspectives.machine_ethics.calculate_score as me_score  # noqa: E402
import dt.perspectives.machine_ethics.test_machine_ethics as me_data  # noqa: E402
import dt.perspectives.fairness.score_calculation_script as fair_score  # noqa: E402
import dt.perspectives.ood.evaluation_ood as ood  # noqa: E402
import dt.perspectives.adv_demonstration.aggregate_score as adv  # noqa: E402


def read_text(path):
    """A shared data file, stored as NAME or NAME.bz2 (PROVENANCE-supplement.txt)."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    with bz2.open(path + ".bz2", "rt", encoding="utf-8") as f:
        return f.read()


def read_jsonl(path):
    return [json.loads(line) for line in read_text(path).splitlines() if line.strip()]


def quiet(fn, *a, **k):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*a, **k)


def response(text):
    return {"choices": [{"message": {"role": "assistant", "content": text}}]}


# ---- ctrust's coin (src/trust/p_fairness.cpp fairness_coin): splitmix64(seed ^ fnv1a(task + "#" + item_id)) & 1
M64 = (1 << 64) - 1


def fnv1a(s):
    h = 1469598103934665603
    for c in s.encode("utf-8"):
        h = ((h ^ c) * 1099511628211) & M64
    return h


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def ctrust_coin(seed, task, item_id):
    return bool(splitmix64((seed ^ fnv1a(task + "#" + item_id)) & M64) & 1)


# ======================================================================== machine ethics
ETHICS_JB = [f"commonsense/jailbreak{v}" for v in range(1, 6)]
ETHICS_EV = [f"commonsense/evasive{v}" for v in range(1, 6)]


def ethics_file(task):
    if task == "commonsense":
        return "few_shot_0_test_num0_jailbreak_0_evasive_0.json"
    kind, v = ("jailbreak", task[-1]) if "jailbreak" in task else ("evasive", task[-1])
    return f"few_shot_0_test_num200_jailbreak_{v if kind == 'jailbreak' else 0}_evasive_{v if kind == 'evasive' else 0}.json"


def ethics_dataset(task):
    """The fork's load_dataset (items in the fork's order), run in a folder whose ./data points at the shared data."""
    jb = int(task[-1]) if "jailbreak" in task else 0
    ev = int(task[-1]) if "evasive" in task else 0
    with tempfile.TemporaryDirectory() as d:
        # data/machine_ethics/ethics/commonsense/cm_test.csv from the shared data; cm_train.csv (missing upstream,
        # read by load_dataset only for few-shot demonstrations) is a one-row stub that the is_short filter drops.
        cs = os.path.join(d, "data/machine_ethics/ethics/commonsense")
        os.makedirs(cs)
        os.symlink(os.path.join(DATA, "machine_ethics/ethics/commonsense/cm_test.csv"), os.path.join(cs, "cm_test.csv"))
        with open(os.path.join(cs, "cm_train.csv"), "w") as f:
            f.write("label,input,is_short,edited\n0,stub,False,False\n")
        cwd = os.getcwd()
        os.chdir(d)
        try:
            return me_data.load_dataset("ethics_commonsense_short", 0 if task == "commonsense" else 200, 0, jb, ev)
        finally:
            os.chdir(cwd)


def ethics_run(groups, datasets):
    """calculate_score.main() on {task: [(item, output)]}; returns its result dict for ethics_commonsense_short."""
    with tempfile.TemporaryDirectory() as d:
        model_dir = os.path.join(d, "results/machine_ethics/generations/ethics_commonsense_short/ctrust")
        os.makedirs(model_dir)
        for task, recs in groups.items():
            cache = [[[{"role": "user", "content": datasets[task][i]["input"]}], response(out)] for i, out in recs]
            with open(os.path.join(model_dir, ethics_file(task)), "w") as f:
                json.dump(cache, f)
            with open(os.path.join(model_dir, "label_" + ethics_file(task)), "w") as f:
                json.dump([datasets[task][i]["label"] for i, _ in recs], f)
        cwd = os.getcwd()
        os.chdir(d)
        saved = me_score.check_all_scenarios
        me_score.check_all_scenarios = lambda names: True  # few-shot file cannot exist (cm_train.csv missing)
        try:
            quiet(me_score.main)
        finally:
            me_score.check_all_scenarios = saved
            os.chdir(cwd)
        with open(os.path.join(d, "results/machine_ethics/generations/scores.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if r["dataset"] == "ethics_commonsense_short"][0]


def ethics_labels(task, item, output, datasets):
    r = ethics_run({task: [(item, output)]}, datasets)
    if task == "commonsense":
        return {"valid": r["ref_zero"] == 0, "correct": r["acc_zero"] == 1}
    k = "jb" if "jailbreak" in task else "ev"
    return {"valid": r[f"avg_ref_{k}"] == 0, "false_positive": r[f"avg_fpr_{k}"] == 1}


def ethics(records, tricky, prompts):
    tasks = ["commonsense"] + ETHICS_JB + ETHICS_EV
    datasets = {t: ethics_dataset(t) for t in tasks}
    out = {"perspective": "ethics", "records": [], "tricky": []}
    groups = {}
    for r in records:
        ds = datasets[r["task"]]
        assert ds[r["item"]]["input"] in prompts[(r["task"], r["item_id"])], f"ethics item mismatch {r['task']} {r['item']}"
        out["records"].append({**r, "fork": ethics_labels(r["task"], r["item"], r["output"], datasets)})
        groups.setdefault(r["task"], []).append((r["item"], r["output"]))
    for r in tricky:
        out["tricky"].append({**r, "fork": ethics_labels(r["task"], r["item"], r["output"], datasets)})
    if groups:
        res = ethics_run(groups, datasets)
        out["subscores"] = {k: res[k] for k in ["acc_zero", "ref_zero", "avg_fpr_jb", "avg_ref_jb", "avg_fpr_ev",
                                                "avg_ref_ev", "agg_score", "ref_rate"] if k in res}
    return out


# ======================================================================== fairness
FAIR_FILES = {  # score_calculation_script.py outfile2sensiattr (setting -> prompt file, file the script reads)
    "zero_shot_br_0.0": "adult_0_200_test_base_rate_0.0", "zero_shot_br_0.5": "adult_0_200_test_base_rate_0.5",
    "zero_shot_br_1.0": "adult_0_200_test_base_rate_1.0", "few_shot_tr_br_0.0": "adult_32_200_train_base_rate_0.0",
    "few_shot_tr_br_0.5": "adult_32_200_train_base_rate_0.5", "few_shot_tr_br_1.0": "adult_32_200_train_base_rate_1.0",
    "few_shot_16_fair_demon": "adult_16_200_train_br_0.0_test_br_0.5",
    "few_shot_32_fair_demon": "adult_32_200_train_br_0.0_test_br_0.5", "crime_br_0.0": "crime_0_300_test_base_rate_0.0",
    "crime_br_0.5": "crime_0_300_test_base_rate_0.5", "crime_br_1.0": "crime_0_300_test_base_rate_1.0"}


def fair_sensitive_name(setting):
    """The file name the fork's score script loads as the sensitive attribute of a setting."""
    return os.path.basename(fair_score_map()[setting + ".json"])


def fair_score_map():
    """outfile2sensiattr as the fork builds it (read from its source by calling it with a probe data_dir)."""
    src = open(fair_score.__file__).read()
    start = src.index("outfile2sensiattr = {")
    end = src.index("}", src.index("'crime_br_1.0.json'")) + 1
    ns = {"os": os, "args": Namespace(fairness=Namespace(data_dir=""))}
    exec(src[start:end], ns)
    return ns["outfile2sensiattr"]


def fair_run(groups, seed, datasets):
    """aggregate_current_scores on {setting: [(item, item_id, output)]}; every setting must be present."""
    with tempfile.TemporaryDirectory() as d:
        data_dir = os.path.join(d, "data") + "/"
        os.makedirs(data_dir)
        res_dir = os.path.join(d, "res")
        os.makedirs(res_dir)
        ids = {}
        for setting, recs in groups.items():
            ds = datasets[setting]
            with open(os.path.join(res_dir, setting + ".json"), "w") as f:
                json.dump({"requests": [[] for _ in recs], "responses": [response(o) for _, _, o in recs],
                           "labels": [ds["items"][i]["label"] if i >= 0 else ds["anchor_label"] for i, _, _ in recs]}, f)
            sens = ds["sensitive"]
            np.save(os.path.join(data_dir, fair_sensitive_name(setting)),
                    np.array([sens[i] if i >= 0 else sens[0] for i, _, _ in recs]))
            ids[setting + ".json"] = [iid for _, iid, _ in recs]

        def coin(a=0.0, b=1.0, *rest, **kw):  # np.random.uniform(0, 1) inside aggregate_current_scores
            f = sys._getframe(1).f_locals
            setting = f["file"][:-5]
            return 1.0 if ctrust_coin(seed, setting, ids[f["file"]][f["i"]]) else 0.0

        saved = fair_score.np.random.uniform
        fair_score.np.random.uniform = coin
        try:
            quiet(fair_score.aggregate_current_scores,
                  Namespace(fairness=Namespace(data_dir=data_dir, out_file=os.path.join(res_dir, "x.json")),
                            model_config=Namespace(model="ctrust")))
        finally:
            fair_score.np.random.uniform = saved
        with open(os.path.join(res_dir, "final_scores.json")) as f:
            return json.load(f)


def fair_labels_batch(batch, seed, datasets):
    """Labels of answers [(setting, item, item_id, output)], at most one per setting, in one script run: each
    setting gets 3 anchors that are answered and correct ("yes" for a "yes" label / "High" for "High"), so the
    script computes (it needs >= 3 answered), plus its answer; the answer's correctness is read back from the
    accuracy (4 items) and whether it was answered from the rejection rate."""
    groups = {s: [(-1, f"anchor{k}", datasets[s]["anchor_answer"]) for k in range(3)] for s in FAIR_FILES}
    for setting, item, item_id, output in batch:
        groups[setting].append((item, item_id, output))
    res = fair_run(groups, seed, datasets)
    out = []
    for setting, item, item_id, output in batch:
        r = res[setting + ".json"]
        answered = round((1 - r["rejection rate"]) * 4) == 4
        correct = round(r["accuracy"] * 4) == 4
        y = datasets[setting]["y"][item]
        out.append({"answered": answered, "prediction": y if correct else 1 - y})
    return out


def fair_labels_all(recs, seed, datasets):
    """fair_labels_batch over a list of records, packing one answer per setting into each run."""
    labels = [None] * len(recs)
    pending = list(range(len(recs)))
    while pending:
        batch, used, rest = [], set(), []
        for k in pending:
            if recs[k]["task"] in used:
                rest.append(k)
            else:
                used.add(recs[k]["task"])
                batch.append(k)
        got = fair_labels_batch([(recs[k]["task"], recs[k]["item"], recs[k]["item_id"], recs[k]["output"]) for k in batch],
                                seed, datasets)
        for k, g in zip(batch, got):
            labels[k] = g
        pending = rest
    return labels


def fair_datasets():
    out = {}
    for setting, prompts in FAIR_FILES.items():
        crime = setting.startswith("crime")
        items = read_jsonl(os.path.join(DATA, "fairness/fairness_data", prompts + ".jsonl"))
        sens = np.load(os.path.join(DATA, "fairness/fairness_data", fair_sensitive_name(setting)))
        y = [(0 if ("high" in it["label"] or "High" in it["label"]) else 1) if crime else (1 if it["label"] == "yes" else 0)
             for it in items]
        out[setting] = {"items": items, "sensitive": sens, "y": y,
                        "anchor_label": "High" if crime else "yes", "anchor_answer": "High" if crime else "yes"}
    return out


def fairness(records, tricky, prompts, seed):
    datasets = fair_datasets()
    out = {"perspective": "fairness", "seed": seed, "records": [], "tricky": []}
    groups = {}
    for r in records:
        it = datasets[r["task"]]["items"][r["item"]]
        assert it["input"] in prompts[(r["task"], r["item_id"])], f"fairness item mismatch {r['task']} {r['item']}"
        groups.setdefault(r["task"], []).append((r["item"], r["item_id"], r["output"]))
    for part, recs in (("records", records), ("tricky", tricky)):
        for r, lab in zip(recs, fair_labels_all(recs, seed, datasets)):
            out[part].append({**r, "fork": lab})
    if groups and set(groups) == set(FAIR_FILES):
        res = fair_run(groups, seed, datasets)
        out["subscores"] = {
            "settings": {s: {k: res[s + ".json"][k] for k in ["accuracy", "demographic parity difference",
                                                              "equalized odds difference", "rejection rate"]}
                         for s in FAIR_FILES},
            **{k: res[k] for k in ["averaged accuracy", "averaged demographic parity difference",
                                   "averaged equalized odds difference", "rejection rate", "fairness score",
                                   "fairness score (new)"]}}
    return out


# ======================================================================== OOD
def ood_setup():
    """{task name: (args, dataset)} with the fork's load_prompts / load_demonstrations."""
    know = json.loads(read_text(os.path.join(DATA, "ood/knowledge.json")))
    style = json.loads(read_text(os.path.join(DATA, "ood/style.json")))
    tasks = {}
    for idk in (False, True):
        a = Namespace(task="knowledge", idk=idk, few_shot_num=0)
        tasks["qa_2023_idk" if idk else "qa_2023"] = (a, ood.load_prompts(a, "qa_2023", know))
    for s in ood.OOD_TASK["style"]:
        a = Namespace(task="style", idk=None, few_shot_num=0)
        tasks[s] = (a, ood.load_prompts(a, s, style))
    for target, demos in ood.OOD_DEMO["knowledge"].items():
        for demo in demos:
            for run in range(3):
                a = Namespace(task="knowledge", idk=False, few_shot_num=5)
                dm = ood.load_demonstrations(a, know, f"{demo}_{run}")
                tasks[f"{target}_{demo}_{run}"] = (a, ood.load_prompts(a, target, know, dm))
    for target, demos in ood.OOD_DEMO["style"].items():
        for demo in demos:
            for run in range(3):
                a = Namespace(task="style", idk=None, few_shot_num=8)
                dm = ood.load_demonstrations(a, style, f"{demo}_{run}")
                tasks[f"{target}_{demo}_{run}"] = (a, ood.load_prompts(a, target, style, dm))
    return tasks


def ood_eval(task, pairs, tasks):
    a, ds = tasks[task]
    return quiet(ood.evaluation, [ds[i] for i, _ in pairs], [[None, response(o)] for _, o in pairs], a)


def ood_labels(task, item, output, tasks):
    r = ood_eval(task, [(item, output)], tasks)
    lab = {"correct": r["acc"] == 100}
    if tasks[task][0].task == "knowledge":
        lab["abstain"] = r["rr"] == 100
    else:
        lab["no_answer"] = r["rr"] == 100
    return lab


def ood_part(records, tricky, prompts):
    tasks = ood_setup()
    out = {"perspective": "ood", "records": [], "tricky": []}
    groups = {}
    for r in records:
        ds = tasks[r["task"]][1]
        assert ds[r["item"]]["input"] in prompts[(r["task"], r["item_id"])], f"ood item mismatch {r['task']} {r['item']}"
        out["records"].append({**r, "fork": ood_labels(r["task"], r["item"], r["output"], tasks)})
        groups.setdefault(r["task"], []).append((r["item"], r["output"]))
    for r in tricky:
        out["tricky"].append({**r, "fork": ood_labels(r["task"], r["item"], r["output"], tasks)})
    if groups:
        all_results = {t: ood_eval(t, pairs, tasks) for t, pairs in groups.items()}
        with tempfile.TemporaryDirectory() as d:
            a = Namespace(ood=Namespace(result_file=os.path.join(d, "final_scores.json")))
            quiet(ood.aggregate_score, a, all_results)
            res = {}
            if os.path.exists(a.ood.result_file):
                with open(a.ood.result_file) as f:
                    res = json.load(f)
        out["subscores"] = {"tasks": {t: all_results[t] for t in groups}, "subscores": res.get("subscores"),
                            "rr": res.get("rr"), "score": res.get("score")}
    return out


# ======================================================================== adversarial demonstrations
def adv_dir(task):
    """records' task "counterfactual/snli_premise_cf/42" or "backdoor/experiment1/sst-2_..._asr/42" -> (dir, seed)."""
    d, seed = task.rsplit("/", 1)
    return d, int(seed)


def adv_labels(task, item, output, data):
    acc, ref = adv.test([[None, response(output)]], [data[task][item]])
    return {"correct": acc == 1, "refused": ref == 1}


def adv_part(records, tricky, prompts):
    data = {}
    for r in records + tricky:
        if r["task"] not in data:
            d, seed = adv_dir(r["task"])
            data[r["task"]] = read_jsonl(os.path.join(DATA, "adv_demonstration", d, f"{seed}.jsonl"))
    out = {"perspective": "adv_demonstration", "records": [], "tricky": []}
    groups = {}
    for r in records:
        assert data[r["task"]][r["item"]]["input"] in prompts[(r["task"], r["item_id"])], f"adv item mismatch {r['task']}"
        out["records"].append({**r, "fork": adv_labels(r["task"], r["item"], r["output"], data)})
        groups.setdefault(r["task"], []).append((r["item"], r["output"]))
    for r in tricky:
        out["tricky"].append({**r, "fork": adv_labels(r["task"], r["item"], r["output"], data)})
    if groups:
        with tempfile.TemporaryDirectory() as d:
            droot, croot = os.path.join(d, "data"), os.path.join(d, "results")
            for task, pairs in groups.items():
                sub, seed = adv_dir(task)
                os.makedirs(os.path.join(droot, sub), exist_ok=True)
                os.makedirs(os.path.join(croot, sub), exist_ok=True)
                with open(os.path.join(droot, sub, f"{seed}.jsonl"), "w") as f:
                    for i, _ in pairs:
                        f.write(json.dumps(data[task][i]) + "\n")
                with open(os.path.join(croot, sub, f"ctrust_{seed}.jsonl"), "w") as f:
                    json.dump({"requests": [[] for _ in pairs], "responses": [response(o) for _, o in pairs]}, f)
            cf = quiet(adv.counterfactual_score, "ctrust", droot, croot)
            bd = quiet(adv.backdoor_score, "ctrust", droot, croot)
            sets = {}
            for name in ("counterfactual", "backdoor"):
                p = os.path.join(croot, f"ctrust_{name}.json")
                if os.path.exists(p):
                    with open(p) as f:
                        sets.update({k: v for k, v in json.load(f).items() if "/" in k})
        out["subscores"] = {"counterfactual": cf, "backdoor": bd, "sets": sets}
    return out


# ======================================================================== main
def load_records(db, run):
    con = sqlite3.connect(db)
    row = con.execute("SELECT id FROM runs WHERE name = ? AND task = 'trust' ORDER BY id DESC LIMIT 1", (run,)).fetchone()
    if not row:
        sys.exit(f"dt_oracle: error: no trust run named '{run}' in {db}")
    out, prompts = {}, {}
    for item_id, extra in con.execute("SELECT item_id, extra FROM items WHERE run_id = ? ORDER BY rowid", (row[0],)):
        e = json.loads(extra)
        rec = {"task": e["task"], "item_id": item_id, "item": int(item_id.split("#")[0]), "output": e["output"]}
        out.setdefault(e["perspective"], []).append(rec)
        prompts[(e["task"], item_id)] = e["prompt"]
    return out, prompts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--seed", type=int, default=0, help="the run's --seed (fairness coin)")
    ap.add_argument("--tricky", default=os.path.join(ROOT, "tests/data/trust/tricky_answers.json"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/golden"))
    ap.add_argument("--perspectives", default="ethics,fairness,ood,adv_demonstration")
    args = ap.parse_args()
    recs, prompts = load_records(args.db, args.run)
    with open(args.tricky) as f:
        tricky = json.load(f)
    for p in args.perspectives.split(","):
        tr = [t for t in tricky if t["perspective"] == p]
        for t in tr:
            t.setdefault("item_id", str(t["item"]))
        rs = [{k: v for k, v in r.items()} for r in recs.get(p, [])]
        if p == "ethics":
            g = ethics(rs, tr, prompts)
        elif p == "fairness":
            g = fairness(rs, tr, prompts, args.seed)
        elif p == "ood":
            g = ood_part(rs, tr, prompts)
        elif p == "adv_demonstration":
            g = adv_part(rs, tr, prompts)
        else:
            sys.exit(f"dt_oracle: error: unknown perspective '{p}'")
        g = {"made_by": "scripts/ref/dt_oracle.py", "fork": FORK, "run": args.run, **g}
        path = os.path.join(args.out, f"trust_{p}.json")
        with open(path, "w") as f:
            json.dump(g, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print(f"{path}: {len(g['records'])} stored answers, {len(g['tricky'])} tricky answers")


if __name__ == "__main__":
    main()
