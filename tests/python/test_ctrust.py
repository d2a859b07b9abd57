# The Python module on real models and data (docs/python.md): logits against llama.cpp's golden files, tokens against
# the golden files and the CLI, an evaluate -> compare round trip through one results store shared with the CLI,
# compress, trust, report, errors, and the GIL. stories260K from ../shared; SmolLM2-135M skips when absent.
import json
import os
import signal
import sqlite3
import threading
import time

import numpy as np
import pytest

import ctrust
from conftest import STORIES, SMOLLM2_Q4_1, golden


def log_softmax(rows):
    rows = rows.astype(np.float64)
    mx = rows.max(axis=1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(rows - mx).sum(axis=1))
    return rows - lse[:, None], lse


def check_logits_golden(model, g, tol):
    """ctrust's logits against llama.cpp's (tests/golden/logits_*.json): the log-softmax at llama.cpp's top-10 ids,
    the next token's log-prob and the logsumexp, as GoldenEngine.* (tests/test_golden_engine.cpp)."""
    for key, t in g["texts"].items():
        tokens = t["tokens"]
        logits = model.logits(tokens)
        assert logits.shape == (len(tokens), model.n_vocab) and logits.dtype == np.float32
        lp, lse = log_softmax(logits)
        worst = 0.0
        for i, p in enumerate(t["positions"]):
            worst = max(worst, abs(lse[i] - p["lse"]))
            for tid, want in p["top"]:
                worst = max(worst, abs(lp[i, tid] - want))
            assert int(np.argmax(logits[i])) == p["top"][0][0], (key, i)
            if i + 1 < len(tokens):
                worst = max(worst, abs(lp[i, tokens[i + 1]] - p["next"]))
        print(f"[ golden ] {model.path} {key}: {len(tokens)} positions, max |dlogprob| {worst:.3g}")
        assert worst < tol, key


def test_logits_match_llama_cpp_stories260k(stories):
    check_logits_golden(stories, golden("logits_stories260k.json"), 1e-4)


def test_logits_match_llama_cpp_smollm2(smollm2):
    check_logits_golden(smollm2, golden("logits_smollm2.json"), 2e-4)


def test_tensor_is_the_loaded_weight(stories):
    # Model.tensor: a weight as the f32 compute mode holds it, [rows, cols] (a vector as one row); a missing name is an Error.
    cfg = stories.config
    w = stories.tensor("blk.0.attn_q.weight")
    assert w.dtype == np.float32 and w.shape == (cfg["n_heads"] * cfg["head_dim"], cfg["dim"])
    emb = stories.tensor("token_embd.weight")
    assert emb.shape == (cfg["n_vocab"], cfg["dim"])
    assert stories.tensor("blk.0.attn_norm.weight").shape == (1, cfg["dim"])
    with pytest.raises(ctrust.Error, match="missing tensor blk.99.attn_q.weight"):
        stories.tensor("blk.99.attn_q.weight")


def test_logits_native_mode_and_threads_agree(stories):
    # The native compute mode of an F32 file is the same arithmetic; the thread count changes nothing either.
    tokens = golden("logits_stories260k.json")["texts"]["english"]["tokens"][:40]
    native = ctrust.load(str(STORIES), compute="native")
    assert native.compute == "native"
    a = stories.logits(tokens)
    # A numpy array of ids is accepted as a list (same threads: the same bits).
    np.testing.assert_array_equal(stories.logits(np.array(tokens, dtype=np.int64)), a)
    np.testing.assert_allclose(native.logits(tokens), a, rtol=0, atol=1e-4)
    # Other thread counts: OpenBLAS's sgemm (the output head) may sum in another order, so within float error.
    try:
        for n in (2, 1):
            ctrust.set_threads(n)
            np.testing.assert_allclose(stories.logits(tokens), a, rtol=0, atol=1e-4)
    finally:
        ctrust.set_threads(1)


def check_tokens_golden(model, g):
    assert (model.n_vocab, model.bos, model.eos) == (g["n_vocab"], g["bos"], g["eos"])
    n = 0
    for c in g["cases"]:
        raw = bytes.fromhex(c["input"]["hex"])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue  # invalid UTF-8 inputs are the C++ tokenizer tests' (a Python str cannot hold them)
        assert model.tokenize(text, bos=False) == c["ids"], text
        assert model.tokenize(text, bos=True, special=True) == c["ids_bos_special"], text
        decoded = bytes.fromhex(c["decode"]["hex"]).decode("utf-8", errors="replace")
        assert model.detokenize(c["ids"]) == decoded, text
        n += 1
    assert n > 30


def test_tokenize_matches_llama_cpp_stories260k(stories):
    check_tokens_golden(stories, golden("tokens_stories260K.json"))


def test_tokenize_matches_llama_cpp_smollm2():
    if not SMOLLM2_Q4_1.exists():
        pytest.skip(f"no {SMOLLM2_Q4_1}")
    # Only the tokenizer is used: the native mode leaves the weights packed (a fast load).
    check_tokens_golden(ctrust.load(str(SMOLLM2_Q4_1), compute="native"), golden("tokens_smollm2.json"))


