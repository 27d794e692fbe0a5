"""The key-value HTTP API over HTTPS, its admin credential, and ``/livez`` / ``/readyz``.

Real ``pyraft node`` processes on 127.0.0.1, started only with flags ``pyraft node --help``
documents, and ended by their own pid. Certificates come from throw-away trustme CAs: the
cluster's CA signs the members' HTTPS certificates and the admin's client certificate;
another CA signs an intruder's. A membership change without the credential must answer
401/403 and leave the membership as it was (``/v1/status`` of every member says so).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest
import trustme

from pyraft.errors import ConfigError
from pyraft.kv import security
from pyraft.kv.client import KVClient, RequestError, TlsError
from pyraft.testing.processes import free_port

TOKEN = "s3cret-token-for-tests-0123456789"
WAIT_S = 40.0  # generous: the machine is shared


# ---- certificates and files ----------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Files: the cluster CA, a member certificate (127.0.0.1), an admin client certificate
    from the same CA, one from another CA, and a token file (mode 600)."""
    directory = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    files = {"ca": str(directory / "ca.pem"), "other_ca": str(directory / "other-ca.pem")}
    ca.cert_pem.write_to_path(files["ca"])
    other.cert_pem.write_to_path(files["other_ca"])
    for name, issuer, identity in (("member", ca, "127.0.0.1"), ("admin", ca, "admin.test"),
                                   ("intruder", other, "admin.test")):
        cert = issuer.issue_cert(identity)
        files[name] = str(directory / f"{name}.pem")
        files[name + "_key"] = str(directory / f"{name}.key")
        cert.cert_chain_pems[0].write_to_path(files[name])
        cert.private_key_pem.write_to_path(files[name + "_key"])
    files["token"] = write_token(directory / "token", TOKEN + "\n")
    files["wrong_token"] = write_token(directory / "wrong", "not-the-token\n")
    return files


def write_token(path, text: str, mode: int = 0o600) -> str:
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


