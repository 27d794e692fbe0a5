"""What an operator scrapes: a real ``pyraft node --metrics`` process on 127.0.0.1, a few
requests to its HTTP API, then ``GET /metrics``: leader gauges, build information, process
metrics and the HTTP requests by route pattern, method and status.

The member is a single-member cluster (it leads at once); it is stopped by its own pid.
"""

from __future__ import annotations

import http.client
import json
import platform
import signal
import subprocess
import sys
import time

import pytest

from pyraft.testing.processes import free_port
from tests.test_metrics import parse

pytest.importorskip("aiohttp")

KV = "/v1/kv/{key}"


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_for(condition, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def node(tmp_path):
    raft, api, metrics = free_port(), free_port(), free_port()
    log = open(tmp_path / "node.log", "wb")
    started_at = time.time()
    process = subprocess.Popen(
        [sys.executable, "-m", "pyraft", "node", "--id", "1",
         "--listen", f"127.0.0.1:{raft}", "--peers", f"1=127.0.0.1:{raft}",
         "--http", f"127.0.0.1:{api}", "--metrics", f"127.0.0.1:{metrics}"],
        stdout=subprocess.DEVNULL, stderr=log)
    try:
        def led():
            code, body = request(api, "GET", "/v1/status")
            return code == 200 and json.loads(body).get("role") == "leader"

        try:
            wait_for(led)
        except AssertionError:
            log.flush()
            raise AssertionError((tmp_path / "node.log").read_text()) from None
        yield api, metrics, started_at, process.pid
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        log.close()


def scrape(port: int) -> dict[str, dict[str, str]]:
    code, body = request(port, "GET", "/metrics")
    assert code == 200
    return parse(body.decode())


def series(samples, family: str, **labels) -> float:
    """The value of the one series of ``family`` whose labels include ``labels``."""
    wanted = [f'{name}="{value}"' for name, value in labels.items()]
    found = [value for key, value in samples[family].items()
             if all(part in key for part in wanted)]
    assert len(found) == 1, (family, labels, samples[family])
    return float(found[0])


def test_a_node_exports_leader_build_process_and_http_metrics(node):
    api, metrics, started_at, pid = node
    assert request(api, "PUT", "/v1/kv/alpha", b"1")[0] == 204
    assert request(api, "PUT", "/v1/kv/beta", b"2")[0] == 204
    assert request(api, "GET", "/v1/kv/alpha")[0] == 200
    assert request(api, "GET", "/v1/kv/missing")[0] == 404
    assert request(api, "GET", "/v1/no/such/route")[0] == 404
    assert request(api, "GET", "/v1/status")[0] == 200

    samples = scrape(metrics)
    assert samples["pyraft_has_leader"] == {"pyraft_has_leader": "1"}
    assert samples["pyraft_is_leader"] == {"pyraft_is_leader": "1"}
    (info, value), = samples["pyraft_build_info"].items()
    assert value == "1"
    assert f'python="{platform.python_version()}"' in info
    assert 'kernels="compiled"' in info or 'kernels="python"' in info
    assert 'version="' in info and 'crc32c="' in info

    # requests by route pattern: never a raw key in a label
    requests = samples["pyraft_http_requests_total"]
    assert series(samples, "pyraft_http_requests_total",
                  route=KV, method="PUT", status="204") == 2
    assert series(samples, "pyraft_http_requests_total",
                  route=KV, method="GET", status="200") == 1
    assert series(samples, "pyraft_http_requests_total",
                  route=KV, method="GET", status="404") == 1
    assert series(samples, "pyraft_http_requests_total",
                  route="unmatched", method="GET", status="404") == 1
    assert series(samples, "pyraft_http_requests_total",
                  route="/v1/status", method="GET", status="200") >= 1
    assert not any(word in key for key in requests for word in ("alpha", "beta", "missing",
                                                                "no/such"))
    durations = samples["pyraft_http_request_duration_seconds"]
    put_count = [value for key, value in durations.items()
                 if key.startswith("pyraft_http_request_duration_seconds_count")
                 and 'method="PUT"' in key]
    assert put_count == ["2"]
    put_inf = [value for key, value in durations.items()
               if 'le="+Inf"' in key and 'method="PUT"' in key]
    assert put_inf == ["2"]

    # process metrics, read from the member's own process
    start = float(samples["process_start_time_seconds"]["process_start_time_seconds"])
    assert started_at - 3 <= start <= time.time() + 1  # boot time is whole seconds
    assert float(samples["process_cpu_seconds_total"]["process_cpu_seconds_total"]) > 0
    rss = float(samples["process_resident_memory_bytes"]["process_resident_memory_bytes"])
    assert rss > 10 * 2 ** 20  # an interpreter with aiohttp and numpy loaded
    with open(f"/proc/{pid}/status") as status:
        rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    assert rss == pytest.approx(rss_kib * 1024, rel=0.5)
    fds = float(samples["process_open_fds"]["process_open_fds"])
    assert fds >= 5  # sockets: Raft listener, HTTP API, metrics, epoll; the data files
    assert float(samples["process_max_fds"]["process_max_fds"]) >= fds

    # no leadership was lost; every reason is exported from the start
    lost = samples["pyraft_leadership_lost_total"]
    assert len(lost) == 6 and set(lost.values()) == {"0"}

    # the counters are cumulative: one more request shows on the next scrape
    assert request(api, "PUT", "/v1/kv/gamma", b"3")[0] == 204
    assert series(scrape(metrics), "pyraft_http_requests_total",
                  route=KV, method="PUT", status="204") == 3
