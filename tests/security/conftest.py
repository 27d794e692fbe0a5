"""Shared helpers of the security tests: a checked event loop and certificates.

``pki`` issues, from one throw-away CA, a certificate per member carrying its identity
(``pyraft.transport.tls.member_identity``), plus bad ones: from another CA, expired, and
without an identity.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
import time

import pytest
import trustme

from pyraft.testing.cluster import run_on_fresh_loop
from pyraft.transport.tls import member_identity

LOGGER = "pyraft.transport"


@pytest.fixture
def run():
    """``run(main)``: ``await main()`` on a fresh loop; fails on loop errors and leaked tasks."""

    def runner(main, timeout_s: float = 30.0):
        return run_on_fresh_loop(main, "asyncio", timeout_s)

    return runner


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    def lines(level: int = logging.WARNING) -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == LOGGER and r.levelno >= level]

    return lines


async def eventually(predicate, timeout_s: float = 10.0, interval_s: float = 0.01) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval_s)


@pytest.fixture(scope="session")
def pki():
    ca, other_ca = trustme.CA(), trustme.CA()
    now = datetime.datetime.now(datetime.timezone.utc)
    certs = {m: ca.issue_cert("127.0.0.1", member_identity(m)) for m in (1, 2, 3)}
    return {
        "ca": ca,
        "member": certs,
        "other_ca": other_ca.issue_cert("127.0.0.1", member_identity(3)),
        "expired": ca.issue_cert("127.0.0.1", member_identity(3),
                                 not_before=now - datetime.timedelta(days=2),
                                 not_after=now - datetime.timedelta(days=1)),
        "anonymous": ca.issue_cert("127.0.0.1", "member.raft.test"),
    }


def server_context(ca, cert) -> ssl.SSLContext:
    """Mutual TLS on the accepting side (as ``RaftCluster`` builds it from ``TlsConfig``)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(ca, cert=None) -> ssl.SSLContext:
    """The connecting side: members are addressed by IP, the CA (and identity) is trusted."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    context.check_hostname = False
    if cert is not None:
        cert.configure_cert(context)
    return context
