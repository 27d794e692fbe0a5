"""Who may use the key-value HTTP API: HTTPS, and the credential of administrative endpoints.

The model (``pyraft node``; the README's "Security and limits" says the same):

- ``--http-cert FILE --http-key FILE`` serve the API over HTTPS; ``--http-ca FILE`` also
  asks clients for a certificate and accepts the ones signed by that CA (a client without a
  certificate still connects; one with a certificate from another CA, or expired, is refused
  at the handshake).
- The data plane (``/v1/kv/...``, ``/v1/sessions``), ``/v1/status``, ``/livez`` and
  ``/readyz`` need no credential: whoever reaches the port may read and write keys, so put the
  API on a network only its clients reach, or behind HTTPS with a client CA.
- Administrative endpoints (membership: ``POST /v1/members``, ``DELETE /v1/members/{id}``)
  need a credential: a bearer token (``Authorization: Bearer TOKEN``) equal to the content of
  ``--admin-token-file``, or a client certificate verified against ``--http-ca``. No
  credential: ``401`` with ``WWW-Authenticate: Bearer``; a wrong one: ``403``; either way
  nothing changes. A member started with neither ``--admin-token-file`` nor ``--http-ca``
  refuses every administrative request (``403 admin_disabled``, naming the flags), unless it
  was started with ``--insecure-admin`` (anyone who reaches the port may then change the
  membership: for a throw-away cluster on a closed network only).
- A token file holds one line of printable ASCII without spaces (at most 4096 bytes; one
  trailing newline is ignored); an empty file, or a file that other users may read or write
  (mode ``o+r`` or ``o+w``: ``chmod 600`` it), is refused at start. The token is compared in
  constant time.
- ``--join URL`` presents the same credential to the member at ``URL``: the token, and over
  HTTPS ``--http-cert``/``--http-key`` as client certificate, the server's certificate being
  verified against ``--http-ca`` (or the system's trust store without it).

Client side: :func:`add_client_security_arguments` and :func:`client_security` give a client
command the same options, for ``KVClient(..., ssl=..., token=...)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import os
import secrets
import ssl
import stat
from ssl import SSLContext

from pyraft.errors import ConfigError

__all__ = [
    "TOKEN_BYTES_MAX",
    "AdminPolicy",
    "Denied",
    "ServerSecurity",
    "add_client_security_arguments",
    "add_server_arguments",
    "client_security",
    "client_ssl_context",
    "read_token_file",
    "server_options",
    "server_ssl_context",
    "write_token_file",
]

#: the largest token file accepted
TOKEN_BYTES_MAX = 4096


def read_token_file(path: str, flag: str = "--admin-token-file") -> str:
    """The token in ``path``: one line of printable ASCII without spaces (one trailing
    newline is dropped). ``ConfigError(flag, ...)`` names the file and what to do when it is
    missing, unreadable, empty, too large, not such a line, or open to other users."""
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError(flag, f"{path} is not a regular file")
            data = file.read(TOKEN_BYTES_MAX + 3)
    except OSError as error:
        raise ConfigError(flag, f"cannot read {path}: {error.strerror or error}") from None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise ConfigError(flag, f"{path} is readable or writable by other users: "
                                f"chmod 600 {path}")
    for ending in (b"\r\n", b"\n"):
        if data.endswith(ending):
            data = data[:-len(ending)]
            break
    if not data:
        raise ConfigError(flag, f"{path} is empty: write the token in it")
    if len(data) > TOKEN_BYTES_MAX:
        raise ConfigError(flag, f"{path} holds more than {TOKEN_BYTES_MAX} bytes")
    if any(byte < 0x21 or byte > 0x7E for byte in data):
        raise ConfigError(flag, f"{path} must hold one line of printable ASCII without "
                                "spaces (the token)")
    return data.decode("ascii")


def write_token_file(path: str) -> str:
    """Write a new random token to ``path`` (created with mode 600; it must not exist);
    returns ``path``. For throw-away clusters (the playground, tests)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(32) + "\n")
    return path


def check_readable(flag: str, path: str) -> None:
    """``ConfigError`` naming ``flag`` and ``path`` when the PEM file cannot be read."""
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise ConfigError(flag, f"cannot read {path}: {error.strerror or error}; give the path "
                                "of a readable PEM file") from None


