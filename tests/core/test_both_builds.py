"""The core's own tests in the other build too.

The core ships compiled from its ``.py`` files (``pyraft._compiled``); the default run uses
the compiled build, so the interaction scripts (``testdata/*.txt``) and the other cheap core
tests run here a second time in a subprocess under ``PYRAFT_PURE_CORE=1`` (or, when this
process runs pure, in the compiled build): both builds must render every script alike and
pass every test. ``test_scenarios.py`` is left out (more than ten seconds); the simulator's
differential test (``tests/sim/test_differential.py``) covers both builds at larger scale.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyraft.core.raft
from pyraft import _compiled

HERE = Path(__file__).parent
#: the core tests run in both builds (everything in tests/core but these)
LEFT_OUT = {"test_scenarios.py", Path(__file__).name}

CHILD = """
import sys
import pytest
import pyraft.core.raft
from pyraft import _compiled
print("build:", "compiled" if _compiled.is_compiled(pyraft.core.raft) else "pure", flush=True)
sys.exit(pytest.main(sys.argv[1:]))
"""


def _other_build() -> tuple[dict[str, str], str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYRAFT_PURE_CORE", "PYRAFT_NO_EXTENSIONS")}
    if _compiled.is_compiled(pyraft.core.raft):
        env["PYRAFT_PURE_CORE"] = "1"
        return env, "pure"
    return env, "compiled"


def test_core_tests_pass_in_the_other_build():
    files = sorted(str(p) for p in HERE.glob("test_*.py") if p.name not in LEFT_OUT)
    assert any(f.endswith("test_interaction.py") for f in files)
    env, build = _other_build()
    process = subprocess.run(
        [sys.executable, "-c", CHILD, "-q", "-p", "no:cacheprovider", "-n", "0", *files],
        capture_output=True, text=True, timeout=600, env=env,
        cwd=HERE.parent.parent,
    )
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-6000:]
    assert output.startswith(f"build: {build}\n"), output[:500]
    summary = output.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 100, summary
    assert not re.search(r"failed|error|skipped|xfail", summary), summary
