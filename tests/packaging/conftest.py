"""The packaging tests' shared, slow fixture: the source distribution, built once."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.packaging.builds import (
    BUILD_TIMEOUT_S,
    ROOT,
    clean_environ,
    isolation_options,
    require,
    run,
    skip_unless_an_index_answers,
)


@pytest.fixture(scope="session")
def sdist(tmp_path_factory) -> Path:
    """The ``.tar.gz`` that ``python -m build --sdist`` makes of a copy of the checkout
    (skips, saying why, when pip reaches no package index); ``--no-isolation`` when this
    interpreter has the build requirements (``isolation_options``)."""
    base = tmp_path_factory.mktemp("sdist")
    env = clean_environ()
    skip_unless_an_index_answers(sys.executable, env, base / "probe")
    # build from a copy without generated files, so that nothing the checkout happens to hold
    # (compiled .c, .so, egg-info) can stand in for what the sdist lacks
    tree = base / "tree"
    ignore = shutil.ignore_patterns("*.c", "*.so", "*.egg-info", "__pycache__", "build",
                                    ".hypothesis", ".pytest_cache", ".mypy_cache")
    tree.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy2(ROOT / name, tree / name)
    for name in ("src", "examples", "tests/smoke"):
        shutil.copytree(ROOT / name, tree / name, ignore=ignore)
    shutil.copy2(ROOT / "tests" / "__init__.py", tree / "tests" / "__init__.py")
    require(run([sys.executable, "-m", "build", "--sdist", *isolation_options(), "--outdir",
                 base / "dist", tree], BUILD_TIMEOUT_S, env), "python -m build --sdist")
    built = sorted((base / "dist").glob("raftcore-*.tar.gz"))
    assert len(built) == 1, built
    return built[0]
