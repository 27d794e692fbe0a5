"""The profile-guided build (``RAFTCORE_PGO=1``, what the x86_64 Linux wheels are): setup.py
compiles every extension instrumented, runs ``python -m pyraft.bench.pgo`` over them, and
compiles them again with the counts it left. Built here at -O0 without debugging information
(about 4x faster to compile; the flags under test are the profile's)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from .builds import (
    BUILD_TIMEOUT_S,
    clean_environ,
    isolation_options,
    load_tool,
    require,
    run,
    why_no_index_answers,
)

pytestmark = [pytest.mark.packaging, pytest.mark.xdist_group("pgo")]


def _gcc() -> str | None:
    found = shutil.which("gcc")
    if not found:
        return None
    done = run([found, "--version"], 60, clean_environ())
    return found if "Free Software Foundation" in done.stdout else None


@pytest.mark.skipif(_gcc() is None, reason="GCC is not installed")
def test_a_profile_guided_build_trains_then_compiles_every_extension_with_its_profile(tmp_path):
    """Built as the README says (``RAFTCORE_PGO=1 python3 -m pip install ...`` in a fresh
    virtual environment): pip builds the wheel in its isolated build environment, where the
    training finds its imports (uvloop, msgpack) only through the PYTHONPATH pip sets (a
    training run that replaced it failed with ModuleNotFoundError in a fresh environment,
    which has none of them yet), through setup.py's non-in-place build (the packages copied
    to ``build/``, the training importing them from there); the wheel's contents are then
    run as installed. Without an index, with this interpreter's build requirements
    (``--no-build-isolation``), if it has them."""
    tree = load_tool().copy_source_tree(tmp_path)
    env = dict(clean_environ(), RAFTCORE_PGO="1", RAFTCORE_OPT="-O0", CFLAGS="-g0", CC=_gcc())
    offline = why_no_index_answers(sys.executable, env, tmp_path / "probe")
    if offline is None:  # a user's install: a fresh environment, pip's isolated build
        fresh = tmp_path / "fresh"
        require(run([sys.executable, "-m", "venv", fresh], 300, env), "python -m venv")
        python, isolation = str(fresh / "bin" / "python"), []
        assert run([python, "-c", "import uvloop"], 60, env).returncode != 0  # none of it yet
    elif isolation_options():  # the build requirements are here
        python, isolation = sys.executable, ["--no-build-isolation"]
    else:
        pytest.skip(offline)
    done = run([python, "-m", "pip", "wheel", "-v", "--no-deps", *isolation,
                "--wheel-dir", tmp_path / "dist", tree], BUILD_TIMEOUT_S, env, cwd=tmp_path)
    require(done, "RAFTCORE_PGO=1 pip wheel")
    log = done.stdout + done.stderr  # the compiler's command lines go to either
    (wheel,) = (tmp_path / "dist").glob("raftcore-*.whl")
    installed = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as archive:  # what pip install puts in site-packages
        archive.extractall(installed)
    extensions = len(load_tool().compiled_modules(tree / "src")) + len(load_tool().KERNELS)
    # each extension compiled twice: instrumented, then with the profile the training left
    assert len(re.findall(r"\s-fprofile-generate(\s|$)", log)) >= 2 * extensions, log[-3000:]
    assert len(re.findall(r"\s-fprofile-use\s", log)) == extensions, log[-3000:]
    # the training writes logs on I/O threads: counts updated atomically, and a count lost
    # anyway repaired rather than refused
    assert len(re.findall(r"\s-fprofile-update=prefer-atomic\s", log)) == extensions
    assert len(re.findall(r"\s-fprofile-correction\s", log)) == extensions
    trained = re.search(r"pyraft PGO training: (\d+) writes on 3 durable members, "
                        r"(\d+) simulator seeds", log)
    assert trained and int(trained.group(1)) > 10_000 and int(trained.group(2)) >= 100, log
    assert log.index("pyraft PGO training:") < log.index(" -fprofile-use ")
    assert f"{extensions} extensions built with the profile ({extensions} modules have " \
           "counts)" in log, log[-3000:]
    # what was built is the compiled build, and it works: a cluster commits on it
    check = ("import raftcore._framing as f, pyraft._compiled as c, pyraft.core.raft as r;"
             "print(f.IMPLEMENTATION, r.__file__.endswith('.so'))")
    used = dict(clean_environ(), PYTHONPATH=str(installed))
    assert require(run([sys.executable, "-c", check], 120, used, cwd=tmp_path),
                   "import").split() == ["compiled", "True"]
    facts = json.loads(require(run([sys.executable, "-m", "pyraft", "info", "--json"], 120,
                                   used, cwd=tmp_path), "pyraft info"))
    assert facts["profile_guided"] is True
    assert facts["build"] == "compiled, profile-guided (RAFTCORE_PGO)"
    again = require(run([sys.executable, "-m", "pyraft.bench.pgo", "--writes", "30",
                         "--seeds", "0:3"], 300, used, cwd=tmp_path), "a run of the build")
    assert re.search(r"\d+ writes on 3 durable members, 3 simulator seeds", again), again


@pytest.mark.parametrize("banner, said", [
    ("clang version 17.0.6\nTarget: x86_64",
     "RAFTCORE_PGO=1 needs GCC (the compiler here is 'clang version 17.0.6')"),
    ("gcc (GCC) 6.3.0\nCopyright (C) 2016 Free Software Foundation, Inc.",
     "RAFTCORE_PGO=1 needs GCC 7 or later (this is GCC 6)"),
], ids=["clang", "gcc-6"])
def test_a_profile_guided_build_refuses_a_compiler_it_cannot_use(tmp_path, banner, said):
    """clang writes its counts in another format (llvm-profdata merges them), and GCC before
    7 cannot update the training's counts atomically: asked for a profile-guided build with
    either, the build stops with what to do instead of a build without one."""
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\n" + "".join(f"echo '{line}'\n" for line in banner.split("\n")))
    fake.chmod(0o755)
    tree = load_tool().copy_source_tree(tmp_path)
    env = dict(clean_environ(), RAFTCORE_PGO="1", CC=str(fake))
    done = run([sys.executable, "setup.py", "build_ext", "--inplace"], 300, env, cwd=tree)
    assert done.returncode != 0
    assert said in done.stderr + done.stdout, done.stderr[-2000:]
    assert not list(Path(tree, "src").rglob("*.so")), "it built something"
    assert not os.path.exists(tree / "build")
