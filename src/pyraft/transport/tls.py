"""Member TLS in one place: the SSL contexts members talk through, and member identity.

- ``member_contexts(tls)``: the server and client ``ssl.SSLContext`` of a member, from its
  ``pyraft.config.TlsConfig``. Both present the member's certificate and trust ``ca_file``
  (the system's store when None); the server requires a client certificate when
  ``require_client_cert`` or ``member_identity`` (mutual TLS: an identity needs a
  certificate); the client does not match the server's certificate
  against the host it dialed (members are addressed by IP; the CA is what is trusted) and,
  with ``member_identity``, checks instead that it names the member dialed.
- Member identity (``TlsConfig.member_identity``): a certificate proves WHICH member its
  holder is by carrying the DNS subject alternative name ``member_identity(id)``
  (``member-<id>.pyraft``). ``identity_problem`` says why a connection's certificate does
  not prove a member id; the TCP transport refuses such connections during the handshake.

The HTTP API's HTTPS (``pyraft.kv.security``) is another concern: clients, not members.
"""

from __future__ import annotations

import asyncio
import ssl

from pyraft.config import TlsConfig

__all__ = [
    "MEMBER_IDENTITY_SUFFIX",
    "member_identity",
    "certificate_names",
    "identity_problem",
    "member_contexts",
]

#: suffix of the DNS name that binds a certificate to a member id (``member-<id>.pyraft``)
MEMBER_IDENTITY_SUFFIX = ".pyraft"


def member_identity(member_id: int) -> str:
    """The DNS subject alternative name a certificate carries to prove it is ``member_id``."""
    if not isinstance(member_id, int) or not 0 < member_id < 2**64:
        raise ValueError(f"member id {member_id!r} is not a positive 64-bit integer")
    return f"member-{member_id}{MEMBER_IDENTITY_SUFFIX}"


def certificate_names(peercert: object) -> frozenset[str]:
    """The DNS subject alternative names of a verified peer certificate (``getpeercert()``)."""
    if not isinstance(peercert, dict):
        return frozenset()
    return frozenset(
        str(value).lower() for kind, value in peercert.get("subjectAltName", ())
        if kind == "DNS"
    )


def identity_problem(transport: asyncio.BaseTransport | None, member_id: int) -> str | None:
    """Why the peer's certificate does not prove it is ``member_id``; None when it does."""
    peercert = None if transport is None else transport.get_extra_info("peercert")
    if not peercert:
        return "no verified certificate to prove the member's identity"
    if member_identity(member_id) not in certificate_names(peercert):
        names = sorted(certificate_names(peercert))[:4]
        return (f"the certificate does not name member {member_id} "
                f"({member_identity(member_id)}); it names {names}")
    return None


def member_contexts(tls: TlsConfig) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The (server, client) SSL contexts of a member configured with ``tls``.

    Reading the certificate, key or CA files may raise ``OSError`` or ``ssl.SSLError``.
    """
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls.ca_file)
    server.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.require_client_cert or tls.member_identity:
        # a member's identity is proven by its certificate: with member identity on, a
        # server cannot accept a member that presents none (it would refuse it at HELLO)
        server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    client.load_cert_chain(tls.cert_file, tls.key_file)
    client.check_hostname = False  # members are addressed by IP; the CA is what is trusted
    return server, client
