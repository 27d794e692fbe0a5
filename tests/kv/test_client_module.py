"""The key-value client moved to ``pyraft.kv.client``; ``pyraft.client`` re-exports it.

Code and documents written before the move import ``pyraft.client``: every public name must
still be there and be the very same object (an ``except KVClientError`` written against the
old module must catch what the new one raises)."""

from __future__ import annotations

import pyraft.client as former
import pyraft.kv.client as client


def test_the_former_module_re_exports_every_public_name_of_the_client():
    assert sorted(former.__all__) == sorted(client.__all__)
    for name in client.__all__:
        assert getattr(former, name) is getattr(client, name), name


def test_an_error_of_the_client_is_caught_through_the_former_module():
    try:
        raise client.InvalidURLError("ftp://x is not a member URL")
    except former.KVClientError as error:
        assert isinstance(error, ValueError)
    else:  # pragma: no cover - the except clause above must catch it
        raise AssertionError("not caught through pyraft.client")