def _load_chain(context: ssl.SSLContext, cert: str, key: str | None, cert_flag: str,
                key_flag: str) -> None:
    check_readable(cert_flag, cert)
    if key is not None:
        check_readable(key_flag, key)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as error:
        raise ConfigError(cert_flag, f"{cert} and {key or cert} do not hold a PEM "
                                     f"certificate and its matching private key ({error})") \
            from None


def _load_ca(context: ssl.SSLContext, ca: str, flag: str) -> None:
    check_readable(flag, ca)
    try:
        context.load_verify_locations(cafile=ca)
    except (ssl.SSLError, ValueError) as error:
        raise ConfigError(flag, f"{ca} holds no PEM CA certificate ({error})") from None


def server_ssl_context(cert: str, key: str, ca: str | None = None) -> ssl.SSLContext:
    """The HTTPS context of a member: its certificate and key; with ``ca``, client
    certificates are asked for (optional) and verified against it. ``ConfigError`` names the
    flag (``--http-cert``, ``--http-key``, ``--http-ca``) and the file."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load_chain(context, cert, key, "--http-cert", "--http-key")
    if ca is not None:
        _load_ca(context, ca, "--http-ca")
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_ssl_context(ca: str | None = None, cert: str | None = None,
                       key: str | None = None) -> ssl.SSLContext:
    """A client's context: the members' certificates verified against ``ca`` (the system's
    trust store without it), and ``cert``/``key`` presented as client certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca is not None:
        _load_ca(context, ca, "--http-ca")
    if cert is not None:
        _load_chain(context, cert, key, "--http-cert", "--http-key")
    elif key is not None:
        raise ConfigError("--http-key", "give --http-cert with it (the client certificate)")
    return context


@dataclasses.dataclass(frozen=True)
class Denied:
    """Why an administrative request is refused: an HTTP ``status`` (401 or 403), an error
    ``kind`` and a ``message``."""

    status: int
    kind: str
    message: str


@dataclasses.dataclass(frozen=True)
class AdminPolicy:
    """Who may call the administrative endpoints (see the module doc).

    ``token``: the bearer token accepted, if any; ``client_certificates``: a client
    certificate verified by the server's TLS context (``--http-ca``) is accepted;
    ``insecure``: everyone is accepted (``--insecure-admin``). The default refuses everyone.
    """

    token: str | None = None
    client_certificates: bool = False
    insecure: bool = False

    @property
    def enabled(self) -> bool:
        return self.insecure or self.token is not None or self.client_certificates

    def check(self, authorization: str | None, peer_certificate: object) -> Denied | None:
        """None when the request may go on; ``authorization`` is its ``Authorization``
        header, ``peer_certificate`` the verified client certificate (``None`` or empty when
        the client sent none)."""
        if self.insecure:
            return None
        if not self.enabled:
            return Denied(403, "admin_disabled", "administrative endpoints are disabled on "
                          "this member: start it with --admin-token-file FILE or --http-ca "
                          "FILE (client certificates), or --insecure-admin")
        if self.client_certificates and peer_certificate:
            return None
        scheme, _, credential = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            how = " or a client certificate from --http-ca" if self.client_certificates else ""
            return Denied(401, "unauthorized",
                          f"this endpoint needs a credential: Authorization: Bearer TOKEN{how}")
        if self.token is None or not hmac.compare_digest(
                credential.strip().encode("utf-8", "surrogateescape"),
                self.token.encode("ascii")):
            return Denied(403, "forbidden", "the credential is not accepted")
        return None


