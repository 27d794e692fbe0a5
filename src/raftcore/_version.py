"""The version of the distribution, written in this one place.

``raftcore.__version__`` and ``pyraft.__version__`` import it, and setuptools reads it for the
package metadata (``[tool.setuptools.dynamic]`` in pyproject.toml). It lives in ``raftcore``
because ``raftcore`` never imports ``pyraft``.
"""

__version__ = "0.1.0.dev0"
