"""An HTTP API for the replicated key-value store (needs ``aiohttp``: the ``http`` extra).

One application serves one member (:func:`create_app`; :func:`serve` starts it on a socket).

Keys are one URL path segment, UTF-8 (so a key cannot hold ``/``); values are raw bytes.

- ``GET /v1/kv/{key}?consistency=barrier|lease|local`` (``barrier`` by default):

  - ``barrier``: a read index round (``apply_read_barrier``) then a read of this member's
    state: linearizable, served by followers too;
  - ``lease``: the leader only (followers redirect), with a valid lease, after its no-op
    committed and applied: linearizable as long as clocks drift within the lease's bound;
  - ``local``: this member's state as applied: may be stale.

  ``200`` with the value (``application/octet-stream``), ``404`` when the key is absent.
- ``PUT /v1/kv/{key}`` (body: the value): ``200`` with the previous value as body, or ``204``
  when the key was absent.
- ``DELETE /v1/kv/{key}``: ``200`` with the removed value, or ``204`` when it was absent.
- ``POST /v1/kv/{key}/cas`` with JSON ``{"expected": str | null, "new": str}``: writes ``new``
  when the key holds ``expected`` (``null``: the key is absent). The strings are the values
  as UTF-8 text; with ``"encoding": "base64"`` they are base64 instead. The answer is
  ``{"ok": bool, "value": str | null, "encoding": ...}``: the value after the command, in the
  request's encoding, or in ``base64`` (said by ``encoding``) when it is not UTF-8 text.
- ``POST /v1/sessions``: opens a client session; ``{"client_id": n}``.
- ``GET /v1/status``: this member's view (see :meth:`_Api.status`).
- ``GET /livez``: ``200`` ``ok`` while the process serves.
- ``GET /readyz``: ``200`` when a leader is known and this member has applied every entry up
  to the commit index it knows; ``503`` otherwise, with a JSON ``reason``: ``no_leader``,
  ``applying`` (``commit X applied Y``), ``storage_error`` (storage refuses writes now) or
  ``stopped`` (the member stopped, or is stopping). For load balancers and orchestrators.
- ``POST /v1/members``, ``DELETE /v1/members/{id}``: administrative (membership changes);
  they need a credential (see :mod:`pyraft.kv.security`): without one ``401`` with
  ``WWW-Authenticate: Bearer``, with a wrong one ``403``; a member configured with no
  credential at all refuses them (``403 admin_disabled``) unless it is told otherwise.

Only the administrative endpoints need a credential; over HTTPS (:func:`serve` with an
``ssl_context``) the other endpoints are open to every client the TLS context accepts.

Exactly-once writes: a client with a session sends ``X-Client-Id`` and ``X-Request-Seq``
(both integers >= 1, both or neither) and reuses the sequence when it retries a request; the
state machine answers a retry of the last sequence from its cache, without applying it again.
Without the headers the member uses a session of its own (opened through the log on the first
such write), numbering requests itself: such a write is applied at most once, but a client
that retries it after a timeout may apply it twice.

Errors have a JSON body ``{"error": type, "message": text}``:

- ``307`` + ``Location``: a write (or a lease read) reached a follower; the location is the
  leader's HTTP address, its member metadata key ``"http"`` (or ``http_addresses``);
- ``503`` + ``Retry-After: 1``: no leader known (or its HTTP address unknown), no valid lease,
  the member stopped, the command was dropped or lost (not applied: safe to retry);
- ``504``: the timeout passed; a write's outcome is unknown (retry it with the same sequence);
- ``400`` (bad consistency, JSON, headers or encoding), ``413`` (value over
  ``value_bytes_max``): nothing was proposed;
- ``409``: ``X-Request-Seq`` is below the session's last one (its result is gone);
- ``410``: the client's session expired (or never existed): open a new one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import socket
import ssl
from collections.abc import Mapping

from aiohttp import web

from pyraft.cluster.runtime import (
    ClusterStoppedError,
    CommandLostError,
    CommandOutcomeUnknownError,
    RaftCluster,
)
from pyraft.errors import ConfigError, NotLeaderError, ProposalDroppedError, StorageError
from pyraft.kv.machine import (
    CasResult,
    CompareAndSet,
    Delete,
    KVStateMachine,
    KVStore,
    MalformedRequest,
    OpenSession,
    Put,
    SessionExpired,
    SessionOpened,
    StaleRequest,
)
from pyraft.kv.security import AdminPolicy
from pyraft.metrics import http_metrics_middleware

__all__ = ["VALUE_BYTES_MAX_DEFAULT", "bound_port", "create_app", "member_status", "serve"]

#: the largest value accepted, unless configured
VALUE_BYTES_MAX_DEFAULT = 1024 * 1024

_CONSISTENCIES = ("barrier", "lease", "local")
_ENCODINGS = ("utf-8", "base64")


class _Abort(Exception):
    """A finished error answer, raised from deep inside a handler."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _error(status: int, kind: str, message: str, headers: Mapping[str, str] | None = None):
    return web.json_response({"error": kind, "message": message}, status=status,
                             headers=headers)