@dataclasses.dataclass(frozen=True)
class ServerSecurity:
    """What ``pyraft node`` needs from its security flags: ``ssl`` (the HTTPS context, None
    for plain HTTP), ``admin`` (the policy of administrative endpoints), and for ``--join``
    the client side: ``client_ssl`` and ``token``."""

    ssl: SSLContext | None = None
    admin: AdminPolicy = dataclasses.field(default_factory=AdminPolicy)
    client_ssl: SSLContext | None = None
    token: str | None = None

    @property
    def scheme(self) -> str:
        return "http" if self.ssl is None else "https"


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of :func:`server_options` (``pyraft node``)."""
    group = parser.add_argument_group("HTTP API security")
    group.add_argument("--http-cert", default=None, metavar="FILE",
                       help="serve the HTTP API over HTTPS with this PEM certificate (chain); "
                            "needs --http-key")
    group.add_argument("--http-key", default=None, metavar="FILE",
                       help="the PEM private key of --http-cert")
    group.add_argument("--http-ca", default=None, metavar="FILE",
                       help="with --http-cert: accept client certificates signed by this PEM "
                            "CA; such a client may call the administrative endpoints "
                            "(membership); with --join, the CA the joined member's "
                            "certificate is verified against")
    group.add_argument("--admin-token-file", default=None, metavar="FILE",
                       help="administrative endpoints (membership) accept 'Authorization: "
                            "Bearer TOKEN' with the token in FILE (one line, mode 600); "
                            "--join sends it")
    group.add_argument("--insecure-admin", action="store_true",
                       help="let anyone who reaches the HTTP API change the membership "
                            "(without this, --admin-token-file or --http-ca, administrative "
                            "endpoints answer 403)")


def server_options(args: argparse.Namespace) -> ServerSecurity:
    """The :class:`ServerSecurity` of the flags of :func:`add_server_arguments`; a
    ``ConfigError`` names the flag and file of a mistake."""
    cert, key, ca = args.http_cert, args.http_key, args.http_ca
    if (cert is None) != (key is None):
        raise ConfigError("--http-cert" if cert is None else "--http-key",
                          "HTTPS needs both --http-cert and --http-key")
    if ca is not None and cert is None:
        raise ConfigError("--http-ca", "client certificates need HTTPS: give --http-cert "
                                       "and --http-key too")
    token = None
    token_file = getattr(args, "admin_token_file", None)
    if token_file is not None:
        token = read_token_file(token_file)
    server = client = None
    if cert is not None:
        server = server_ssl_context(cert, key, ca)
        client = client_ssl_context(ca, cert, key)
    admin = AdminPolicy(token=token, client_certificates=ca is not None,
                        insecure=bool(getattr(args, "insecure_admin", False)))
    return ServerSecurity(ssl=server, admin=admin, client_ssl=client, token=token)


def add_client_security_arguments(parser: argparse.ArgumentParser, *,
                                  repeatable: bool = False) -> None:
    """The flags of :func:`client_security` (client commands such as ``pyraft kv``).
    ``repeatable``: the flags may be given on a command and on its subcommand alike (their
    defaults are suppressed; :func:`client_security` reads a missing one as not given)."""
    default = argparse.SUPPRESS if repeatable else None
    group = parser.add_argument_group("HTTPS and credentials")
    group.add_argument("--http-ca", default=default, metavar="FILE",
                       help="verify the members' HTTPS certificates against this PEM CA "
                            "(default: the system's trust store)")
    group.add_argument("--http-cert", default=default, metavar="FILE",
                       help="present this PEM client certificate (with --http-key): a "
                            "certificate from the members' --http-ca is an admin credential")
    group.add_argument("--http-key", default=default, metavar="FILE",
                       help="the PEM private key of --http-cert")
    group.add_argument("--admin-token-file", default=default, metavar="FILE",
                       help="send 'Authorization: Bearer TOKEN' with the token in FILE "
                            "(needed by administrative commands such as membership changes)")


def client_security(args: argparse.Namespace) -> tuple[ssl.SSLContext | None, str | None]:
    """``(ssl_context, token)`` for ``KVClient(..., ssl=..., token=...)`` from the flags of
    :func:`add_client_security_arguments`; ``None`` for what was not asked for. A
    ``ConfigError`` names the flag and file of a mistake."""
    ca, cert, key = (getattr(args, name, None) for name in ("http_ca", "http_cert", "http_key"))
    context = None
    if ca is not None or cert is not None or key is not None:
        context = client_ssl_context(ca, cert, key)
    token = None
    token_file = getattr(args, "admin_token_file", None)
    if token_file is not None:
        token = read_token_file(token_file)
    return context, token