TEXTS = ["Once upon a time, there was a little cat.", "", "  two  spaces\nand a newline", "naïve café ☕ 日本",
         "<s> not special </s>"]


def test_tokenize_equals_cli(stories, cli):
    for text in TEXTS:
        with_bos = cli.json("tokenize", "-m", STORIES, text)["ids"]
        assert stories.tokenize(text) == with_bos, text
        no_bos = cli.json("tokenize", "-m", STORIES, text, "--no-bos")["ids"]
        assert stories.tokenize(text, bos=False) == no_bos, text
    assert stories.detokenize(stories.tokenize(TEXTS[0], bos=False)) == TEXTS[0]


def test_config_equals_cli_info(stories, cli):
    info = cli.json("info", STORIES)
    assert stories.config == info["config"]
    assert stories.config["n_vocab"] == 512 and stories.n_vocab == 512
    assert "stories260K" in repr(stories)


def test_evaluate_compress_compare_report_share_the_cli_store(stories, cli, tmp_path):
    db = str(tmp_path / "shared.db")
    # Python evaluates the base model; the CLI lists the run.
    base = ctrust.evaluate(stories, "arc_easy", limit=12, name="base", db=db, progress=False)
    (run,) = base["runs"]
    assert run["run"]["name"] == "base" and run["n_total"] == 12 and run["n_scored"] == 12
    listed = cli.json("runs", "--db", db)
    assert [r["name"] for r in listed["runs"]] == ["base"]
    assert listed == ctrust.runs(db)
    # Resuming: the same call again scores nothing.
    again = ctrust.evaluate(stories, ["arc_easy"], limit=12, name="base", db=db, progress=False)
    assert again["runs"][0]["n_skipped"] == 12 and again["runs"][0]["n_scored"] == 0
    assert again["runs"][0]["tasks"] == run["tasks"]

    # Python compresses; the CLI evaluates the variant; the recipe is in the file.
    out = str(tmp_path / "rtn4.gguf")
    rep = ctrust.compress(str(STORIES), out, method="rtn", bits=4, group=32, skip="ffn_down",
                          progress=False)
    assert rep == json.loads(json.dumps(rep))  # plain JSON types
    assert cli.json("info", out)["recipe"]["method"] == "rtn"
    cli.run("eval", "-m", out, "--tasks", "arc_easy", "--limit", "12", "--name", "rtn4", "--db", db)
    assert [r["name"] for r in ctrust.runs(db)["runs"]] == ["base", "rtn4"]

    # compare and report: the same data as the CLI's --json.
    cmp = ctrust.compare("base", "rtn4", db=db)
    assert cmp == cli.json("compare", "base", "rtn4", "--db", db)
    assert cmp["tasks"]["arc_easy"]["n"] == 12
    html = tmp_path / "report.html"
    tables = ctrust.report(["base", "rtn4"], db=db, output=str(html))
    assert tables == cli.json("report", "base", "rtn4", "--db", db)
    assert html.read_text().startswith("<!DOCTYPE html>")

    # A model given by path is loaded for the call (compute f32, as `ctrust eval`).
    by_path = ctrust.evaluate(out, "arc_easy", limit=12, name="rtn4", db=db, progress=False)
    assert by_path["runs"][0]["n_scored"] == 0  # the CLI's run, resumed: same model fingerprint and settings


def test_compress_recipe_dict_and_file_equal_keywords(tmp_path, cli):
    a, b = str(tmp_path / "a.gguf"), str(tmp_path / "b.gguf")
    ra = ctrust.compress(str(STORIES), a, {"method": "magnitude", "sparsity": 0.5}, progress=False)
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"method": "magnitude", "sparsity": 0.5}))
    rb = ctrust.compress(str(STORIES), b, str(recipe), progress=False)
    assert open(a, "rb").read() == open(b, "rb").read()
    assert ra["recipe"] == rb["recipe"]
    c = str(tmp_path / "c.gguf")
    cli.run("compress", "-m", STORIES, "--method", "magnitude", "--sparsity", "0.5", "-o", c)
    assert open(a, "rb").read() == open(c, "rb").read()


def test_trust_report_and_compare_equal_cli(cli, tmp_path):
    # One perspective whose data loads fast (ethics: 0.4 s per run here, fairness 1.7 s), few bootstrap resamples.
    db = str(tmp_path / "trust.db")
    # By path: loaded in trust's default compute mode (native), as the CLI does.
    r = ctrust.trust(str(STORIES), perspectives="ethics", limit=2, max_new_tokens=4, bootstrap=200, name="a", db=db,
                     progress=False)
    assert set(r["perspectives"]) == {"ethics"}
    cli.run("trust", "-m", STORIES, "--perspectives", "ethics", "--limit", "2", "--max-new-tokens", "4",
            "--bootstrap", "200", "--name", "b", "--db", db)
    # The CLI resumed nothing of Python's run "a" (another name) but generated the same answers: greedy, same model.
    assert ctrust.trust_report(["a", "b"], db=db, bootstrap=200) == cli.json("trust-report", "a", "b", "--db", db,
                                                                              "--bootstrap", "200")
    cmp = ctrust.compare("a", "b", db=db)
    assert cmp == cli.json("compare", "a", "b", "--db", db)
    assert cmp["flips"] == []


