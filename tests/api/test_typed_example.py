"""The typed, documented embedding API: ``examples/embed.py`` passes ``mypy --strict``, runs
(three members on 127.0.0.1, writes, a read barrier, a restart from durable storage), and
is the very code the README shows; the public names are typed, not ``Any``, to mypy.

mypy checks the installed packages through their ``py.typed`` markers and ``.pyi`` stubs, as
a user's type checker would; it runs as a subprocess with its cache in a temporary directory
(one for the module's runs).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import raftcore
from pyraft.testing.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "embed.py"
README = ROOT / "README.md"
MYPY_TIMEOUT_S = 300
RUN_TIMEOUT_S = 180
#: the README quotes the example right after this line
README_MARKER = "<!-- the code of examples/embed.py, checked by tests/api/test_typed_example.py -->"


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for this module's mypy runs: the installed packages and the standard library
    are analysed once, not once per test."""
    return tmp_path_factory.mktemp("mypy_cache")


def mypy(arguments: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy", reason="mypy is in the test extra: pip install '.[test]'")
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache),
         "--no-error-summary", "--hide-error-context", *arguments],
        capture_output=True, text=True, timeout=MYPY_TIMEOUT_S, cwd=cwd, env=env, check=False)


def test_readme_quotes_the_example_verbatim():
    text = README.read_text(encoding="utf-8")
    assert README_MARKER in text, f"README.md lacks the line {README_MARKER!r}"
    after = text.split(README_MARKER, 1)[1]
    match = re.match(r"\s*```python\n(.*?)```\n", after, re.DOTALL)
    assert match, "the marker is not followed by a ```python block"
    assert match.group(1) == EXAMPLE.read_text(encoding="utf-8"), (
        "the README's embedding example and examples/embed.py differ: copy the file into "
        "the README block")


def test_example_passes_mypy_strict(tmp_path, mypy_cache):
    done = mypy(["--strict", str(EXAMPLE)], tmp_path, mypy_cache)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_mypy_strict_does_catch_a_mistake_against_the_api(tmp_path, mypy_cache):
    # the check above can fail: a wrong use of the typed API is an error
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "from pyraft import RaftCluster\n"
        "async def f(member: RaftCluster) -> str:\n"
        "    return await member.wait_for_leader(timeout=1.0)\n"
        "def g(member: RaftCluster) -> int:\n"
        "    return member.has_quorum + member.no_such_method()\n")
    done = mypy(["--strict", str(wrong)], tmp_path, mypy_cache)
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'Incompatible return value type (got "int", expected "str")' in done.stdout
    assert '"RaftCluster" has no attribute "no_such_method"' in done.stdout


REVEAL = {
    "RaftCluster": "-> pyraft.cluster.runtime.RaftCluster",
    "RaftCluster.from_config": "-> pyraft.cluster.runtime.RaftCluster",
    "RaftCluster.wait_for_leader": "typing.Coroutine[Any, Any, int]",
    "RaftCluster.ensure_consistency": "typing.Coroutine[Any, Any, None]",
    "RaftCluster.has_quorum": "def (self: pyraft.cluster.runtime.RaftCluster) -> bool",
    "NotLeaderError(1).leader_endpoint": "str | None",
    "raftcore.crc32c": "-> int",
    "raftcore.crc.crc32c": "-> int",
    "raftcore.framing.encode_entries": "-> raftcore._framing.EntryBatch",
    "raftcore.framing.FrameDecoder": "-> raftcore._framing.FrameDecoder",
    "raftcore.index.IndexTable": "-> raftcore._index.IndexTable",
    "raftcore.phi.PhiAccrualDetector": "-> raftcore._phi.PhiAccrualDetector",
    "raftcore.wal.WriteAheadLog": "-> raftcore._wal.WriteAheadLog",
    "raftcore.__version__": "str",
}


def test_public_names_are_typed_not_any(tmp_path, mypy_cache):
    probe = tmp_path / "probe.py"
    lines = ["import raftcore", "import raftcore.crc", "import raftcore.framing",
             "import raftcore.index", "import raftcore.phi", "import raftcore.wal",
             "from pyraft import RaftCluster", "from pyraft.errors import NotLeaderError"]
    first = len(lines) + 1
    lines += [f"reveal_type({expression})" for expression in REVEAL]
    probe.write_text("\n".join(lines) + "\n")
    done = mypy(["--strict", str(probe)], tmp_path, mypy_cache)
    revealed = {}
    for line in done.stdout.splitlines():
        match = re.match(r".*probe\.py:(\d+): note: Revealed type is \"(.*)\"$", line)
        if match:
            # mypy writes builtins with or without their module, depending on the place
            revealed[list(REVEAL)[int(match.group(1)) - first]] = match.group(2).replace(
                "builtins.", "")
    assert len(revealed) == len(REVEAL), done.stdout + done.stderr
    for expression, expected in REVEAL.items():
        assert revealed[expression] != "Any", f"{expression} is Any to mypy"
        assert expected in revealed[expression], (expression, revealed[expression])


@pytest.mark.parametrize("facade", ["crc", "framing", "index", "phi"])
def test_facade_stub_declares_what_the_facade_exports(facade):
    module = __import__(f"raftcore.{facade}", fromlist=["__all__"])
    stub = Path(raftcore.__file__).parent / f"{facade}.pyi"
    tree = ast.parse(stub.read_text())
    declared = {alias.asname or alias.name for node in tree.body
                if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert declared == set(module.__all__), (facade, declared ^ set(module.__all__))
    kernel = __import__(f"raftcore._{facade}", fromlist=["_"])
    assert all(hasattr(kernel, name) for name in declared), facade


def test_example_runs_three_members_with_a_restart(tmp_path):
    ports = [free_port() for _ in range(3)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(EXAMPLE), str(tmp_path / "data"),
                           *map(str, ports)], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, cwd=tmp_path, env=env, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    out = done.stdout.splitlines()
    assert re.fullmatch(r"member [123] leads", out[0]), out
    assert out[1:4] == ["alice: 100", "alice: 70", "refused: None"], out
    assert re.fullmatch(r"member \d: not the leader; the leader is member \d at "
                        r"127\.0\.0\.1:\d+", out[4]), out
    assert re.fullmatch(r"member \d reads alice: 70", out[5]), out
    assert re.fullmatch(r"member \d after its restart: \{'alice': 70, 'bob': 7\}", out[6]), out
    # the restarted member came back from its own log on disk
    restarted = out[6].split()[1]
    assert any((tmp_path / "data" / f"member-{restarted}").iterdir())
