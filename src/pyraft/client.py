"""The former home of the key-value client, kept so that code and earlier documents naming
``pyraft.client`` keep working: the client lives in :mod:`pyraft.kv.client`, beside the
key-value service it talks to. This module only re-exports its public names (the same
objects); new code imports ``pyraft.kv.client``."""

from pyraft.kv.client import (
    Backoff,
    InvalidURLError,
    KVClient,
    KVClientError,
    RequestError,
    SessionExpiredError,
    TlsError,
    UnavailableError,
)

__all__ = ["Backoff", "InvalidURLError", "KVClient", "KVClientError", "RequestError",
           "SessionExpiredError", "TlsError", "UnavailableError"]