def test_errors_are_ctrust_error(stories, tmp_path):
    with pytest.raises(ctrust.Error, match="/nonexistent/model.gguf"):
        ctrust.load("/nonexistent/model.gguf")
    bad = tmp_path / "not_a_model.gguf"
    bad.write_text("not a model")
    with pytest.raises(ctrust.Error, match="not_a_model.gguf"):
        ctrust.load(str(bad))
    with pytest.raises(ctrust.Error, match="compute"):
        ctrust.load(str(STORIES), compute="f64")
    with pytest.raises(ctrust.Error, match="arc_eazy"):
        ctrust.evaluate(stories, "arc_easy,arc_eazy", db=str(tmp_path / "x.db"))
    with pytest.raises(ctrust.Error, match="/nonexistent-dir/x.db"):
        ctrust.evaluate(stories, "arc_easy", db="/nonexistent-dir/x.db")
    with pytest.raises(ctrust.Error, match="model not found"):
        ctrust.evaluate("/nonexistent/model.gguf", "arc_easy", db=str(tmp_path / "x.db"))
    with pytest.raises(ctrust.Error, match="bits"):
        ctrust.compress(str(STORIES), str(tmp_path / "y.gguf"), method="rtn", bits=99)
    with pytest.raises(ctrust.Error, match="no_such_key"):
        ctrust.compress(str(STORIES), str(tmp_path / "y.gguf"), method="rtn", no_such_key=1)
    with pytest.raises(ctrust.Error, match="folder /nonexistent-dir does not exist"):
        ctrust.compress(str(STORIES), "/nonexistent-dir/y.gguf", method="rtn")
    with pytest.raises(ctrust.Error):
        stories.logits([])
    with pytest.raises(ctrust.Error):
        stories.logits([1, 100000])  # out of the vocabulary
    with pytest.raises(ctrust.Error, match="nope"):
        ctrust.compare("nope", "nada", db=str(tmp_path / "x.db"))
    with pytest.raises(ctrust.Error, match="perspective"):
        ctrust.trust(stories, perspectives=["fairnes"], db=str(tmp_path / "x.db"))
    with pytest.raises(TypeError):
        stories.tokenize(42)
    # The module still works after every error.
    assert stories.tokenize("Hello world", bos=False) == [346, 306, 414, 263, 304, 341]


def test_long_calls_release_the_gil(stories, tmp_path):
    # Another connection holds the database's write lock, and evaluate (in a thread) waits for it (SQLite's busy
    # timeout is 10 s). This thread releases the lock after the call has started: that needs the GIL, so it happens
    # at once only if the waiting call released it; a call that kept the GIL would fail with "database is locked".
    db = str(tmp_path / "locked.db")
    ctrust.evaluate(stories, "arc_easy", limit=2, name="first", db=db, progress=False)  # creates the store
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    started, result = threading.Event(), {}

    def work():
        started.set()
        try:
            result["r"] = ctrust.evaluate(stories, "arc_easy", limit=2, name="second", db=db, progress=False)
        except Exception as e:  # noqa: BLE001 - reported below
            result["e"] = e

    t = threading.Thread(target=work)
    t.start()
    started.wait()
    time.sleep(0.5)  # not a threshold: the call has had time to reach the lock (if not, the test proves nothing)
    lock.execute("COMMIT")
    lock.close()
    t.join()
    assert "e" not in result, result.get("e")
    assert result["r"]["runs"][0]["n_scored"] == 2


class Stop(Exception):
    pass


def test_ctrl_c_stops_evaluate_at_its_next_commit(stories, tmp_path):
    # As Cli.CtrlCSaysWhatIsSavedAndTheSameCommandResumes: once the first item is stored, SIGINT; evaluate stops at its
    # next commit with the exception of Python's signal handler, keeping what it stored. The handler raises only while
    # the call runs (if the run had finished first, the test would prove nothing and says so).
    db = str(tmp_path / "sigint.db")
    state = {"in_call": True, "late": False}

    def handler(signum, frame):
        if state["in_call"]:
            raise Stop()
        state["late"] = True

    def watch():
        for _ in range(600):
            try:
                runs = ctrust.runs(db)["runs"] if os.path.exists(db) else []
            except ctrust.Error:  # the store is being created
                runs = []
            if runs and runs[0]["n_items"] > 0:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.1)

    old = signal.signal(signal.SIGINT, handler)
    try:
        t = threading.Thread(target=watch)
        t.start()
        finished = False
        try:
            ctrust.evaluate(stories, "hellaswag", limit=150, name="s", db=db, progress=False)
            finished = True
        except Stop:
            pass
        finally:
            state["in_call"] = False
            t.join()
    finally:
        signal.signal(signal.SIGINT, old)
    if finished:
        pytest.skip("the run finished before Ctrl-C arrived")
    (run,) = ctrust.runs(db)["runs"]
    assert 0 < run["n_items"] < 150
