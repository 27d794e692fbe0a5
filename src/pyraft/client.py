"""``KVClient``: an asyncio client of the key-value HTTP API (:mod:`pyraft.kv.http`).

Needs ``aiohttp`` (the ``http`` extra). Use it as an async context manager::

    async with KVClient(["http://10.0.0.1:8080", "http://10.0.0.2:8080"]) as kv:
        await kv.put("greeting", b"hello")
        assert await kv.get("greeting") == b"hello"

Writes are exactly-once: the client opens a session (``POST /v1/sessions``) before its first
write, numbers its writes (``X-Client-Id`` / ``X-Request-Seq``) and sends a retry with the
same number, so a retried write is never applied twice. Writes run one at a time per client
(the server keeps the result of the last request only); reads run concurrently.

The client follows ``307`` redirects itself and remembers the leader; it retries ``503``,
``504`` and connection failures with a growing delay, ``retries`` times, on the next URL.

Errors: :class:`KVClientError` is the base; :class:`UnavailableError` when the retries are
used up (a write's outcome is then unknown); :class:`SessionExpiredError` when the session
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
import json
import ssl as _ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TypeVar

try:
    import aiohttp
except ImportError:  # the ``http`` extra is not installed: KVClient() says so
    aiohttp = None

from pyraft.metrics import ClientMetrics

__all__ = ["KVClient", "KVClientError", "RequestError", "SessionExpiredError", "TlsError",
           "UnavailableError"]

_RETRIED = (503, 504)
_T = TypeVar("_T")


class KVClientError(Exception):
    """Base of the errors of :class:`KVClient`."""


class UnavailableError(KVClientError):
    """No member answered within the retries (a write's outcome is unknown)."""


class SessionExpiredError(KVClientError):
    """The client's session expired; the write was not applied."""


class TlsError(KVClientError, ConnectionError):
    """The TLS handshake with a member failed (HTTPS to a plain-HTTP member, an untrusted or
    refused certificate): a configuration mistake, not retried."""


class RequestError(KVClientError, ValueError):
    """The server refused the request (4xx); ``status`` and ``kind`` (its error type)."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(f"{status} {kind}: {message}")
        self.status = status
        self.kind = kind
        self.message = message


def _base(url: str, scheme: str = "http") -> str:
    if "://" not in url:
        url = f"{scheme}://{url}"
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


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
    again after a ``503``, ``504``, a connection failure or a redirect. ``metrics``: the
    :class:`~pyraft.metrics.ClientMetrics` to record into (by default a new one, mirrored to
    the global OpenTelemetry meter provider when the API is installed). ``ssl``: the TLS
    context of ``https://`` URLs (default: the system's trust store); ``token``: sent as
    ``Authorization: Bearer`` with every request.
    """

    def __init__(self, urls: list[str], *, timeout_s: float = 5.0, retries: int = 10,
                 metrics: ClientMetrics | None = None, ssl: _ssl.SSLContext | None = None,
                 token: str | None = None) -> None:
        if aiohttp is None:
            raise ImportError("the key-value client needs aiohttp: pip install 'raftcore[http]'")
        if not urls:
            raise ValueError("give at least one URL")
        if metrics is not None and not isinstance(metrics, ClientMetrics):
            raise TypeError(f"metrics must be a ClientMetrics, not {type(metrics).__name__}")
        self.metrics = metrics if metrics is not None else ClientMetrics()
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise TypeError(f"ssl must be an ssl.SSLContext, not {type(ssl).__name__}")
        self.urls = [_base(url, "http" if ssl is None else "https") for url in urls]
        self._ssl = ssl
        self._headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self.timeout_s = timeout_s
        self.retries = retries
        self.leader_url: str | None = None
        self.client_id: int | None = None
        self.sequence = 0
        self._next = 0
        self._known_leader: str | None = None  # the last leader learned (leader_url may reset)
        self._http: aiohttp.ClientSession | None = None
        self._write_lock = asyncio.Lock()

    async def __aenter__(self) -> KVClient:
        connector = None if self._ssl is None else aiohttp.TCPConnector(ssl=self._ssl)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                           connector=connector, headers=self._headers)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    # ---- the API -------------------------------------------------------------------------
    async def get(self, key: str | bytes, consistency: str = "barrier") -> bytes | None:
        """The value of ``key`` (``None`` when absent) read at ``consistency``: ``barrier``
        (linearizable, any member), ``lease`` (linearizable, the leader) or ``local``."""
        path = _key_path(key)
        status, body = await self._measured("get", self._request(
            "GET", path, operation="get", params={"consistency": consistency}),
            lambda answer: answer[0] == 404)
        return None if status == 404 else body

    async def put(self, key: str | bytes, value: str | bytes) -> bytes | None:
        """Set ``key`` to ``value`` (``str`` is sent as UTF-8); returns the previous value
        (``None`` when the key was absent)."""
        path, data = _key_path(key), _value(value)
        status, body = await self._measured("put", self._write("PUT", path, "put", data=data))
        return None if status == 204 else body

    async def delete(self, key: str | bytes) -> bytes | None:
        """Remove ``key``; returns the removed value (``None`` when it was absent)."""
        path = _key_path(key)
        status, body = await self._measured("delete", self._write("DELETE", path, "delete"),
                                            lambda answer: answer[0] == 204)
        return None if status == 204 else body

    async def cas(self, key: str | bytes, expected: str | bytes | None,
                  new: str | bytes) -> tuple[bool, bytes | None]:
        """Set ``key`` to ``new`` if it holds ``expected`` (``None``: if it is absent);
        returns ``(ok, current)``, ``current`` being the value afterwards."""
        path = _key_path(key) + "/cas"
        document = {
            "encoding": "base64",
            "expected": None if expected is None
            else base64.b64encode(_value(expected)).decode("ascii"),
            "new": base64.b64encode(_value(new)).decode("ascii"),
        }
        return await self._measured("cas", self._cas(path, document),
                                    lambda answer: not answer[0])

    async def _cas(self, path: str, document: dict) -> tuple[bool, bytes | None]:
        _, body = await self._write("POST", path, "cas", json=document)
        answer = _json(body)
        value = answer.get("value")
        if value is not None:
            value = base64.b64decode(value) if answer.get("encoding") == "base64" \
                else value.encode("utf-8")
        return bool(answer["ok"]), value

    async def status(self, url: str | None = None) -> dict:
        """The status of the member at ``url`` (by default the first that answers)."""
        _, body = await self._measured("status", self._request(
            "GET", "/v1/status", operation="status", url=url and _base(url), follow=False))
        return _json(body)

    async def open_session(self) -> int:
        """Open a new session (done by the first write); returns its client id."""
        _, body = await self._measured("open_session", self._request(
            "POST", "/v1/sessions", operation="open_session", leader=True))
        self.client_id, self.sequence = int(_json(body)["client_id"]), 0
        return self.client_id

    # ---- the machinery -------------------------------------------------------------------
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

    async def _write(self, method: str, path: str, operation: str,
                     **kwargs) -> tuple[int, bytes]:
        async with self._write_lock:
            if self.client_id is None:
                await self.open_session()
            self.sequence += 1
            headers = {"X-Client-Id": str(self.client_id), "X-Request-Seq": str(self.sequence)}
            try:
                return await self._request(method, path, operation=operation,
                                           headers=headers, leader=True, **kwargs)
            except SessionExpiredError:
                self.client_id = None
                raise

    async def _request(self, method: str, path: str, *, operation: str,
                       url: str | None = None, leader: bool = False, follow: bool = True,
                       **kwargs) -> tuple[int, bytes]:
        """Send until a final answer; the same request (same sequence) on every attempt."""
        if self._http is None:
            raise KVClientError("use the client as 'async with KVClient(...)'")
        metrics = self.metrics
        delay, last, redirected = 0.02, "no attempt", None
        for attempt in range(self.retries + 1):
            base = url or redirected or (
                self.leader_url if leader and self.leader_url else self._pick())
            redirected = None
            try:
                async with self._http.request(method, base + path, allow_redirects=False,
                                              **kwargs) as response:
                    status, body = response.status, await response.read()
                    location = response.headers.get("Location")
            except aiohttp.ClientSSLError as exc:
                raise TlsError(f"{method} {base}{path}: the TLS handshake failed ({exc}); "
                               "check the URL's scheme and the CA") from None
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                last = f"{base}: {type(exc).__name__}: {exc}"
                self._failed(base)
                if isinstance(exc, asyncio.TimeoutError):
                    reason = "timeout"
                    metrics.timeouts.inc(1, (operation, "client"))
                else:
                    reason = "connection"
            else:
                if status == 307 and location and follow:
                    redirected = _base(location)
                    self._learned_leader(redirected)
                    metrics.redirects.inc()
                    last = f"{base}: redirected to {redirected}"
                    continue
                if status not in _RETRIED:
                    if leader and url is None and (status < 400 or status == 404):
                        self._learned_leader(base)  # only the leader answers these
                    return self._final(status, body)
                last = f"{base}: {status} {_json(body).get('message', '')}"
                if status == 503:
                    reason = "unavailable"
                    self._failed(base)
                else:
                    reason = "server_timeout"
                    metrics.timeouts.inc(1, (operation, "server"))
            if attempt < self.retries:
                metrics.retries.inc(1, (reason,))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise UnavailableError(f"{method} {path}: no answer after {self.retries} retries "
                               f"(last: {last})")

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
