"""The source distribution (built once per session by the ``sdist`` fixture of this
directory's conftest): it carries what ``setup.py`` needs to compile the kernels (``.pyx``,
``.pxd``, ``include/*.h``), the typing files and the license, and its metadata says what the
project is. That it builds and installs is shown by ``test_wheel.py``, whose wheel is built
from this very sdist (what ``pip install --no-binary raftcore raftcore`` does).
Marked ``packaging``: ``pytest -m "not packaging"`` leaves it out.
"""

from __future__ import annotations

import re
import tarfile

import pytest

from tests.packaging.builds import (
    ROOT,
)

pytestmark = pytest.mark.packaging

def test_sdist_carries_the_sources_the_build_needs(sdist):
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for kernel in ("_clock", "_crc", "_framing", "_index", "_phi", "_wal"):
        assert f"src/raftcore/{kernel}.pyx" in names, kernel
        assert f"src/raftcore/{kernel}.pyi" in names, kernel
    for pxd in ("_clock", "_crc", "_framing", "_index", "_phi"):
        assert f"src/raftcore/{pxd}.pxd" in names, pxd
    headers = sorted(p.name for p in (ROOT / "src" / "raftcore" / "include").glob("*.h"))
    assert headers and all(f"src/raftcore/include/{h}" in names for h in headers), headers
    for required in ("setup.py", "pyproject.toml", "LICENSE", "PKG-INFO",
                     "src/raftcore/py.typed", "src/pyraft/py.typed",
                     "src/raftcore/_version.py", "tests/smoke/test_smoke.py",
                     "examples/embed.py"):
        assert required in names, required
    # every Python module of both packages
    for package in ("raftcore", "pyraft"):
        for path in (ROOT / "src" / package).rglob("*.py"):
            assert str(path.relative_to(ROOT)) in names, path


def test_sdist_metadata_names_the_license_and_version(sdist):
    import raftcore

    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/", 1)[0]
        member = archive.extractfile(f"{top}/PKG-INFO")
        assert member is not None
        info = member.read().decode()
    assert re.search(r"^License-Expression: Apache-2.0$", info, re.MULTILINE), info[:1500]
    assert re.search(r"^License-File: LICENSE$", info, re.MULTILINE), info[:1500]
    assert f"\nVersion: {raftcore.__version__}\n" in info
    assert "Classifier: Typing :: Typed" in info
    assert "Classifier: License ::" not in info  # SPDX string only, never both
    assert re.search(r"^Requires-Dist: aiohttp", info, re.MULTILINE)
    assert re.search(r'^Requires-Dist: tomli.*python_version < "3.11"', info, re.MULTILINE)