def _unavailable(kind: str, message: str) -> _Abort:
    return _Abort(_error(503, kind, message, {"Retry-After": "1"}))


def _session_number(text: str) -> int:
    """An ``X-Client-Id`` / ``X-Request-Seq`` value: ASCII decimal digits, in [1, 2**64 - 1]
    (the state machine stores them as unsigned 64-bit numbers)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise _bad_request("bad_header", "X-Client-Id and X-Request-Seq are decimal integers")
    value = int(text)
    if not 1 <= value <= 2**64 - 1:
        raise _bad_request("bad_header",
                           "X-Client-Id and X-Request-Seq must be in [1, 2**64 - 1]")
    return value


def _bad_request(kind: str, message: str) -> _Abort:
    return _Abort(_error(400, kind, message))


@web.middleware
async def _json_errors(request: web.Request, handler):
    """Every error answer has a JSON body, aiohttp's own (404 route, 405) included."""
    try:
        return await handler(request)
    except _Abort as abort:
        return abort.response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = exc.reason.lower().replace(" ", "_")
        return _error(exc.status, kind, exc.text or exc.reason, headers=None)


class _Api:
    """The handlers of one member; the state is the member's own session (see module doc)."""

    def __init__(self, cluster: RaftCluster, machine: KVStore, value_bytes_max: int,
                 request_timeout_s: float, http_addresses: Mapping[int, str],
                 admin: AdminPolicy) -> None:
        self.cluster = cluster
        self.admin = admin
        self.stopping = False  # the server is shutting down: not ready
        self.machine = machine
        self.value_bytes_max = value_bytes_max
        self.timeout = request_timeout_s
        self.http_addresses = dict(http_addresses)
        self._own_client: int | None = None
        self._own_sequence = 0
        self._own_lock = asyncio.Lock()

    # ---- helpers -------------------------------------------------------------------------
    def _leader_http(self) -> str | None:
        leader = self.cluster.leader
        if leader is None:
            return None
        for member in self.cluster.members:
            if member.id == leader and member.metadata.get("http"):
                return member.metadata["http"]
        return self.http_addresses.get(leader)

    def _not_leader(self, request: web.Request) -> _Abort:
        """A redirect to the leader's HTTP address, or 503 when it is not known."""
        leader = self.cluster.leader
        if leader is None or leader == self.cluster.id:
            return _unavailable("no_leader", "no leader is known; retry later")
        address = self._leader_http()
        if address is None:
            return _unavailable("no_leader_address",
                                f"the leader is member {leader}; its HTTP address is unknown")
        location = f"{request.scheme}://{address}{request.rel_url}"
        return _Abort(_error(307, "not_leader", f"the leader is member {leader}",
                             {"Location": location}))

    def _authorize(self, request: web.Request) -> None:
        """Refuse an administrative request without an accepted credential (401 / 403)."""
        transport = request.transport
        peer = None if transport is None else transport.get_extra_info("peercert")
        denied = self.admin.check(request.headers.get("Authorization"), peer)
        if denied is not None:
            headers = {"WWW-Authenticate": 'Bearer realm="pyraft"'} \
                if denied.status == 401 else None
            raise _Abort(_error(denied.status, denied.kind, denied.message, headers))

    def _key(self, request: web.Request) -> bytes:
        return request.match_info["key"].encode("utf-8")

    async def _body(self, request: web.Request, limit: int) -> bytes:
        """The request body, 413 beyond ``limit`` bytes (checked before reading when known)."""
        if request.content_length is not None and request.content_length > limit:
            raise _Abort(_error(413, "too_large", f"the body exceeds {limit} bytes"))
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await request.content.read(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise _Abort(_error(413, "too_large", f"the body exceeds {limit} bytes"))
            chunks.append(chunk)

    def _session_headers(self, request: web.Request) -> tuple[int, int] | None:
        client, sequence = request.headers.get("X-Client-Id"), request.headers.get("X-Request-Seq")
        if client is None and sequence is None:
            return None
        if client is None or sequence is None:
            raise _bad_request("bad_header", "send X-Client-Id and X-Request-Seq together")
        return _session_number(client), _session_number(sequence)

    async def _replicate(self, request: web.Request, payload: bytes) -> object:
        """Propose ``payload`` and return its result, or raise the answer for a failure."""
        if not self.cluster.is_leader:
            raise self._not_leader(request)
        try:
            return await self.cluster.replicate(payload, timeout=self.timeout)
        except NotLeaderError:
            raise self._not_leader(request) from None
        except asyncio.TimeoutError:
            raise _Abort(_error(504, "timeout", "no answer within the timeout: the write may or "
                                "may not be applied; retry it with the same X-Request-Seq")) \
                from None
        except CommandOutcomeUnknownError as exc:  # the lead lost, the member stopped
            raise _Abort(_error(504, "timeout", f"the write may or may not be applied ({exc}); "
                                "retry it with the same X-Request-Seq")) from None
        except (ClusterStoppedError, CommandLostError, ProposalDroppedError,
                StorageError) as exc:
            raise _unavailable(type(exc).__name__, f"not applied: {exc}") from None

    async def _open_session(self, request: web.Request) -> int:
        result = await self._replicate(request, KVStateMachine.encode(OpenSession(None)))
        if not isinstance(result, SessionOpened):
            raise _Abort(_error(500, "internal", f"unexpected result {result!r}"))
        return result.client

    async def _write(self, request: web.Request, build) -> object:
        """Run a session write; ``build(client, sequence)`` makes the command."""
        given = self._session_headers(request)
        if given is not None:
            return self._check(await self._replicate(request, KVStateMachine.encode(
                build(*given))))
        # the member's own session: a fresh sequence per request; a rejected request was not
        # applied, so it is sent again once with a new sequence (or a new session)
        for attempt in range(2):
            async with self._own_lock:
                if self._own_client is None:
                    self._own_client, self._own_sequence = await self._open_session(request), 0
                client = self._own_client
                self._own_sequence += 1
                sequence = self._own_sequence
            result = await self._replicate(request, KVStateMachine.encode(
                build(client, sequence)))
            if isinstance(result, SessionExpired) and self._own_client == client:
                self._own_client = None
            if not isinstance(result, (SessionExpired, StaleRequest)) or attempt:
                return self._check(result)
        raise AssertionError("unreachable")

    @staticmethod
    def _check(result: object) -> object:
        if isinstance(result, SessionExpired):
            raise _Abort(_error(410, "session_expired",
                                f"client {result.client} has no session: open a new one"))
        if isinstance(result, StaleRequest):
            raise _Abort(_error(409, "stale_request",
                                f"sequence {result.sequence} is below the last one "
                                f"({result.last_sequence}) of client {result.client}"))
        if isinstance(result, MalformedRequest):
            raise _bad_request("malformed", result.reason)
        return result

    @staticmethod
    def _previous(result: object) -> web.Response:
        if result is None:
            return web.Response(status=204)
        return web.Response(body=result, content_type="application/octet-stream")

    # ---- handlers ------------------------------------------------------------------------
    async def get(self, request: web.Request) -> web.Response:
        consistency = request.query.get("consistency", "barrier")
        if consistency not in _CONSISTENCIES:
            raise _bad_request("bad_consistency",
                               f"consistency must be one of {', '.join(_CONSISTENCIES)}")
        key = self._key(request)
        cluster = self.cluster
        try:
            if consistency == "barrier":
                if cluster.leader is None:
                    raise _unavailable("no_leader", "no leader is known; retry later")
                await cluster.apply_read_barrier(timeout=self.timeout)
            elif consistency == "lease":
                await self._lease_ready(request)
        except asyncio.TimeoutError:
            raise _Abort(_error(504, "timeout", "the read barrier timed out (a read is safe "
                                "to retry)")) from None
        except NotLeaderError:
            raise self._not_leader(request) from None
        except ClusterStoppedError as exc:
            raise _unavailable("stopped", str(exc)) from None
        value = self.machine.data.get(key)
        if value is None:
            return _error(404, "not_found", "no such key")
        return web.Response(body=value, content_type="application/octet-stream")

    async def _lease_ready(self, request: web.Request) -> None:
        cluster = self.cluster
        if not cluster.is_leader:
            raise self._not_leader(request)
        await cluster.ensure_consistency(timeout=self.timeout)  # the no-op of the term
        await cluster.wait_for_applied(cluster.commit_index, timeout=self.timeout)
        if not cluster.is_leader:
            raise self._not_leader(request)
        if not cluster.lease.valid:
            raise _unavailable("no_lease", "the leader holds no valid lease; retry later")

    async def put(self, request: web.Request) -> web.Response:
        key = self._key(request)
        value = await self._body(request, self.value_bytes_max)
        return self._previous(await self._write(
            request, lambda client, sequence: Put(client, sequence, key, value)))

    async def delete(self, request: web.Request) -> web.Response:
        key = self._key(request)
        return self._previous(await self._write(
            request, lambda client, sequence: Delete(client, sequence, key)))

    async def cas(self, request: web.Request) -> web.Response:
        key = self._key(request)
        body = await self._body(request, 4 * self.value_bytes_max + 4096)
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _bad_request("bad_json", f"the body is not JSON: {exc}") from None
        if type(document) is not dict:
            raise _bad_request("bad_json", "the body must be a JSON object")
        encoding = document.get("encoding", "utf-8")
        if encoding not in _ENCODINGS:
            raise _bad_request("bad_encoding", f"encoding must be one of {_ENCODINGS}")
        expected, new = document.get("expected"), document.get("new")
        if "new" not in document or type(new) is not str:
            raise _bad_request("bad_json", '"new" must be a string')
        if expected is not None and type(expected) is not str:
            raise _bad_request("bad_json", '"expected" must be a string or null')
        expected_bytes = None if expected is None else self._decode(expected, encoding)
        new_bytes = self._decode(new, encoding)
        if len(new_bytes) > self.value_bytes_max:
            raise _Abort(_error(413, "too_large", f"the value exceeds {self.value_bytes_max} "
                                "bytes"))
        result = await self._write(request, lambda client, sequence: CompareAndSet(
            client, sequence, key, expected_bytes, new_bytes))
        if not isinstance(result, CasResult):
            raise _Abort(_error(500, "internal", f"unexpected result {result!r}"))
        value, used = None, encoding
        if result.current is not None:
            value, used = self._encode(result.current, encoding)
        return web.json_response({"ok": result.ok, "value": value, "encoding": used})

    @staticmethod
    def _decode(text: str, encoding: str) -> bytes:
        try:
            if encoding == "base64":
                return base64.b64decode(text, validate=True)
            return text.encode("utf-8")
        except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
            raise _bad_request("bad_encoding", f"cannot decode a value: {exc}") from None

    @staticmethod
    def _encode(value: bytes, encoding: str) -> tuple[str, str]:
        if encoding == "utf-8":
            try:
                return value.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                pass
        return base64.b64encode(value).decode("ascii"), "base64"

    async def add_member(self, request: web.Request) -> web.Response:
        """``POST /v1/members`` {"id", "address", "metadata"}: the leader warms the new member
        up and promotes it (``RaftCluster.add_member``); 200 once it is a voter."""
        self._authorize(request)
        if not self.cluster.is_leader:
            raise self._not_leader(request)
        try:
            body = json.loads(await self._body(request, 64 * 1024))
            member, address = int(body["id"]), str(body["address"])
            metadata = {str(k): str(v) for k, v in dict(body.get("metadata") or {}).items()}
        except (ValueError, KeyError, TypeError) as error:
            raise _bad_request("bad_member",
                               f"expected {{id, address, metadata}}: {error}") from None
        if member in {m.id for m in self.cluster.members if m.voter}:
            return web.json_response({"ok": True, "already": True})
        try:
            await self.cluster.add_member(member, address, metadata, timeout=self.timeout * 4)
        except asyncio.TimeoutError:
            raise _Abort(_error(504, "timeout", "the member did not catch up in time; "
                                "the change may still complete")) from None
        except ProposalDroppedError as error:
            raise _Abort(_error(409, "membership", str(error))) from None
        except ConfigError as error:  # an address no member could dial: nothing proposed
            raise _bad_request("bad_member", str(error)) from None
        return web.json_response({"ok": True})

    async def remove_member(self, request: web.Request) -> web.Response:
        """``DELETE /v1/members/{id}``: remove a member (the leader itself included)."""
        self._authorize(request)
        if not self.cluster.is_leader:
            raise self._not_leader(request)
        try:
            member = int(request.match_info["id"])
        except ValueError:
            raise _bad_request("bad_member", "the member id must be an integer") from None
        try:
            await self.cluster.remove_member(member, timeout=self.timeout)
        except asyncio.TimeoutError:
            raise _Abort(_error(504, "timeout", "the removal did not commit in time; "
                                "the outcome is unknown")) from None
        except ProposalDroppedError as error:
            raise _Abort(_error(409, "membership", str(error))) from None
        return web.json_response({"ok": True})

    async def open_session(self, request: web.Request) -> web.Response:
        return web.json_response({"client_id": await self._open_session(request)})

    async def livez(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        """200 when a leader is known and everything committed (as far as this member knows)
        is applied here; 503 with the reason otherwise."""
        cluster = self.cluster
        commit, applied, leader = cluster.commit_index, cluster.applied_index, cluster.leader
        reason = message = None
        if self.stopping or cluster.fatal_error is not None:
            reason, message = "stopped", (f"member {cluster.id} is stopping"
                                          if cluster.fatal_error is None
                                          else f"member {cluster.id} failed: "
                                               f"{cluster.fatal_error!r}")
        elif cluster.storage_failure is not None:
            failure = cluster.storage_failure
            reason, message = "storage_error", f"{type(failure).__name__}: {failure}"
        elif leader is None:
            reason, message = "no_leader", "no leader is known"
        elif applied < commit:
            reason, message = "applying", f"commit {commit} applied {applied}"
        document = {"ready": reason is None, "reason": reason, "message": message,
                    "leader": leader, "commit": commit, "applied": applied}
        if reason is None:
            return web.json_response(document)
        return web.json_response(document, status=503, headers={"Retry-After": "1"})

    async def status(self, request: web.Request) -> web.Response:
        """This member's status: see :func:`member_status`."""
        return web.json_response(member_status(self.cluster, self.http_addresses))


def member_status(cluster: RaftCluster, http_addresses: Mapping[int, str] | None = None,
                  client_addresses: Mapping[int, str] | None = None) -> dict:
    """``id``, ``role``, ``leader``, ``leader_http``, ``term``, ``commit``, ``applied``,
    ``first_index`` (the first entry the log holds: those before it were compacted into
    a snapshot) and ``members``: ``id``, ``address``, ``voter``, ``http``, ``client`` (the
    address of its binary client protocol, :mod:`pyraft.kv.wire`, or null), ``metadata``
    (every label the configuration records for it: the operator's and its own) and, on the leader,
    ``match`` (the match index) and ``lag`` (the leader's last index minus ``match``);
    ``storage_error`` (the storage failure that refuses writes now, e.g. a full disk) and
    ``fatal_error`` (what stopped this member), null when all is well. The document of
    ``GET /v1/status`` and of the binary protocol's STATUS. ``http_addresses`` and
    ``client_addresses`` (member id -> address) stand in for metadata not known yet."""
    http_addresses = http_addresses or {}
    client_addresses = client_addresses or {}
    leading = cluster.is_leader
    status = cluster.view
    last = status.last_index if status is not None else 0
    members = []
    leader_http = None
    for member in cluster.members:
        entry = {
            "id": member.id,
            "address": member.address,
            "voter": member.voter,
            "http": member.metadata.get("http") or http_addresses.get(member.id),
            "client": member.metadata.get("client") or client_addresses.get(member.id),
            "metadata": dict(member.metadata),
        }
        if member.id == cluster.leader:
            leader_http = entry["http"]
        if leading:
            match = last if member.is_self else member.match_index
            entry["match"] = match
            entry["lag"] = None if match is None else last - match
        members.append(entry)
    if leader_http is None and cluster.leader is not None:
        leader_http = http_addresses.get(cluster.leader)
    return {
        "id": cluster.id,
        "role": cluster.role.value,
        "leader": cluster.leader,
        "leader_http": leader_http,
        "term": cluster.term,
        "commit": cluster.commit_index,
        "applied": cluster.applied_index,
        "first_index": status.first_index if status is not None else None,
        "members": members,
        "storage_error": None if cluster.storage_failure is None
        else f"{type(cluster.storage_failure).__name__}: {cluster.storage_failure}",
        "fatal_error": None if cluster.fatal_error is None else repr(cluster.fatal_error),
    }


def create_app(
    cluster: RaftCluster,
    machine: KVStore,
    *,
    value_bytes_max: int = VALUE_BYTES_MAX_DEFAULT,
    request_timeout_s: float = 5.0,
    http_addresses: Mapping[int, str] | None = None,
    admin: AdminPolicy | None = None,
) -> web.Application:
    """The HTTP API of ``cluster`` (whose state machine is ``machine``: a
    ``KVStateMachine`` or a ``SqliteKVStateMachine``); see the module doc.

    ``http_addresses`` maps member ids to ``"host:port"`` HTTP addresses, used for a member
    whose configuration metadata has no ``"http"`` key: a member knows the metadata of the
    starting members other than itself only once a configuration entry carrying it is
    committed (a member added with ``add_member(..., metadata)`` is known at once).

    ``admin``: who may call the administrative endpoints (by default nobody; see
    :class:`pyraft.kv.security.AdminPolicy`).
    """
    if value_bytes_max < 0 or request_timeout_s <= 0:
        raise ValueError("value_bytes_max must be >= 0 and request_timeout_s > 0")
    api = _Api(cluster, machine, value_bytes_max, request_timeout_s, http_addresses or {},
               admin if admin is not None else AdminPolicy())
    # bodies are read by the handlers with their own bound; this only has to be larger
    app = web.Application(middlewares=[_json_errors],
                          client_max_size=4 * value_bytes_max + 8192)
    app.middlewares.insert(0, http_metrics_middleware(cluster.metrics))  # outermost
    app.router.add_get("/v1/kv/{key}", api.get, allow_head=False)
    app.router.add_put("/v1/kv/{key}", api.put)
    app.router.add_delete("/v1/kv/{key}", api.delete)
    app.router.add_post("/v1/kv/{key}/cas", api.cas)
    app.router.add_post("/v1/sessions", api.open_session)
    app.router.add_post("/v1/members", api.add_member)
    app.router.add_delete("/v1/members/{id}", api.remove_member)
    app.router.add_get("/v1/status", api.status, allow_head=False)
    app.router.add_get("/livez", api.livez)
    app.router.add_get("/readyz", api.readyz)

    async def stopping(_: web.Application) -> None:
        api.stopping = True

    app.on_shutdown.append(stopping)
    return app


async def serve(cluster: RaftCluster, machine: KVStore, host: str = "127.0.0.1",
                port: int = 0, *, sock: socket.socket | None = None,
                ssl_context: ssl.SSLContext | None = None, **options) -> web.AppRunner:
    """Serve the API on ``host:port`` (``0``: any free port) or on a bound ``sock``, over
    HTTPS with ``ssl_context`` (see :func:`pyraft.kv.security.server_ssl_context`); returns
    the started runner (the caller ends it with ``await runner.cleanup()``). The bound port
    is :func:`bound_port` ``(runner)``. ``options`` go to :func:`create_app`."""
    runner = web.AppRunner(create_app(cluster, machine, **options), access_log=None)
    await runner.setup()
    try:
        if ssl_context is not None:
            if sock is None:
                sock = _listen(host, port)
            site: web.BaseSite = _HttpsSite(runner, sock, ssl_context)
        elif sock is not None:
            site = web.SockSite(runner, sock)
        else:
            site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


#: seconds a new HTTPS connection has to send its first byte, and to finish its handshake
HANDSHAKE_TIMEOUT_S = 10.0
#: the first byte of a TLS connection (a handshake record)
_TLS_HANDSHAKE = b"\x16"


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on the first address ``host`` resolves to."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _https_required(port: int) -> bytes:
    body = json.dumps({"error": "https_required",
                       "message": f"this member serves HTTPS: use https://HOST:{port}"}).encode()
    return (b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
            + body)


class _HttpsServer(asyncio.AbstractServer):
    """The listener of an HTTPS site. A connection whose first byte starts a TLS handshake
    goes to the application over TLS; a plain-HTTP request gets ``400 https_required`` (a
    JSON error, as every error of the API) instead of a dropped connection, so a client with
    an ``http://`` URL learns why at once. Every task it starts ends with :meth:`close`."""

    def __init__(self, factory, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sockets = [sock]
        self._factory, self._listener, self._context = factory, sock, context
        self._loop = asyncio.get_running_loop()
        self._routing: set[asyncio.Task] = set()
        sock.setblocking(False)
        self._accepting = self._loop.create_task(self._accept())

    async def _accept(self) -> None:
        while True:
            try:
                connection, _ = await self._loop.sock_accept(self._listener)
            except OSError:  # out of descriptors, an aborted connection: try again shortly
                await asyncio.sleep(0.1)
                continue
            task = self._loop.create_task(self._route(connection))
            self._routing.add(task)
            task.add_done_callback(self._routing.discard)

    async def _first_byte(self, connection: socket.socket) -> bytes:
        readable = self._loop.create_future()
        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        self._loop.add_reader(connection.fileno(), ready)
        try:
            await readable
        finally:
            self._loop.remove_reader(connection.fileno())
        return connection.recv(1, socket.MSG_PEEK)

    async def _route(self, connection: socket.socket) -> None:
        handed = False
        try:
            first = await asyncio.wait_for(self._first_byte(connection), HANDSHAKE_TIMEOUT_S)
            if first == _TLS_HANDSHAKE:
                handed = True  # the transport owns the socket from here, and closes it
                await self._loop.connect_accepted_socket(
                    self._factory, connection, ssl=self._context,
                    ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)
            elif first:
                await asyncio.wait_for(self._refuse_plain(connection), HANDSHAKE_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):  # ssl.SSLError is an OSError
            pass
        finally:
            if not handed:
                connection.close()

    async def _refuse_plain(self, connection: socket.socket) -> None:
        await self._loop.sock_recv(connection, 65536)  # the request, so no reset hides the answer
        await self._loop.sock_sendall(connection,
                                      _https_required(self._listener.getsockname()[1]))
        connection.shutdown(socket.SHUT_WR)
        for _ in range(16):  # until the client closes (bounded)
            if not await self._loop.sock_recv(connection, 65536):
                break

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return not self._accepting.done()

    async def start_serving(self) -> None:
        return  # it serves from its creation

    async def serve_forever(self) -> None:
        await self._accepting

    def close(self) -> None:
        self._accepting.cancel()
        for task in self._routing:
            task.cancel()
        self._listener.close()

    async def wait_closed(self) -> None:
        await asyncio.gather(self._accepting, *self._routing, return_exceptions=True)


class _HttpsSite(web.BaseSite):
    """An aiohttp site over :class:`_HttpsServer` on a bound, listening ``sock``."""

    def __init__(self, runner: web.AppRunner, sock: socket.socket,
                 context: ssl.SSLContext) -> None:
        super().__init__(runner, ssl_context=context)
        self._sock = sock
        self._context = context

    @property
    def name(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"https://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        self._sock.listen(128)  # a bound socket given to serve() may not listen yet
        self._server = _HttpsServer(self._runner.server, self._sock, self._context)


def bound_port(runner: web.AppRunner) -> int:
    """The port the first site of ``runner`` listens on."""
    return runner.addresses[0][1]
