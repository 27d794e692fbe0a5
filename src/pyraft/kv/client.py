"""``KVClient``: an asyncio client of the key-value HTTP API (:mod:`pyraft.kv.http`), or of
the members' binary client protocol (:mod:`pyraft.kv.wire`) when given ``pyraft://HOST:PORT``
addresses (``pyraft node --client``): the same calls, redirects, retries and errors, many
requests in flight on one connection per member, and concurrent writes on a pool of sessions
(``sessions_max``), each applied at most once.

It lives beside the service it talks to; ``pyraft.client``, its former module, re-exports
its public names for code written before the move.

Needs ``aiohttp`` (the ``http`` extra). Use it as an async context manager::

    async with KVClient(["http://10.0.0.1:8080", "http://10.0.0.2:8080"]) as kv:
        await kv.put("greeting", b"hello")
        assert await kv.get("greeting") == b"hello"

Writes are exactly-once: the client opens a session (``POST /v1/sessions``) before its first
write, numbers its writes (``X-Client-Id`` / ``X-Request-Seq``) and sends a retry with the
same number, so a retried write is never applied twice. Writes run one at a time per client
(the server keeps the result of the last request only); reads run concurrently.

The client follows ``307`` redirects itself and remembers the leader; it retries ``503``,
``504`` and connection failures on the next URL, after a jittered exponential delay
(:class:`Backoff`), until the call's deadline (``deadline_s``: of the client, or of the call)
passes or ``retries`` retries are done. A URL whose host name does not resolve is not tried
again in the same call. A URL that is not ``http(s)://host[:port]`` (or ``host:port``) is
refused at once with :class:`InvalidURLError`.

Errors: :class:`KVClientError` is the base; :class:`UnavailableError` when the deadline passed
or the retries are used up (a write's outcome is then unknown): its ``tried`` maps each URL
tried to the last error it gave (``connection refused``, ``DNS failure: ...``, ``timed out
after 0.25 s``, ``HTTP 503 no_leader: ...``); :class:`SessionExpiredError` when the session
expired (the write was not applied; the next write opens a new session, but an earlier write
that got no answer may or may not have been applied); :class:`RequestError` (also a
``ValueError``) for a request the server refused (4xx): ``status`` and ``kind`` say why;
:class:`TlsError` when the TLS handshake with a member fails (an ``https://`` URL to a
plain-HTTP member, a certificate the ``ssl`` context does not trust): not retried. (An
``http://`` URL to an HTTPS member is a ``RequestError`` ``400 https_required``.)

HTTPS and credentials: ``ssl`` (an ``ssl.SSLContext``, e.g. from
:func:`pyraft.kv.security.client_ssl_context`) verifies the members' certificates and may
present a client certificate; URLs without a scheme are then ``https://``. ``token`` is sent
as ``Authorization: Bearer TOKEN`` (the administrative endpoints need it; see
:mod:`pyraft.kv.security`).

Metrics: ``kv.metrics`` is a :class:`pyraft.metrics.ClientMetrics` (pass ``metrics=`` to
share one between clients): requests by operation and outcome, latency per operation,
redirects followed, retries by reason, leader changes seen, timeouts; mirrored to
OpenTelemetry when its API is installed, and ``kv.metrics.render_prometheus()`` gives the
Prometheus text.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import random
import socket
import ssl as _ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgpack

try:
    import aiohttp
except ImportError:  # the ``http`` extra is not installed: KVClient() says so
    aiohttp = None  # type: ignore[assignment]

from pyraft.errors import (
    InvalidURLError,
    KVClientError,
    RequestError,
    SessionExpiredError,
    TlsError,
    UnavailableError,
)
from pyraft.kv.frames import (
    CAS,
    DELETE,
    FRAME_BYTES_MAX_DEFAULT,
    GET,
    OPEN_SESSION,
    PUT,
    STATUS,
    FrameError,
    FrameReader,
    frame,
)
from pyraft.metrics import ClientMetrics

__all__ = ["Backoff", "InvalidURLError", "KVClient", "KVClientError", "RequestError",
           "SessionExpiredError", "TlsError", "UnavailableError"]

_RETRIED = (503, 504)
#: the scheme of a member's binary client protocol (``pyraft node --client HOST:PORT``)
WIRE_SCHEME = "pyraft"
#: sessions a client in binary mode keeps for its concurrent writes, unless configured
SESSIONS_MAX_DEFAULT = 64
#: the least time left worth an attempt: below it the call gives up
_ATTEMPT_SECONDS_MIN = 0.005
#: how often a binary connection looks for requests past their timeout (``_WireConnection``)
_SWEEP_S = 0.01
#: requests a connection writes at once, without waiting for the end of the loop turn: a
#: burst of writes (a closed loop's writers, answered together, sending again together)
#: reaches the member in pieces it starts on while the client still makes the rest, instead
#: of in one piece after the whole burst (256 in flight over one connection, 3 durable
#: members on a 2-vCPU VM, six alternating rounds: 76.9k -> 85.7k writes/s, p50 3.31 ->
#: 2.94 ms; 32 gained nothing, 128 less than 64)
FLUSH_REQUESTS = 64
#: ``getaddrinfo`` errors that say the name does not exist (not a passing failure)
_NO_SUCH_NAME = {getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA")
                 if hasattr(socket, name)}
_T = TypeVar("_T")


def _shown(url: str) -> str:
    """``url`` as people read it in a message: as it is, quoted only when it is empty or holds
    spaces (where the quotes show what was given)."""
    return url if url and not any(c.isspace() for c in url) else repr(url)


def _base(url: str, *, location: bool = False, scheme: str = "http") -> str:
    """``scheme://host:port`` of a member URL; :class:`InvalidURLError` when it is not one.
    A redirect's ``location`` may have a path and a query (they are dropped); ``scheme`` is
    that of a URL given without one."""
    text = url.strip()
    if "://" not in text:
        text = f"{scheme}://{text}"
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as error:  # a port that is no number, or out of range
        raise InvalidURLError(f"{_shown(url)} is not a member URL: {error}") from None
    if parts.scheme.lower() not in ("http", "https", WIRE_SCHEME):
        raise InvalidURLError(f"{_shown(url)} is not a member URL: the scheme must be http, "
                              f"https or {WIRE_SCHEME}, not {parts.scheme}")
    if parts.scheme.lower() == WIRE_SCHEME and port is None:
        raise InvalidURLError(f"{_shown(url)} is not a member address: give "
                              f"{WIRE_SCHEME}://HOST:PORT (pyraft node --client)")
    if not parts.hostname or any(c.isspace() for c in text):
        raise InvalidURLError(f"{_shown(url)} is not a member URL: give http://HOST:PORT")
    if not location and (parts.username is not None or parts.query or parts.fragment
                         or parts.path not in ("", "/")):
        raise InvalidURLError(f"{_shown(url)} is not a member URL: give http://HOST:PORT only, "
                              "without a path, query or user")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


class Backoff:
    """Jittered exponential delays between attempts ("equal jitter"): the ``n``-th delay
    (from 0) is drawn uniformly from ``[c / 2, c]`` where ``c = min(cap_s, base_s * 2**n)``,
    so clients that failed together do not come back together, and each waits at least half
    of the ceiling. ``rng`` (a ``random.Random``) makes the draws replayable."""

    def __init__(self, base_s: float = 0.02, cap_s: float = 1.0,
                 rng: random.Random | None = None) -> None:
        if not 0 < base_s <= cap_s:
            raise ValueError(f"need 0 < base_s <= cap_s, not base_s={base_s}, cap_s={cap_s}")
        self.base_s = base_s
        self.cap_s = cap_s
        self.rng = rng if rng is not None else random.Random()
        self.failures = 0  # delays handed out since the last reset

    def ceiling(self) -> float:
        """The largest delay the next draw may give."""
        return min(self.cap_s, self.base_s * 2 ** min(self.failures, 64))

    def next_delay(self) -> float:
        ceiling = self.ceiling()
        self.failures += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


def _describe(error: BaseException, timeout_s: float) -> tuple[str, str, bool]:
    """``(reason label, text for people, permanent)`` of a failed exchange."""
    if isinstance(error, asyncio.TimeoutError):
        return "timeout", f"timed out after {timeout_s:.2f} s", False
    os_error = getattr(error, "os_error", None)
    dns = getattr(aiohttp, "ClientConnectorDNSError", ())
    if (dns and isinstance(error, dns)) or isinstance(os_error, socket.gaierror):
        code = getattr(os_error, "errno", None)
        detail = getattr(os_error, "strerror", None) or str(os_error or error)
        return "dns", f"DNS failure: {detail}", code in _NO_SUCH_NAME
    if isinstance(os_error, ConnectionRefusedError) or \
            getattr(os_error, "errno", None) == errno.ECONNREFUSED:
        return "connection", "connection refused", False
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "connection", "the server closed the connection", False
    text = str(error) or type(error).__name__
    return "connection", f"{type(error).__name__}: {text}", False


def _key_path(key: str | bytes) -> str:
    if isinstance(key, bytes):
        key = key.decode("utf-8")
    if not key or "/" in key:
        raise ValueError(f"a key is a non-empty string without '/', not {key!r}")
    return "/v1/kv/" + urllib.parse.quote(key, safe="")


def _value(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


class KVClient:
    """A client of the members at ``urls`` (``http://host:port`` or ``host:port``).

    ``timeout_s`` bounds each HTTP exchange; ``retries`` is how many times a request is sent
    again after a ``503``, ``504``, a connection failure or a redirect. ``deadline_s`` bounds
    each call as a whole (every attempt, delay and redirect; ``None``: only ``retries`` and
    ``timeout_s`` bound it); a call's own ``deadline_s=`` overrides it. An exchange never runs
    past the deadline. ``metrics``: the :class:`~pyraft.metrics.ClientMetrics` to record into
    (by default a new one, mirrored to the global OpenTelemetry meter provider when the API is
    installed). ``backoff`` (a :class:`Backoff`), ``clock`` (monotonic seconds) and ``sleep``
    (an ``asyncio.sleep``) are there for tests that replay the retries. ``ssl``: the TLS
    context of ``https://`` URLs (default: the system's trust store; URLs without a scheme are
    then ``https://``); ``token``: sent as ``Authorization: Bearer`` with every request.
    ``pyraft://HOST:PORT`` addresses (all or none) select the binary protocol (``binary``),
    where writes run concurrently, each on one of at most ``sessions_max`` sessions; there an
    exchange's timeout is noticed within 10 ms of passing (one timer per connection).
    """

    def __init__(self, urls: list[str], *, timeout_s: float = 5.0, retries: int = 10,
                 metrics: ClientMetrics | None = None, deadline_s: float | None = None,
                 backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 ssl: _ssl.SSLContext | None = None, token: str | None = None,
                 sessions_max: int = SESSIONS_MAX_DEFAULT) -> None:
        if not urls:
            raise ValueError("give at least one URL")
        if metrics is not None and not isinstance(metrics, ClientMetrics):
            raise TypeError(f"metrics must be a ClientMetrics, not {type(metrics).__name__}")
        if isinstance(urls, str):
            raise TypeError("urls is a list of URLs, not one string")
        if not timeout_s > 0 or (deadline_s is not None and not deadline_s > 0):
            raise ValueError(f"timeout_s and deadline_s must be > 0, not {timeout_s}, "
                             f"{deadline_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, not {retries}")
        if sessions_max < 1:
            raise ValueError(f"sessions_max must be >= 1, not {sessions_max}")
        self.metrics = metrics if metrics is not None else ClientMetrics()
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise TypeError(f"ssl must be an ssl.SSLContext, not {type(ssl).__name__}")
        self.urls = [_base(url, scheme="http" if ssl is None else "https") for url in urls]
        wire = [url.startswith(WIRE_SCHEME + "://") for url in self.urls]
        if any(wire) and not all(wire):
            raise InvalidURLError("give either HTTP URLs or pyraft:// addresses, not both: "
                                  f"{', '.join(self.urls)}")
        #: binary mode: the members' binary client protocol (pyraft.kv.wire)
        self.binary = all(wire)
        if not self.binary and aiohttp is None:
            raise ImportError("the key-value client needs aiohttp: pip install 'raftcore[http]'")
        self._ssl = ssl
        self._scheme = "http" if ssl is None else "https"
        self._headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self.timeout_s = timeout_s
        self.retries = retries
        self.deadline_s = deadline_s
        self.backoff = backoff if backoff is not None else Backoff()
        self._clock = clock
        self._sleep = sleep
        self.leader_url: str | None = None
        self.client_id: int | None = None
        self.sequence = 0
        self._next = 0
        self._known_leader: str | None = None  # the last leader learned (leader_url may reset)
        self._http: aiohttp.ClientSession | None = None
        self._write_lock = asyncio.Lock()
        # binary mode: one connection per member, a pool of sessions for concurrent writes
        self.sessions_max = sessions_max
        self._open = False
        self._connections: dict[str, _WireConnection] = {}
        self._connecting: dict[str, asyncio.Future[_WireConnection]] = {}
        self._free_sessions: list[list[int]] = []
        self._sessions_count = 0
        self._session_waiters: list[asyncio.Future[None]] = []

    async def __aenter__(self) -> KVClient:
        if self.binary:
            self._open = True
            return self
        connector = None if self._ssl is None else aiohttp.TCPConnector(ssl=self._ssl)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                           connector=connector, headers=self._headers)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        self._open = False
        for connection in list(self._connections.values()):
            connection.close()
        self._connections.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    # ---- the API -------------------------------------------------------------------------
    # Each call takes ``deadline_s``: the whole call's deadline in seconds (by default the
    # client's ``deadline_s``); when it passes, the call raises UnavailableError.
    async def get(self, key: str | bytes, consistency: str = "barrier", *,
                  deadline_s: float | None = None) -> bytes | None:
        """The value of ``key`` (``None`` when absent) read at ``consistency``: ``barrier``
        (linearizable, any member), ``lease`` (linearizable, the leader) or ``local``."""
        if self.binary:
            status, body = await self._measured("get", self._wire_request(
                [GET, _key_bytes(key), _consistency(consistency)], operation="get",
                until=self._until(deadline_s)), lambda answer: answer[0] == 404)
            return None if status == 404 else body
        path, until = _key_path(key), self._until(deadline_s)
        status, body = await self._measured("get", self._request(
            "GET", path, operation="get", until=until, params={"consistency": consistency}),
            lambda answer: answer[0] == 404)
        return None if status == 404 else body

    async def put(self, key: str | bytes, value: str | bytes, *,
                  deadline_s: float | None = None) -> bytes | None:
        """Set ``key`` to ``value`` (``str`` is sent as UTF-8); returns the previous value
        (``None`` when the key was absent)."""
        if self.binary:  # the hot path: _measured's bookkeeping inline
            head = [PUT, _key_bytes(key), _value(value)]
            started = time.perf_counter()
            try:
                until = None if deadline_s is None and self.deadline_s is None \
                    else self._until(deadline_s)
                free = self._free_sessions  # ``_wire_write``'s, without its coroutine
                session = free.pop() if free else await self._take_session(until)
                _, body = await self._wire_request(head, operation="put", leader=True,
                                                   until=until, session=session)
            except BaseException as error:
                self.metrics.request_finished("put", _outcome(error),
                                              time.perf_counter() - started)
                raise
            self.metrics.request_finished("put", "ok", time.perf_counter() - started)
            return body
        path, data, until = _key_path(key), _value(value), self._until(deadline_s)
        status, body = await self._measured("put", self._write("PUT", path, "put", until,
                                                               data=data))
        return None if status == 204 else body

    async def delete(self, key: str | bytes, *,
                     deadline_s: float | None = None) -> bytes | None:
        """Remove ``key``; returns the removed value (``None`` when it was absent)."""
        if self.binary:
            key_bytes = _key_bytes(key)
            _, body = await self._measured("delete", self._wire_write(
                [DELETE, key_bytes], "delete", self._until(deadline_s)),
                lambda answer: answer[1] is None)
            return body
        path, until = _key_path(key), self._until(deadline_s)
        status, body = await self._measured("delete", self._write("DELETE", path, "delete",
                                                                  until),
                                            lambda answer: answer[0] == 204)
        return None if status == 204 else body

    async def cas(self, key: str | bytes, expected: str | bytes | None,
                  new: str | bytes, *, deadline_s: float | None = None
                  ) -> tuple[bool, bytes | None]:
        """Set ``key`` to ``new`` if it holds ``expected`` (``None``: if it is absent);
        returns ``(ok, current)``, ``current`` being the value afterwards."""
        if self.binary:
            key_bytes = _key_bytes(key)
            old = None if expected is None else _value(expected)
            new_bytes = _value(new)
            return await self._measured("cas", self._wire_cas(
                [CAS, key_bytes, old, new_bytes], self._until(deadline_s)),
                lambda answer: not answer[0])
        path, until = _key_path(key) + "/cas", self._until(deadline_s)
        document = {
            "encoding": "base64",
            "expected": None if expected is None
            else base64.b64encode(_value(expected)).decode("ascii"),
            "new": base64.b64encode(_value(new)).decode("ascii"),
        }
        return await self._measured("cas", self._cas(path, document, until),
                                    lambda answer: not answer[0])

    async def _cas(self, path: str, document: dict,
                   until: float | None) -> tuple[bool, bytes | None]:
        _, body = await self._write("POST", path, "cas", until, json=document)
        answer = _json(body)
        value = answer.get("value")
        if value is not None:
            value = base64.b64decode(value) if answer.get("encoding") == "base64" \
                else value.encode("utf-8")
        return bool(answer["ok"]), value

    async def status(self, url: str | None = None, *, deadline_s: float | None = None) -> dict:
        """The status of the member at ``url`` (by default the first that answers)."""
        if self.binary:
            _, body = await self._measured("status", self._wire_request(
                [STATUS], operation="status", url=url and _base(url, scheme=WIRE_SCHEME),
                follow=False, until=self._until(deadline_s)))
            return body if isinstance(body, dict) else {}
        _, body = await self._measured("status", self._request(
            "GET", "/v1/status", operation="status",
            url=url and _base(url, scheme=self._scheme), follow=False,
            until=self._until(deadline_s)))
        return _json(body)

    async def add_member(self, member: int, address: str,
                         metadata: dict[str, str] | None = None, *,
                         deadline_s: float | None = None) -> dict:
        """Add ``member`` (its Raft ``address``, and ``metadata`` such as ``{"http":
        "host:port"}``) through the leader, which warms it up and promotes it to voter; the
        member's process must run (joining, not bootstrapping). Returns the answer
        (``{"ok": true}``, with ``"already": true`` when it was a voter already). HTTP URLs
        only: the binary protocol has no administrative requests."""
        self._http_only("add_member")
        document = {"id": int(member), "address": str(address),
                    "metadata": {str(k): str(v) for k, v in (metadata or {}).items()}}
        _, body = await self._measured("add_member", self._request(
            "POST", "/v1/members", operation="add_member", leader=True,
            until=self._until(deadline_s), json=document))
        return _json(body)

    async def remove_member(self, member: int, *, deadline_s: float | None = None) -> dict:
        """Remove ``member`` (the leader itself included) through the leader (HTTP URLs
        only)."""
        self._http_only("remove_member")
        _, body = await self._measured("remove_member", self._request(
            "DELETE", f"/v1/members/{int(member)}", operation="remove_member", leader=True,
            until=self._until(deadline_s)))
        return _json(body)

    async def open_session(self, *, deadline_s: float | None = None) -> int:
        """Open a new session (done by the first write); returns its client id. In binary
        mode the session joins the client's pool of write sessions."""
        until = self._until(deadline_s)
        if self.binary:
            if self._sessions_count >= self.sessions_max:
                raise KVClientError(f"the client holds sessions_max={self.sessions_max} "
                                    "sessions already")
            self._sessions_count += 1
            try:
                client = await self._wire_open_session(until)
            except BaseException:
                self._session_gone()
                raise
            self.client_id, self.sequence = client, 0
            self._give_back([client, 0])
            return client
        return await self._open_session(until)

    async def _open_session(self, until: float | None) -> int:
        _, body = await self._measured("open_session", self._request(
            "POST", "/v1/sessions", operation="open_session", leader=True, until=until))
        self.client_id, self.sequence = int(_json(body)["client_id"]), 0
        return self.client_id

    # ---- the machinery -------------------------------------------------------------------
    def _until(self, deadline_s: float | None) -> float | None:
        """The clock reading at which a call given ``deadline_s`` (or the client's) ends."""
        seconds = self.deadline_s if deadline_s is None else deadline_s
        if seconds is None:
            return None
        if not seconds > 0:
            raise ValueError(f"deadline_s must be > 0, not {seconds}")
        return self._clock() + seconds

    async def _measured(self, operation: str, call: Awaitable[_T],
                        negative: Callable[[_T], bool] | None = None) -> _T:
        """Await ``call`` and record it as one ``operation`` request with its outcome."""
        started = time.perf_counter()
        try:
            answer = await call
        except BaseException as error:
            self.metrics.request_finished(operation, _outcome(error),
                                          time.perf_counter() - started)
            raise
        outcome = "negative" if negative is not None and negative(answer) else "ok"
        self.metrics.request_finished(operation, outcome, time.perf_counter() - started)
        return answer

    def _learned_leader(self, url: str) -> None:
        if self._known_leader is not None and url != self._known_leader:
            self.metrics.leader_changes.inc()
        self.leader_url = self._known_leader = url

    async def _write(self, method: str, path: str, operation: str, until: float | None,
                     **kwargs) -> tuple[int, bytes]:
        async with self._write_lock:
            if self.client_id is None:
                await self._open_session(until)
            self.sequence += 1
            headers = {"X-Client-Id": str(self.client_id), "X-Request-Seq": str(self.sequence)}
            try:
                return await self._request(method, path, operation=operation, until=until,
                                           headers=headers, leader=True, **kwargs)
            except SessionExpiredError:
                self.client_id = None
                raise

    async def _request(self, method: str, path: str, *, operation: str,
                       url: str | None = None, leader: bool = False, follow: bool = True,
                       until: float | None = None, **kwargs) -> tuple[int, bytes]:
        """Send until a final answer, the deadline ``until`` (a clock reading) or the last
        retry; the same request (same sequence) on every attempt."""
        if self._http is None:
            raise KVClientError("use the client as 'async with KVClient(...)'")
        clock = self._clock
        started = clock()
        backoff: Backoff | None = None
        tried: dict[str, str] = {}
        unknown_names: set[str] = set()  # URLs whose host name does not resolve
        redirected: str | None = None
        attempts, gave_up = 0, "retries"
        while True:
            base, exchange_s, gave_up = self._next_target(url, redirected, leader,
                                                          unknown_names, until)
            redirected = None
            if base is None:
                break
            attempts += 1
            try:
                async with self._http.request(
                        method, base + path, allow_redirects=False,
                        timeout=aiohttp.ClientTimeout(total=exchange_s), **kwargs) as response:
                    status, body = response.status, await response.read()
                    location = response.headers.get("Location")
            except aiohttp.ClientSSLError as exc:
                raise TlsError(f"{method} {base}{path}: the TLS handshake failed ({exc}); "
                               "check the URL's scheme and the CA") from None
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                reason = self._attempt_failed(base, _describe(exc, exchange_s), operation, tried,
                                              unknown_names)
            else:
                if status == 307 and location and follow:
                    redirected = self._redirected(base, location, "http", (method, path), tried,
                                                  attempts, started)
                    if attempts > self.retries:
                        break
                    continue
                if status not in _RETRIED:
                    if leader and url is None and (status < 400 or status == 404):
                        self._learned_leader(base)  # only the leader answers these
                    return self._final(status, body)
                answer = _json(body)
                tried[base] = (f"HTTP {status} {answer.get('error', '')}: "
                               f"{answer.get('message', '')}").rstrip(": ")
                reason = self._retried_answer(base, status, operation)
            backoff, gave_up = await self._pause_before_retry(backoff, attempts, url,
                                                              unknown_names, until, reason)
            if gave_up:
                break
        elapsed = clock() - started
        raise UnavailableError(self._gave_up_message(method, path, gave_up, tried, attempts,
                                                     elapsed), tried, attempts, elapsed)

    # ---- the binary protocol (pyraft:// addresses) ----------------------------------------
    def _http_only(self, operation: str) -> None:
        if self.binary:
            raise KVClientError(f"{operation} is an administrative request of the HTTP API: "
                                "use a client with the members' http:// URLs")

    async def _wire_write(self, head: list, operation: str,
                          until: float | None) -> tuple[int, Any]:
        """A session write ``head`` (``[op, args...]``) on a session of the pool (one write
        at a time per session): see ``_wire_request``."""
        free = self._free_sessions
        session = free.pop() if free else await self._take_session(until)
        return await self._wire_request(head, operation=operation, leader=True, until=until,
                                        session=session)

    async def _wire_cas(self, head: list, until: float | None) -> tuple[bool, bytes | None]:
        _, body = await self._wire_write(head, "cas", until)
        if type(body) is not list or len(body) != 2:
            raise KVClientError(f"a member answered a CAS with {body!r}")
        return bool(body[0]), body[1]

    async def _wire_open_session(self, until: float | None) -> int:
        _, body = await self._measured("open_session", self._wire_request(
            [OPEN_SESSION], operation="open_session", leader=True, until=until))
        if type(body) is not int:
            raise KVClientError(f"a member answered a new session with {body!r}")
        return body

    async def _take_session(self, until: float | None) -> list[int]:
        """A free session of the pool, a new one while there are fewer than
        ``sessions_max``, else the next one given back."""
        while True:
            if self._free_sessions:
                return self._free_sessions.pop()
            if self._sessions_count < self.sessions_max:
                self._sessions_count += 1
                try:
                    return [await self._wire_open_session(until), 0]
                except BaseException:
                    self._session_gone()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._session_waiters.append(waiter)
            try:
                if until is None:
                    await waiter
                else:
                    await asyncio.wait_for(waiter, max(0.0, until - self._clock()))
            except asyncio.TimeoutError:
                raise UnavailableError("no free session within the deadline (sessions_max="
                                       f"{self.sessions_max} writes in flight)") from None
            finally:
                if waiter in self._session_waiters:
                    self._session_waiters.remove(waiter)

    def _give_back(self, session: list[int]) -> None:
        self._free_sessions.append(session)
        self._wake_one()

    def _session_gone(self) -> None:
        self._sessions_count -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._session_waiters:
            waiter = self._session_waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _wire_connection(self, base: str, timeout_s: float) -> _WireConnection:
        """The open connection to ``base`` (``pyraft://host:port``), made when missing (one
        attempt at a time per member)."""
        connection = self._connections.get(base)
        if connection is not None and connection.usable:
            return connection
        connecting = self._connecting.get(base)
        if connecting is None:
            loop = asyncio.get_running_loop()
            connecting = loop.create_future()
            self._connecting[base] = connecting
            parts = urllib.parse.urlsplit(base)
            try:
                _, made = await asyncio.wait_for(loop.create_connection(
                    _WireConnection, parts.hostname or "", parts.port or 0, ssl=self._ssl),
                    timeout_s)
            except BaseException as error:
                if not connecting.done():
                    if isinstance(error, asyncio.CancelledError):
                        connecting.cancel()
                    else:
                        connecting.set_exception(error)
                        connecting.exception()  # retrieved: the waiters get it themselves
                raise
            finally:
                del self._connecting[base]
            if not self._open:
                made.close()
                raise KVClientError("the client is closed")
            self._connections[base] = made
            connecting.set_result(made)
            return made
        return await asyncio.wait_for(asyncio.shield(connecting), timeout_s)

    async def _wire_request(self, message: list, *, operation: str, url: str | None = None,
                            leader: bool = False, follow: bool = True,
                            until: float | None = None,
                            session: list[int] | None = None) -> tuple[int, Any]:
        """``message`` (``[op, args...]``) until a final answer, the deadline or the last
        retry, as :meth:`_request` does over HTTP: the same redirects, retries and errors.

        ``session`` (``[client, last sequence]``, taken from the pool): a session write,
        ``message`` followed by the session and its next sequence, retried with that
        sequence, so it is applied at most once; the session goes back to the pool after
        it, or is gone when the member says it expired. (Here, not in a coroutine around
        this one: a write's coroutines cost as much as its frame.)"""
        if session is not None:
            session[1] += 1
            self.client_id, self.sequence = session
            message = [*message, session[0], session[1]]
        kept = True
        try:
            if not self._open:
                raise KVClientError("use the client as 'async with KVClient(...)'")
            clock = self._clock
            started = clock()
            backoff: Backoff | None = None
            tried: dict[str, str] = {}
            unknown_names: set[str] = set()
            redirected: str | None = None
            attempts, gave_up = 0, "retries"
            base: str | None
            while True:
                if leader and url is None and redirected is None and until is None \
                        and self.leader_url is not None and not unknown_names:
                    # what ``_next_target`` answers then, without its call
                    base, exchange_s, gave_up = self.leader_url, self.timeout_s, "retries"
                else:
                    base, exchange_s, gave_up = self._next_target(url, redirected, leader,
                                                                  unknown_names, until)
                redirected = None
                if base is None:
                    break
                attempts += 1
                try:
                    connection = self._connections.get(base)
                    if connection is None or not connection.usable:
                        connection = await self._wire_connection(base, exchange_s)
                    status, body = await connection.request(message, exchange_s)
                except _ssl.SSLError as exc:
                    raise TlsError(f"{base}: the TLS handshake failed ({exc}); check the address "
                                   "and the CA") from None
                except (OSError, asyncio.TimeoutError) as exc:
                    reason = self._attempt_failed(base, _describe_wire(exc, exchange_s),
                                                  operation, tried, unknown_names)
                else:
                    if status == 200 or status == 404:
                        if leader and url is None and base != self.leader_url:
                            self._learned_leader(base)  # only the leader answers these
                        return status, body
                    kind, text, location = _wire_error(body)
                    if status == 307 and follow and location:
                        redirected = self._redirected(base, location, WIRE_SCHEME,
                                                      (operation, ""), tried, attempts, started)
                        if attempts > self.retries:
                            break
                        continue
                    if status not in _RETRIED:
                        if status == 410:
                            raise SessionExpiredError(text)
                        raise RequestError(status, kind, text)
                    tried[base] = f"{status} {kind}: {text}".rstrip(": ")
                    reason = self._retried_answer(base, status, operation)
                backoff, gave_up = await self._pause_before_retry(backoff, attempts, url,
                                                                  unknown_names, until, reason)
                if gave_up:
                    break
            elapsed = clock() - started
            raise UnavailableError(self._gave_up_message(operation, "", gave_up, tried, attempts,
                                                         elapsed), tried, attempts, elapsed)
        except SessionExpiredError:
            kept = False
            raise
        finally:
            if session is not None:
                if kept:
                    self._give_back(session)
                else:
                    self._session_gone()

    def _next_target(self, url: str | None, redirected: str | None, leader: bool,
                     unknown_names: set[str], until: float | None
                     ) -> tuple[str | None, float, str]:
        """Where the next attempt of a request goes (the URL asked for, a redirect's target,
        the leader or any member) and how long it may take: ``(base, seconds, "retries")``,
        or ``(None, 0, why)`` when no attempt can be made (``"names"``: no member's name
        resolves; ``"deadline"``: too little time left). Both protocols use it."""
        base = url or redirected or (self.leader_url if leader and self.leader_url
                                     else self._pick())
        if base in unknown_names:
            known = self._pick_known(unknown_names)
            if known is None:
                return None, 0.0, "names"
            base = known
        exchange_s = self.timeout_s
        if until is not None:
            exchange_s = min(exchange_s, until - self._clock())
            if exchange_s < _ATTEMPT_SECONDS_MIN:
                return None, 0.0, "deadline"
        return base, exchange_s, "retries"

    def _retried_answer(self, base: str, status: int, operation: str) -> str:
        """A 503 (the member cannot serve now: try another) or a 504 (the member's own
        timeout) from ``base``: the retry reason, counted as both protocols count it."""
        if status == 503:
            self._failed(base)
            return "unavailable"
        self.metrics.timeouts.inc(1, (operation, "server"))
        return "server_timeout"

    def _attempt_failed(self, base: str, described: tuple[str, str, bool], operation: str,
                        tried: dict[str, str], unknown_names: set[str]) -> str:
        """An attempt at ``base`` that got no answer (``described``: ``_describe`` or
        ``_describe_wire`` of its error): noted in ``tried``, counted, ``base`` forgotten as
        the leader (and as a name, when it does not resolve); the retry reason."""
        reason, tried[base], permanent = described
        self._failed(base)
        if reason == "timeout":
            self.metrics.timeouts.inc(1, (operation, "client"))
        if permanent:
            unknown_names.add(base)
        return "connection" if reason == "dns" else reason

    def _redirected(self, base: str, location: str, scheme: str, call: tuple[str, str],
                    tried: dict[str, str], attempts: int, started: float) -> str:
        """The member at ``base`` redirected to ``location``: its base URL, learned as the
        leader; UnavailableError when it is not a URL (``call``: the method or operation and
        the path, for the message)."""
        try:
            redirected = _base(location, location=True, scheme=scheme)
        except InvalidURLError:
            tried[base] = f"redirected to a bad location {location}"
            elapsed = self._clock() - started
            raise UnavailableError(self._gave_up_message(
                *call, "a bad redirect", tried, attempts, elapsed), tried, attempts,
                elapsed) from None
        self._learned_leader(redirected)
        self.metrics.redirects.inc()
        tried[base] = f"redirected to {redirected}"
        return redirected

    async def _pause_before_retry(self, backoff: Backoff | None, attempts: int,
                                  url: str | None, unknown_names: set[str],
                                  until: float | None, reason: str) -> tuple[Backoff, str]:
        """After a failed attempt: wait the backoff's delay (``backoff`` made at the first
        retry) and return ``""`` (try again), or return why no attempt is left:
        ``"retries"``, ``"names"`` (nothing left to try) or ``"deadline"`` (no time left for
        an attempt after the delay); with the backoff."""
        if backoff is None:
            backoff = Backoff(self.backoff.base_s, self.backoff.cap_s, self.backoff.rng)
        if attempts > self.retries:
            return backoff, "retries"
        if unknown_names and (url in unknown_names or unknown_names.issuperset(self.urls)):
            return backoff, "names"
        delay = backoff.next_delay()
        if until is not None and until - self._clock() - delay < _ATTEMPT_SECONDS_MIN:
            return backoff, "deadline"
        self.metrics.retries.inc(1, (reason,))
        await self._sleep(delay)
        return backoff, ""

    def _gave_up_message(self, method: str, path: str, why: str, tried: dict[str, str],
                         attempts: int, elapsed_s: float) -> str:
        because = {
            "deadline": f"no answer within the deadline ({elapsed_s:.2f} s, "
                        f"{attempts} attempts)",
            "retries": f"no answer after {self.retries} retries ({elapsed_s:.2f} s)",
            "names": "no URL's host name resolves",
        }.get(why, why)
        details = "; ".join(f"{where}: {what}" for where, what in tried.items())
        return f"{method} {path}".rstrip() + f": {because}; tried {details or 'nothing'}"

    def _pick_known(self, unknown_names: set[str]) -> str | None:
        """The next URL whose host name may resolve, or ``None``."""
        for _ in range(len(self.urls)):
            base = self._pick()
            if base not in unknown_names:
                return base
            self._next += 1
        return None

    def _pick(self) -> str:
        return self.urls[self._next % len(self.urls)]

    def _failed(self, base: str) -> None:
        if base == self.leader_url:
            self.leader_url = None
        if base == self._pick():
            self._next += 1

    @staticmethod
    def _final(status: int, body: bytes) -> tuple[int, bytes]:
        if status < 400 or status == 404:
            return status, body
        answer = _json(body)
        kind, message = answer.get("error", "unknown"), answer.get("message", "")
        if status == 410:
            raise SessionExpiredError(message)
        raise RequestError(status, kind, message)


def _outcome(error: BaseException) -> str:
    """The ``outcome`` label of a request that ended with ``error``."""
    if isinstance(error, UnavailableError):
        return "unavailable"
    if isinstance(error, SessionExpiredError):
        return "session_expired"
    if isinstance(error, RequestError):
        return "request_error"
    if isinstance(error, KVClientError):
        return "client_error"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return "error"


def _json(body: bytes) -> dict:
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


class _WireConnectionError(ConnectionError):
    """A connection of the binary protocol ended, or a member sent bytes that are not it."""


class _WireConnection(asyncio.Protocol):
    """One connection to a member's binary protocol: requests are numbered, written in one
    batch per loop turn (or as soon as ``FLUSH_REQUESTS`` wait), and answered in any order
    (``pending``: id -> future).

    Timeouts: each request has a deadline, and one timer per connection looks for requests
    past theirs every ``_SWEEP_S`` while any is pending, so a request times out at most that
    much after its ``timeout_s``. A timer per request (``call_later``, cancelled by the
    answer) cost ~1.7 us, the largest single cost of a request in the client."""

    def __init__(self, frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT) -> None:
        self.reader = FrameReader(frame_bytes_max)
        #: request id -> (its future, its deadline on the loop's clock)
        self.pending: dict[int, tuple[asyncio.Future, float]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.failure: str | None = None
        self._next_id = 0
        self._out: list[bytes] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the connection's, once made

    @property
    def usable(self) -> bool:
        return self.failure is None and self.transport is not None \
            and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(self.failure or ("the server closed the connection" if exc is None
                                    else f"{type(exc).__name__}: {exc}"))
        self.transport = None

    def close(self) -> None:
        self._fail("the client closed the connection")
        if self.transport is not None:
            self.transport.close()

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
        pending, self.pending = self.pending, {}
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(_WireConnectionError(reason))

    def _protocol_error(self, reason: str) -> None:
        self._fail(f"protocol error: {reason}")
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            bodies = self.reader.feed(data)
        except FrameError as error:
            self._protocol_error(str(error))
            return
        pending = self.pending
        for body in bodies:
            try:
                answer = msgpack.unpackb(body)
            except Exception as error:  # msgpack raises several types for bad bytes
                self._protocol_error(f"an answer is not msgpack ({type(error).__name__})")
                return
            if type(answer) is not list or len(answer) != 3 or type(answer[0]) is not int \
                    or type(answer[1]) is not int:
                self._protocol_error("an answer is not [id, status, body]")
                return
            if answer[0] == 0:  # about the connection itself (a frame it refused)
                kind, text, _ = _wire_error(answer[2])
                self._protocol_error(f"{answer[1]} {kind}: {text}")
                return
            waiting = pending.pop(answer[0], None)
            if waiting is not None:
                if not waiting[0].done():
                    waiting[0].set_result((answer[1], answer[2]))

    def request(self, message: list, timeout_s: float) -> asyncio.Future:
        """Send ``message`` (``[op, args...]``); the future gives ``(status, body)``, or
        raises ``_WireConnectionError`` / ``asyncio.TimeoutError`` after ``timeout_s``."""
        loop = self._loop or asyncio.get_running_loop()
        future = loop.create_future()
        transport = self.transport  # ``usable``, inline: this runs per request
        if self.failure is not None or transport is None or transport.is_closing():
            future.set_exception(_WireConnectionError(self.failure or "not connected"))
            return future
        self._next_id += 1
        request_id = self._next_id
        self.pending[request_id] = (future, loop.time() + timeout_s)
        if self._sweeper is None:
            self._sweeper = loop.call_later(_SWEEP_S, self._sweep, loop)
        out = self._out
        out.append(frame([request_id, *message]))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        elif len(out) >= FLUSH_REQUESTS:  # a burst: these go now, the rest at the turn's end
            self._write()
        return future

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Time out the requests past their deadline; look again while any is pending."""
        self._sweeper = None
        now = loop.time()
        pending = self.pending
        for request_id in [i for i, (_, deadline) in pending.items() if deadline <= now]:
            future = pending.pop(request_id)[0]
            if not future.done():
                future.set_exception(asyncio.TimeoutError())
        if pending:
            self._sweeper = loop.call_later(_SWEEP_S, self._sweep, loop)

    def _flush(self) -> None:
        self._scheduled = False
        self._write()

    def _write(self) -> None:
        if self._out and self.usable and self.transport is not None:
            self.transport.write(b"".join(self._out))
        self._out.clear()


def _wire_error(body: object) -> tuple[str, str, str | None]:
    """``(kind, message, location)`` of an error answer's body."""
    if type(body) is list and len(body) >= 2:
        location = body[2] if len(body) > 2 and isinstance(body[2], str) else None
        return str(body[0]), str(body[1]), location
    return "unknown", repr(body), None


def _describe_wire(error: BaseException, timeout_s: float) -> tuple[str, str, bool]:
    """``(reason label, text for people, permanent)`` of a failed binary exchange."""
    if isinstance(error, asyncio.TimeoutError):
        return "timeout", f"timed out after {timeout_s:.2f} s", False
    if isinstance(error, socket.gaierror):
        return "dns", f"DNS failure: {error.strerror or error}", error.errno in _NO_SUCH_NAME
    if isinstance(error, ConnectionRefusedError) or \
            getattr(error, "errno", None) == errno.ECONNREFUSED:
        return "connection", "connection refused", False
    if isinstance(error, _WireConnectionError):
        return "connection", str(error), False
    return "connection", f"{type(error).__name__}: {error}", False


def _key_bytes(key: str | bytes) -> bytes:
    """A key as the binary protocol sends it, held to the HTTP API's rules."""
    if isinstance(key, str):
        data = key.encode("utf-8")
    else:
        data = bytes(key)
        data.decode("utf-8")  # the HTTP API's keys are UTF-8: the same keys both ways
    if not data or b"/" in data:
        raise ValueError(f"a key is a non-empty string without '/', not {key!r}")
    return data


def _consistency(consistency: str) -> str:
    if consistency not in ("barrier", "lease", "local"):
        raise RequestError(400, "bad_consistency",
                           "consistency must be one of barrier, lease, local")
    return consistency