# ---- member processes -----------------------------------------------------------------------
class Node:
    """One ``pyraft node`` process; its stderr goes to a file (never an unread pipe)."""

    def __init__(self, member: int, listen: str, peers: dict[int, str], http: dict[int, str],
                 extra: list[str]) -> None:
        self.id, self.http = member, http[member]
        self.args = [sys.executable, "-m", "pyraft", "node", "--id", str(member),
                     "--listen", listen, "--http", http[member],
                     "--peers", ",".join(f"{m}={a}" for m, a in peers.items()),
                     "--http-peers", ",".join(f"{m}={a}" for m, a in http.items()),
                     "--log-level", "WARNING", *extra]
        self.log = tempfile.TemporaryFile(mode="w+", prefix=f"node{member}-")
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=self.log)

    def end(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait(15)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()


def https_flags(pki, *more: str) -> list[str]:
    return ["--http-cert", pki["member"], "--http-key", pki["member_key"],
            "--http-ca", pki["ca"], "--admin-token-file", pki["token"], *more]


def context(pki, client: str | None = None) -> ssl.SSLContext:
    """A client context trusting the cluster CA, presenting ``client``'s certificate."""
    if client is None:
        return security.client_ssl_context(pki["ca"])
    return security.client_ssl_context(pki["ca"], pki[client], pki[client + "_key"])


def fetch(url: str, method: str = "GET", *, ssl_context: ssl.SSLContext | None = None,
          token: str | None = None, body: dict | None = None) -> tuple[int, dict, str]:
    """``(status, headers, body)`` of one request (urllib: no client-side retries)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=ssl_context) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def wait_until(probe, what: str, timeout_s: float = WAIT_S, interval_s: float = 0.1):
    """Call ``probe`` until it returns a true value (errors count as false)."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (OSError, ValueError) as error:
            value, last = None, error
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not reached in {timeout_s} s (last error: {last})")


def ready(url: str, ssl_context=None) -> dict | None:
    status, _, body = fetch(url + "/readyz", ssl_context=ssl_context)
    return json.loads(body) if status == 200 else None


def voters(url: str, ssl_context) -> list[int]:
    _, _, body = fetch(url + "/v1/status", ssl_context=ssl_context)
    return sorted(m["id"] for m in json.loads(body)["members"] if m["voter"])


@pytest.fixture
def nodes():
    """Every node a test starts; all are ended (by pid) when it finishes."""
    started: list[Node] = []
    yield started
    for node in started:
        node.end(signal.SIGKILL)
        node.log.close()


# ---- the credential, unit by unit ---------------------------------------------------------
def test_token_file_rules(tmp_path):
    good = write_token(tmp_path / "good", TOKEN + "\n")
    assert security.read_token_file(good) == TOKEN  # one trailing newline dropped
    assert security.read_token_file(write_token(tmp_path / "crlf", "abc\r\n")) == "abc"
    cases = {
        "missing": (str(tmp_path / "missing"), "cannot read"),
        "empty": (write_token(tmp_path / "empty", "\n"), "is empty"),
        "open": (write_token(tmp_path / "open", TOKEN, 0o644), "chmod 600"),
        "spaces": (write_token(tmp_path / "spaces", "two words"), "printable ASCII"),
        "lines": (write_token(tmp_path / "lines", "a\nb\n"), "printable ASCII"),
        "large": (write_token(tmp_path / "large", "x" * 5000), "more than 4096"),
    }
    for name, (path, message) in cases.items():
        with pytest.raises(ConfigError) as caught:
            security.read_token_file(path)
        assert caught.value.field == "--admin-token-file", name
        assert path in str(caught.value) and message in str(caught.value), name


def test_admin_policy_decisions():
    token = security.AdminPolicy(token=TOKEN)
    assert token.check(f"Bearer {TOKEN}", None) is None
    assert token.check(f"bearer  {TOKEN} ", None) is None
    assert token.check(None, None).status == 401
    assert token.check(f"Basic {TOKEN}", None).status == 401
    assert token.check("Bearer ", None).status == 401
    assert token.check("Bearer nope", None).status == 403
    assert token.check(f"Bearer {TOKEN}x", None).status == 403
    assert token.check(None, {"subject": ()}).status == 401  # certificates are not accepted
    certificates = security.AdminPolicy(client_certificates=True)
    assert certificates.check(None, {"subject": ()}) is None
    assert certificates.check(None, None).status == 401
    assert certificates.check(f"Bearer {TOKEN}", None).status == 403  # no token configured
    nobody = security.AdminPolicy()
    denied = nobody.check(f"Bearer {TOKEN}", {"subject": ()})
    assert (denied.status, denied.kind) == (403, "admin_disabled")
    assert "--admin-token-file" in denied.message and "--insecure-admin" in denied.message
    assert security.AdminPolicy(insecure=True).check(None, None) is None


def test_client_security_options(pki, tmp_path):
    parser = argparse.ArgumentParser()
    security.add_client_security_arguments(parser)
    assert security.client_security(parser.parse_args([])) == (None, None)
    context_, token = security.client_security(parser.parse_args(
        ["--http-ca", pki["ca"], "--http-cert", pki["admin"], "--http-key", pki["admin_key"],
         "--admin-token-file", pki["token"]]))
    assert isinstance(context_, ssl.SSLContext) and token == TOKEN
    assert context_.verify_mode == ssl.CERT_REQUIRED and context_.check_hostname
    for argv, flag in ((["--http-ca", str(tmp_path / "nope.pem")], "--http-ca"),
                       (["--http-ca", pki["token"]], "--http-ca"),
                       (["--http-key", pki["admin_key"]], "--http-key"),
                       (["--http-cert", pki["admin"], "--http-key", pki["member_key"]],
                        "--http-cert"),
                       (["--admin-token-file", str(tmp_path / "nope")], "--admin-token-file")):
        with pytest.raises(ConfigError) as caught:
            security.client_security(parser.parse_args(argv))
        assert caught.value.field == flag, argv


@pytest.mark.parametrize("flags, named", [
    (["--http-cert", "/nonexistent/cert.pem", "--http-key", "/nonexistent/key.pem"],
     "--http-cert: cannot read /nonexistent/cert.pem"),
    (["--http-cert", "CERT", "--http-key", "/nonexistent/key.pem"],
     "--http-key: cannot read /nonexistent/key.pem"),
    (["--http-cert", "CERT", "--http-key", "KEY", "--http-ca", "/nonexistent/ca.pem"],
     "--http-ca: cannot read /nonexistent/ca.pem"),
    (["--http-cert", "CERT", "--http-key", "OTHER_KEY"], "matching private key"),
    (["--http-cert", "KEY", "--http-key", "KEY"], "--http-cert: "),
    (["--http-cert", "CERT"], "--http-key: HTTPS needs both"),
    (["--http-ca", "CA"], "--http-ca: client certificates need HTTPS"),
    (["--admin-token-file", "/nonexistent/token"], "--admin-token-file: cannot read"),
    (["--admin-token-file", "OPEN"], "chmod 600"),
])
def test_node_refuses_bad_security_files(pki, tmp_path, flags, named):
    """One line naming the flag and the file, exit status 2, no traceback."""
    replace = {"CERT": pki["member"], "KEY": pki["member_key"], "CA": pki["ca"],
               "OTHER_KEY": pki["admin_key"],
               "OPEN": write_token(tmp_path / "open", TOKEN, 0o644)}
    flags = [replace.get(flag, flag) for flag in flags]
    result = subprocess.run(
        [sys.executable, "-m", "pyraft", "node", "--id", "1", "--listen",
         f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{free_port()}", *flags],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert "Traceback" not in result.stderr


# ---- a cluster over HTTPS -------------------------------------------------------------------
def test_https_cluster_admin_credentials_and_health(pki, nodes, tmp_path):
    peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3, 4)}
    http = {m: f"127.0.0.1:{free_port()}" for m in peers}
    url = {m: f"https://{http[m]}" for m in peers}
    first = {m: peers[m] for m in (1, 2, 3)}
    trusted = context(pki)

    # one member of three: it serves (livez) but is not ready (no leader without a quorum)
    nodes.append(Node(1, peers[1], first, http, https_flags(pki)))
    status, _, body = wait_until(lambda: fetch(url[1] + "/livez", ssl_context=trusted),
                                 "member 1 serves")
    assert (status, body) == (200, "ok\n")
    status, headers, body = fetch(url[1] + "/readyz", ssl_context=trusted)
    assert status == 503 and headers["Retry-After"] == "1", body
    assert json.loads(body)["reason"] == "no_leader"

    nodes.extend(Node(m, peers[m], first, http, https_flags(pki)) for m in (2, 3))
    for member in (1, 2, 3):  # a quorum: every member becomes ready
        document = wait_until(lambda m=member: ready(url[m], trusted), f"member {member} ready")
        assert document["leader"] in (1, 2, 3) and document["applied"] >= document["commit"]

    async def data_plane():
        async with KVClient([url[m] for m in (1, 2, 3)], ssl=trusted, timeout_s=5.0,
                            retries=40) as client:
            assert await client.put("k", "over https") is None
            assert await client.get("k") == b"over https"
        # host:port without a scheme is https:// when a TLS context is given
        async with KVClient([http[2]], ssl=trusted, timeout_s=5.0, retries=40) as client:
            assert await client.get("k", consistency="local") in (b"over https", None)
            assert await client.get("k") == b"over https"

    asyncio.run(data_plane())

    # membership changes without the credential, or with a wrong one: refused, nothing changes
    leader_id = ready(url[1], trusted)["leader"]
    victim = next(m for m in (1, 2, 3) if m != leader_id)
    target = url[leader_id] + f"/v1/members/{victim}"
    status, headers, body = fetch(target, "DELETE", ssl_context=trusted)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), body
    status, _, body = fetch(target, "DELETE", ssl_context=trusted, token="not-the-token")
    assert status == 403 and json.loads(body)["error"] == "forbidden", body
    joiner = {"id": 4, "address": peers[4], "metadata": {"http": http[4]}}
    status, _, body = fetch(url[leader_id] + "/v1/members", "POST", ssl_context=trusted,
                            body=joiner)
    assert status == 401, body
    status, _, body = fetch(url[victim] + "/v1/members", "POST", ssl_context=trusted,
                            token="wrong", body=joiner)
    assert status == 403, body  # a follower checks the credential before redirecting
    # a client certificate from another CA is refused at the handshake
    with pytest.raises(OSError):  # TLS 1.3: the server hangs up after the handshake
        fetch(target, "DELETE", ssl_context=context(pki, "intruder"))
    time.sleep(1.0)  # a change, had one been proposed, would commit in well under a second
    for member in (1, 2, 3):
        assert voters(url[member], trusted) == [1, 2, 3]

    # a client certificate from the cluster CA is a credential: member 4 joins with --join,
    # presenting its HTTPS certificate (no token), through a follower that redirects it
    nodes.append(Node(4, peers[4], first, http, [
        "--http-cert", pki["member"], "--http-key", pki["member_key"], "--http-ca", pki["ca"],
        "--join", url[victim]]))
    wait_until(lambda: voters(url[leader_id], trusted) == [1, 2, 3, 4], "member 4 joined")

    # the client commands take the same options: a read over HTTPS, and the token is a
    # credential: remove member 4 again through a follower (and stop it)
    done = subprocess.run(
        [sys.executable, "-m", "pyraft", "kv", "get", "k", "--cluster", url[victim],
         "--http-ca", pki["ca"], "--timeout", "20"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "over https\n"), done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "pyraft", "member", "remove", "4", "--cluster", url[victim],
         "--http-ca", pki["ca"], "--admin-token-file", pki["token"], "--timeout", "20"],
        capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "member 4 removed\n"), done.stderr
    # an address no member could dial is refused before anything is proposed
    done = subprocess.run(
        [sys.executable, "-m", "pyraft", "member", "add", "5", "bad/host:7105", "--cluster",
         url[victim], "--http-ca", pki["ca"], "--admin-token-file", pki["token"],
         "--timeout", "20"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "bad/host:7105" in done.stderr, done.stderr  # usage
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert voters(url[victim], trusted) == [1, 2, 3]
    wait_until(lambda: all(voters(url[m], trusted) == [1, 2, 3] for m in (1, 2, 3)),
               "member 4 removed")
    nodes[3].end()

    # plain HTTP to an HTTPS member fails cleanly, without a hang
    async def plain_to_https():
        async with KVClient([f"http://{http[1]}"], timeout_s=2.0, retries=2) as client:
            started = time.monotonic()
            with pytest.raises(RequestError) as caught:
                await client.get("k")
            return caught.value, time.monotonic() - started

    error, elapsed = asyncio.run(plain_to_https())
    assert isinstance(error, RequestError), error  # an answer, not retries into the void
    assert error.status == 400 and error.kind == "https_required", error
    assert f"https://HOST:{http[1].rpartition(':')[2]}" in error.message
    assert elapsed < 15.0, elapsed
    status, _, body = fetch(f"http://{http[1]}/v1/status")  # any plain client, e.g. curl
    assert status == 400 and json.loads(body)["error"] == "https_required", body

    # a member whose peers are gone: eventually not ready, for want of a leader
    survivor = victim
    for node in nodes[:3]:
        if node.id != survivor:
            node.end(signal.SIGKILL)
    document = wait_until(
        lambda: (lambda s: s[0] == 503 and json.loads(s[2]))(
            fetch(url[survivor] + "/readyz", ssl_context=trusted)),
        "the survivor is not ready")
    assert document["reason"] == "no_leader" and document["ready"] is False
    assert fetch(url[survivor] + "/livez", ssl_context=trusted)[0] == 200


def test_plain_member_default_admin_refusal_and_https_mismatch(pki, nodes):
    """A plain-HTTP member without a credential refuses membership changes (403 naming the
    flags); ``--insecure-admin`` is the explicit way out; HTTPS to a plain member is a
    ``TlsError`` at once."""
    peers = {1: f"127.0.0.1:{free_port()}"}
    http = {1: f"127.0.0.1:{free_port()}"}
    nodes.append(Node(1, peers[1], peers, http, []))
    url = f"http://{http[1]}"
    wait_until(lambda: ready(url), "the single member is ready")
    status, _, body = fetch(url + "/v1/members/1", "DELETE", token=TOKEN)
    assert status == 403, body
    document = json.loads(body)
    assert document["error"] == "admin_disabled" and "--admin-token-file" in document["message"]
    assert voters(url, None) == [1]
    # a member that asks to join it is refused too, and says what to do
    peers[3] = f"127.0.0.1:{free_port()}"
    http[3] = f"127.0.0.1:{free_port()}"
    nodes.append(Node(3, peers[3], {1: peers[1]}, http, ["--join", url]))
    wait_until(lambda: nodes[-1].process.poll() is not None, "the joining member stops")
    assert nodes[-1].process.returncode == 2  # an operator's mistake: no retry can help
    output = nodes[-1].output()
    assert "refused this member (403 admin_disabled" in output, output
    assert "--admin-token-file" in output and "Traceback" not in output, output
    assert voters(url, None) == [1]

    async def https_to_plain():
        async with KVClient([f"https://{http[1]}"], ssl=context(pki), timeout_s=2.0,
                            retries=5) as client:
            started = time.monotonic()
            with pytest.raises(TlsError):
                await client.get("k")
            return time.monotonic() - started

    assert asyncio.run(https_to_plain()) < 5.0  # not retried

    # --insecure-admin: the explicit opt-out lets a request without a credential through
    # (a malformed body, so that nothing changes: 400, not 401/403)
    other_peers = {2: f"127.0.0.1:{free_port()}"}
    other_http = {2: f"127.0.0.1:{free_port()}"}
    nodes.append(Node(2, other_peers[2], other_peers, other_http, ["--insecure-admin"]))
    other = f"http://{other_http[2]}"
    wait_until(lambda: ready(other), "the insecure member is ready")
    status, _, body = fetch(other + "/v1/members", "POST", body={"address": "x"})
    assert status == 400 and json.loads(body)["error"] == "bad_member", body


# ---- in process, on asyncio: the HTTPS listener leaks nothing --------------------------------
def test_https_listener_in_process(pki):
    """The HTTPS site on plain asyncio (``pyraft node`` prefers uvloop): TLS clients are
    served, a plain request gets ``400 https_required``, a TLS client refused at the handshake
    and a client that sends nothing do not disturb it, and stopping leaves no task behind
    (``run`` fails on loop errors and leaked tasks)."""
    import aiohttp

    from pyraft.transport.memory import MemoryNetwork
    from tests.kv.test_http import kv_cluster, leader_of, run

    server = security.server_ssl_context(pki["member"], pki["member_key"], pki["ca"])
    admin = security.AdminPolicy(token=TOKEN, client_certificates=True)

    async def body():
        async with kv_cluster(MemoryNetwork(), ssl_context=server, admin=admin) as (members,
                                                                                   urls):
            urls = {m: url.replace("http://", "https://") for m, url in urls.items()}
            leader = await leader_of(members)
            follower = next(m for m in members if m is not leader)
            loop = asyncio.get_running_loop()
            host, port = urls[follower.id].removeprefix("https://").split(":")
            silent = await loop.run_in_executor(  # connects and never sends a byte
                None, socket.create_connection, (host, int(port)))
            try:
                async with KVClient([urls[follower.id]], ssl=context(pki), timeout_s=2,
                                    retries=20) as kv:
                    assert await kv.put("k", "v") is None
                    assert kv.leader_url == urls[leader.id]  # the redirect said https
                    assert await kv.get("k") == b"v"
                async with aiohttp.ClientSession() as session:
                    async with session.get(urls[follower.id].replace("https", "http")
                                           + "/v1/status") as answer:
                        assert answer.status == 400
                        assert (await answer.json())["error"] == "https_required"
                    with pytest.raises(aiohttp.ClientError):
                        async with session.get(urls[leader.id] + "/livez",
                                               ssl=context(pki, "intruder")) as answer:
                            await answer.read()
                    async with session.get(urls[follower.id] + "/readyz",
                                           ssl=context(pki)) as answer:
                        assert answer.status == 200, await answer.text()
                    # the admin's client certificate is a credential, on the leader
                    async with session.delete(urls[leader.id] + "/v1/members/9",
                                              ssl=context(pki)) as answer:
                        assert answer.status == 401, await answer.text()
                    async with session.delete(urls[leader.id] + f"/v1/members/{follower.id}",
                                              ssl=context(pki, "admin")) as answer:
                        assert answer.status == 200, await answer.text()
                assert follower.id not in {m.id for m in leader.members if m.voter}
            finally:
                silent.close()

    run(body)


def test_kvclient_sends_the_token_and_uses_the_context(pki):
    """``KVClient(ssl=..., token=...)`` as a client command builds it from its flags: every
    request carries the bearer token, over a TLS connection checked against the CA. The
    server is a small aiohttp app that records what it receives."""
    from aiohttp import web

    from tests.kv.test_http import run

    parser = argparse.ArgumentParser()
    security.add_client_security_arguments(parser)
    client_context, token = security.client_security(parser.parse_args(
        ["--http-ca", pki["ca"], "--admin-token-file", pki["token"]]))
    seen: list[tuple[str, str | None]] = []

    async def status(request: web.Request) -> web.Response:
        seen.append((request.scheme, request.headers.get("Authorization")))
        return web.json_response({"id": 1})

    async def body():
        app = web.Application()
        app.router.add_get("/v1/status", status)
        runner = web.AppRunner(app)
        await runner.setup()
        server = security.server_ssl_context(pki["member"], pki["member_key"])
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with KVClient([f"127.0.0.1:{port}"], ssl=client_context, token=token,
                                retries=0) as kv:
                assert await kv.status() == {"id": 1}
            other = security.client_ssl_context(pki["other_ca"])  # trusts another CA only
            async with KVClient([f"127.0.0.1:{port}"], ssl=other, retries=0) as kv:
                with pytest.raises(TlsError):
                    await kv.status()
        finally:
            await runner.cleanup()

    run(body)
    assert seen == [("https", f"Bearer {TOKEN}")]
