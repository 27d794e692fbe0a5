"""``KVClient``'s deadline and backoff: the jittered exponential delays (replayed with a seeded
``random.Random``), a deadline kept with an injected clock and sleep against a member that
answers 503 on 127.0.0.1, URLs refused before any request, DNS failures not retried, and a
black-holed endpoint (a listening socket that never accepts) ending at the deadline with an
error that names the URL."""

from __future__ import annotations

import asyncio
import random
import socket
import time

import pytest
from aiohttp import web

from pyraft.kv.client import Backoff, InvalidURLError, KVClient, UnavailableError
from pyraft.testing.processes import free_port
from tests.kv.test_http import run


def test_backoff_doubles_its_ceiling_up_to_the_cap_with_jitter_below_it():
    backoff = Backoff(base_s=0.1, cap_s=0.5, rng=random.Random(7))
    ceilings, delays = [], []
    for _ in range(6):
        ceilings.append(backoff.ceiling())
        delays.append(backoff.next_delay())
    assert ceilings == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5])
    for ceiling, delay in zip(ceilings, delays):
        assert ceiling / 2 <= delay <= ceiling
    replay = random.Random(7)
    assert delays == [replay.uniform(c / 2, c) for c in ceilings]  # the draws, in order
    assert len(set(delays)) == len(delays)  # jittered: no two alike
    backoff.reset()
    assert backoff.ceiling() == pytest.approx(0.1)


def test_backoff_refuses_a_bad_shape():
    with pytest.raises(ValueError):
        Backoff(base_s=0, cap_s=1)
    with pytest.raises(ValueError):
        Backoff(base_s=2, cap_s=1)


class FakeTime:
    """A clock that moves only when the client sleeps; the sleeps are recorded."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def busy_member():
    """An HTTP server on 127.0.0.1 that answers every request 503; (url, runner, hits)."""
    hits: list[str] = []

    async def handler(request):
        hits.append(request.path)
        return web.json_response({"error": "no_leader", "message": "no leader is known"},
                                 status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}", runner, hits


def test_the_deadline_ends_the_retries_and_the_sleeps_follow_the_backoff():
    async def body():
        url, runner, hits = await busy_member()
        fake = FakeTime()
        try:
            async with KVClient([url], retries=1000, deadline_s=1.0, clock=fake.clock,
                                sleep=fake.sleep,
                                backoff=Backoff(0.05, 0.4, random.Random(3))) as kv:
                with pytest.raises(UnavailableError) as caught:
                    await kv.get("k")
        finally:
            await runner.cleanup()
        # the same draws, up to the one that would leave no time for an attempt
        expected, left, replay = [], 1.0, Backoff(0.05, 0.4, random.Random(3))
        while (delay := replay.next_delay()) < left - 0.005:
            expected.append(delay)
            left -= delay
        assert fake.sleeps == pytest.approx(expected)
        assert 0.5 < sum(fake.sleeps) < 1.0
        assert len(hits) == len(expected) + 1 == caught.value.attempts
        error = caught.value
        assert error.tried == {url: "HTTP 503 no_leader: no leader is known"}
        assert url in str(error) and "deadline" in str(error)

    run(body)


def test_a_call_deadline_overrides_the_client_one():
    async def body():
        url, runner, hits = await busy_member()
        fake = FakeTime()
        try:
            async with KVClient([url], retries=1000, deadline_s=30.0, clock=fake.clock,
                                sleep=fake.sleep,
                                backoff=Backoff(0.1, 0.1, random.Random(1))) as kv:
                with pytest.raises(UnavailableError):
                    await kv.get("k", deadline_s=0.3)
        finally:
            await runner.cleanup()
        assert 0.2 <= sum(fake.sleeps) < 0.3
        assert 3 <= len(hits) <= 6  # delays of 0.05-0.1 s within 0.3 s of fake time

    run(body)


def test_without_a_deadline_the_retries_bound_the_call():
    async def body():
        url, runner, hits = await busy_member()
        fake = FakeTime()
        try:
            async with KVClient([url], retries=4, clock=fake.clock, sleep=fake.sleep) as kv:
                with pytest.raises(UnavailableError) as caught:
                    await kv.get("k")
        finally:
            await runner.cleanup()
        assert len(hits) == 5 and len(fake.sleeps) == 4
        assert "after 4 retries" in str(caught.value)

    run(body)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:8080", "http://", "http://127.0.0.1:99999",
                                 "http://127.0.0.1:port", "http://h:1/v1/kv", "", " ",
                                 "file:///tmp/x", "http://user@h:1"])
def test_urls_that_are_not_member_urls_are_refused_at_once(url):
    with pytest.raises(InvalidURLError) as caught:
        KVClient([url])
    shown = url if url and " " not in url else repr(url)  # quoted only when blank or spaced
    assert str(caught.value).startswith(f"{shown} is not a member URL"), caught.value
    assert isinstance(caught.value, ValueError)


def test_member_urls_are_normalised():
    client = KVClient(["127.0.0.1:1", "HTTPS://example.org:8443/", "http://[::1]:5"])
    assert client.urls == ["http://127.0.0.1:1", "https://example.org:8443", "http://[::1]:5"]


def test_a_name_that_does_not_resolve_is_tried_once():
    async def body():
        fake = FakeTime()
        bad = "http://nonexistent.invalid:8080"
        async with KVClient([bad], retries=1000, deadline_s=60.0, clock=fake.clock,
                            sleep=fake.sleep) as kv:
            with pytest.raises(UnavailableError) as caught:
                await kv.get("k")
        assert caught.value.attempts == 1 and fake.sleeps == []
        assert caught.value.tried[bad].startswith("DNS failure")
        assert "resolves" in str(caught.value)

    run(body)


def test_a_name_that_does_not_resolve_is_skipped_for_the_other_urls():
    async def body():
        fake = FakeTime()
        bad, refused = "http://nonexistent.invalid:8080", f"http://127.0.0.1:{free_port()}"
        async with KVClient([bad, refused], retries=1000, deadline_s=0.5, clock=fake.clock,
                            sleep=fake.sleep, backoff=Backoff(0.1, 0.1)) as kv:
            with pytest.raises(UnavailableError) as caught:
                await kv.get("k")
        error = caught.value
        assert error.tried == {bad: error.tried[bad], refused: "connection refused"}
        assert error.tried[bad].startswith("DNS failure")
        assert error.attempts >= 4  # the refused one again and again, the bad name once
        assert f"{bad}: DNS failure" in str(error) and f"{refused}: connection refused" \
            in str(error)

    run(body)


def test_a_black_hole_ends_at_the_deadline_naming_the_url():
    """A listening socket with a full backlog that never accepts: connections hang."""
    async def body():
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        url = f"http://127.0.0.1:{hole.getsockname()[1]}"
        try:
            async with KVClient([url], timeout_s=5.0, retries=1000, deadline_s=0.5) as kv:
                started = time.monotonic()
                with pytest.raises(UnavailableError) as caught:
                    await kv.put("k", "v")
                elapsed = time.monotonic() - started
        finally:
            hole.close()
        assert "timed out" in caught.value.tried[url]
        assert url in str(caught.value)
        assert elapsed < 3.0  # the deadline, not timeout_s nor the retries (generous bound)

    run(body)
