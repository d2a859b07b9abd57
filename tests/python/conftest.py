# Paths and the CLI for the tests of the Python module (docs/python.md). CTest runs them with PYTHONPATH = build/python
# and CTRUST_BIN = the CLI of the same build tree (CMakeLists.txt, test Python.pytest); by hand:
#   PYTHONPATH=build/python CTRUST_BIN=build/ctrust python3 -m pytest tests/python
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("CTRUST_SOURCE_DIR", Path(__file__).resolve().parents[2]))
SHARED = Path(os.environ.get("CTRUST_SHARED", ROOT.parent / "shared"))
CACHE = Path(os.environ.get("CTRUST_CACHE", Path.home() / ".cache" / "ctrust"))
GOLDEN = ROOT / "tests" / "golden"
STORIES = SHARED / "models" / "stories260K" / "stories260K-f32.gguf"
SMOLLM2_Q4_1 = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CLI = Path(os.environ.get("CTRUST_BIN", ROOT / "build" / "ctrust"))


def golden(name):
    with open(GOLDEN / name) as f:
        return json.load(f)


class Cli:
    """Runs the ctrust command-line program of the same build."""

    def run(self, *args, check=True):
        r = subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"ctrust {' '.join(map(str, args))}: exit {r.returncode}\n{r.stderr}")
        return r

    def json(self, *args):
        return json.loads(self.run(*args, "--json").stdout)


@pytest.fixture(scope="session")
def cli():
    if not CLI.exists():
        pytest.fail(f"the ctrust CLI is not at {CLI} (set CTRUST_BIN)")
    return Cli()


@pytest.fixture(scope="session")
def stories():
    import ctrust

    return ctrust.load(str(STORIES))


@pytest.fixture(scope="session")
def smollm2():
    if not SMOLLM2_Q4_1.exists():
        pytest.skip(f"no {SMOLLM2_Q4_1} (bash scripts/setup.sh fetches it)")
    import ctrust

    return ctrust.load(str(SMOLLM2_Q4_1))  # f32: dequantized at load, as the golden engine test
