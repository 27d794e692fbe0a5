"""The fuzz targets of ``pyraft.testing.fuzz``: a short coverage-guided atheris run of each
(in its own process), hypothesis driving the same functions, the replay of every input kept
under ``regressions/<target>/`` (crashes found, and seeds), and checks that each target does
detect a broken contract.

The long run (not part of the default tests)::

    PYTHONPATH=src python -m pyraft.testing.fuzz TARGET --seconds 3600 \\
        --corpus /tmp/corpus-TARGET --crashes /tmp/crashes

(``--runs 10000000`` for the 10-million-input run of the differential targets ``codec`` and
``append``, which compare the compiled modules with their ``.py`` twins.)
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyraft
from pyraft.testing import fuzz
from raftcore.framing import encode_entries

pytestmark = pytest.mark.fuzz

REGRESSIONS = pathlib.Path(__file__).parent / "regressions"
#: atheris is optional (the ``fuzz`` extra; the ``test`` extra brings it only where it has
#: wheels): without it the coverage-guided runs skip, and everything else here still runs
HAVE_ATHERIS = importlib.util.find_spec("atheris") is not None
SOURCE = str(pathlib.Path(pyraft.__file__).parent.parent)

def regression_files() -> list:
    cases = []
    for target in sorted(fuzz.TARGETS):
        for path in sorted((REGRESSIONS / target).glob("*.bin")):
            cases.append(pytest.param(target, path, id=f"{target}/{path.name}"))
    return cases


@pytest.mark.parametrize("target", sorted(fuzz.TARGETS))
def test_every_target_has_regression_inputs(target):
    assert list((REGRESSIONS / target).glob("*.bin")), f"no inputs kept for {target}"


@pytest.mark.parametrize("target, path", regression_files())
def test_regression_inputs_replay(target, path, http_harness):
    data = path.read_bytes()
    if target == "http":
        fuzz.fuzz_http(data, http_harness)
    else:
        fuzz.TARGETS[target](data)


@pytest.fixture(scope="module")
def short_runs(request, fuzz_seconds, tmp_path_factory):
    """The short atheris run of every target this session selected, each in its own
    process, as many at a time as there are cores (they are CPU-bound and independent):
    target -> (the finished process, the crash files it left)."""
    targets = sorted({item.callspec.params["target"] for item in request.session.items
                      if getattr(item, "originalname", None)
                      == "test_short_atheris_run_finds_no_crash"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [SOURCE, *filter(None, [os.environ.get("PYTHONPATH")])])}

    def one(target: str) -> tuple[subprocess.CompletedProcess, list[str]]:
        base = tmp_path_factory.mktemp(f"fuzz-{target}")
        crashes = base / "crashes"
        process = subprocess.run(
            [sys.executable, "-m", "pyraft.testing.fuzz", target, "--seconds",
             str(fuzz_seconds), "--crashes", str(crashes), "--corpus", str(base / "corpus"),
             "--seed", "1"],
            capture_output=True, text=True, timeout=fuzz_seconds * 6 + 120, env=env,
        )
        return process, sorted(p.name for p in crashes.iterdir()) if crashes.exists() else []

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(zip(targets, pool.map(one, targets)))


@pytest.mark.skipif(not HAVE_ATHERIS, reason="atheris is not installed: pip install "
                    "'raftcore[fuzz]' for the coverage-guided runs")
@pytest.mark.parametrize("target", sorted(fuzz.TARGETS))
def test_short_atheris_run_finds_no_crash(target, short_runs):
    process, found = short_runs[target]
    assert process.returncode == 0 and not found, (found, process.stderr[-4000:])
    assert "Done" in process.stderr and "runs in" in process.stderr, process.stderr[-2000:]


@pytest.mark.skipif(not HAVE_ATHERIS, reason="atheris is not installed: pip install "
                    "'raftcore[fuzz]' for the coverage-guided runs")
def test_a_long_run_is_split_into_processes_over_one_corpus(tmp_path):
    """``--runs`` above ``--runs-per-process`` runs one process per share, each over the
    corpus the ones before it grew and with the next seed, and counts what libFuzzer ran
    (atheris leaks memory per instrumented comparison: one process could not run the
    documented 10 million inputs of ``append`` under libFuzzer's memory limit)."""
    corpus = tmp_path / "corpus"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [SOURCE, *filter(None, [os.environ.get("PYTHONPATH")])])}
    process = subprocess.run(
        [sys.executable, "-m", "pyraft.testing.fuzz", "frame", "--runs", "2500",
         "--runs-per-process", "1000", "--seed", "3", "--seconds", "300",
         "--crashes", str(tmp_path / "crashes"), "--corpus", str(corpus)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert process.returncode == 0, process.stderr[-4000:]
    log = process.stderr
    assert [line for line in log.splitlines() if line.startswith("INFO: Seed:")] == [
        "INFO: Seed: 3", "INFO: Seed: 4", "INFO: Seed: 5"], log[-4000:]
    assert log.count("Done 1000 runs in") == 2 and log.count("Done 500 runs in") == 1
    assert "frame: Done 2500 runs in 3 processes" in log, log[-2000:]
    # the second process started from what the first one kept
    inited = [line for line in log.splitlines() if "\tINITED " in line]
    assert len(inited) == 3 and "corp: 1/" not in inited[1], inited
    assert any(corpus.iterdir())


# ---- hypothesis over the same targets --------------------------------------------------------


@given(st.binary(max_size=1500))
def test_frame_target_holds_on_any_input(data):
    fuzz.fuzz_frame(data)


@given(st.integers(0, 255), st.lists(st.binary(max_size=40), max_size=6), st.binary(max_size=64))
def test_frame_target_holds_on_damaged_valid_records(mode, payloads, tail):
    body = bytes([len(payloads)]) + b"".join(bytes([len(p)]) + p for p in payloads) + tail
    fuzz.fuzz_frame(bytes([mode | 0x40, 0, 0]) + body)


@settings(max_examples=60)
@given(st.binary(max_size=600))
def test_wal_target_holds_on_any_input(data):
    fuzz.fuzz_wal(data)


@settings(max_examples=60)
@given(st.integers(1, 12), st.integers(0, 2), st.binary(max_size=64))
def test_wal_target_holds_for_each_kind_of_damage(count, mode, damage):
    payloads = b"".join(bytes([5]) + bytes([i]) * 5 for i in range(count))
    fuzz.fuzz_wal(bytes([count - 1, mode]) + payloads + bytes(count) + bytes([0]) + damage)


@given(st.binary(max_size=1500))
def test_handshake_target_holds_on_any_input(data):
    fuzz.fuzz_handshake(data)


@given(st.sampled_from([0x0B, 0x0F, 0x1F, 0x0D, 0x07]), st.binary(max_size=800))
def test_handshake_target_holds_after_a_valid_hello(mode, data):
    fuzz.fuzz_handshake(bytes([mode]) + data)


@given(st.binary(max_size=600))
def test_codec_target_holds_on_any_input(data):
    fuzz.fuzz_codec(data)


@given(st.sampled_from([2, 3, 6, 7, 10, 11, 14, 15]), st.binary(max_size=300))
def test_codec_target_holds_on_built_bodies_and_messages(mode, data):
    fuzz.fuzz_codec(bytes([mode]) + data)


@settings(max_examples=60)
@given(st.binary(min_size=12, max_size=400))
def test_append_target_holds_on_any_input(data):
    fuzz.fuzz_append(data)


@settings(max_examples=60)
@given(st.binary(min_size=12, max_size=12),
       st.lists(st.tuples(st.integers(0, 255), st.integers(0, 3), st.integers(0, 4)),
                min_size=1, max_size=8))
def test_append_target_holds_on_appends_that_match_the_log(setup, steps):
    """APPENDs at the follower's last index with its term there, a few entries each: the
    path where entries are taken, committed and conflicting suffixes replaced."""
    body = bytearray([len(steps) - 1])
    for choice, term_offset, count in steps:
        # APPEND, term, at the last index, its term, count entries following it, commit
        body += bytes([choice & 0xFE, term_offset, 0, 0, 0, count, 0]) + bytes(count + 2)
    fuzz.fuzz_append(setup + bytes(body))


@given(st.binary(max_size=600))
def test_stream_target_holds_on_any_input(data):
    fuzz.fuzz_stream(data)


def test_differential_targets_compare_two_modules():
    """The codec, the core and the inbound stream are compared with their ``.py`` twins,
    never with themselves; in the compiled build the module under test is the extension."""
    from pyraft import _compiled
    from pyraft.core import log, raft
    from pyraft.transport import codec, stream

    for module in (codec, raft, log, stream):
        twin = _compiled.load_twin(module.__name__)
        assert twin is not module and twin.__name__ == module.__name__ + "__twin"
        assert not _compiled.is_compiled(twin)
        assert _compiled.is_compiled(module) == (not _compiled.PURE)


@pytest.fixture(scope="module")
def http_harness():
    harness = fuzz.HttpHarness()
    yield harness
    harness.close()


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_http_target_holds_on_any_input(http_harness, data):
    fuzz.fuzz_http(data, http_harness)


# ---- the targets detect broken contracts -----------------------------------------------------


def test_frame_target_detects_twins_that_disagree(monkeypatch):
    from raftcore import _framing_py

    record = encode_entries(1, 1, [b"hello"]).tobytes()
    fuzz.fuzz_frame(bytes([1, 0]) + record)  # the real twins agree
    real = _framing_py.decode_entries
    monkeypatch.setattr(_framing_py, "decode_entries",
                        lambda data, *a, **k: real(bytes(data)[:-1], *a, **k))
    with pytest.raises(fuzz.FuzzContractError, match="disagree"):
        fuzz.fuzz_frame(bytes([1, 0]) + record)


def test_handshake_target_detects_a_message_delivered_from_the_wrong_member(monkeypatch):
    from pyraft.transport import tcp

    real = tcp._Inbound._on_hello

    def confused(self, hello):  # a transport that binds the connection to the wrong member
        real(self, hello)
        self.member = 4
        self.inbox.member = 4  # the per-message path (transport.stream) keeps its own copy

    monkeypatch.setattr(tcp._Inbound, "_on_hello", confused)
    data = (REGRESSIONS / "handshake/seed-hello-then-message-from-another-member.bin")
    with pytest.raises(fuzz.FuzzContractError, match="delivered a message from 4"):
        fuzz.fuzz_handshake(data.read_bytes())


def test_wal_target_detects_lost_entries(monkeypatch):
    from raftcore import wal

    class Forgetful(wal.WriteAheadLog):  # recovery that drops the last entry
        def last_index(self):
            return max(0, super().last_index() - 1)

    monkeypatch.setattr(wal, "WriteAheadLog", Forgetful)
    data = (REGRESSIONS / "wal/seed-tail-holds-a-valid-record.bin").read_bytes()
    with pytest.raises(fuzz.FuzzContractError, match="recovered after tail damage"):
        fuzz.fuzz_wal(data)


def test_codec_target_detects_twins_that_disagree(monkeypatch):
    from pyraft import _compiled

    data = (REGRESSIONS / "codec/seed-structured-append-body.bin").read_bytes()
    fuzz.fuzz_codec(data)  # the real twins agree, and this body decodes
    twin = _compiled.load_twin("pyraft.transport.codec")
    real = twin.decode_body

    def off_by_one(body):
        message = real(body)
        message.commit += 1
        return message

    monkeypatch.setattr(twin, "decode_body", off_by_one)
    with pytest.raises(fuzz.FuzzContractError, match="disagree"):
        fuzz.fuzz_codec(data)


def test_codec_target_detects_another_error(monkeypatch):
    from pyraft import _compiled
    from pyraft.errors import MalformedMessageError

    data = bytes([0]) + b"\x01\x63" + bytes(100)  # a body of an unknown type
    fuzz.fuzz_codec(data)
    twin = _compiled.load_twin("pyraft.transport.codec")
    real = twin.decode_body

    def other_text(body):
        try:
            return real(body)
        except MalformedMessageError as exc:
            raise MalformedMessageError(str(exc) + "!", exc.offset) from None

    monkeypatch.setattr(twin, "decode_body", other_text)
    with pytest.raises(fuzz.FuzzContractError, match="disagree"):
        fuzz.fuzz_codec(data)


def test_append_target_detects_a_follower_that_answers_otherwise(monkeypatch):
    from pyraft import _compiled

    data = (REGRESSIONS / "append/seed-heartbeat.bin").read_bytes()
    fuzz.fuzz_append(data)
    twin = _compiled.load_twin("pyraft.core.raft")
    real = twin.RaftNode._handle_heartbeat

    def echoes_otherwise(self, m):  # the twin answers heartbeats with another context
        m.context = m.context + b"!"
        real(self, m)

    monkeypatch.setattr(twin.RaftNode, "_handle_heartbeat", echoes_otherwise)
    with pytest.raises(fuzz.FuzzContractError, match="RaftNode differ"):
        fuzz.fuzz_append(data)


def test_append_target_detects_a_log_that_appends_otherwise(monkeypatch):
    from pyraft import _compiled

    data = (REGRESSIONS / "append/seed-append-two-entries.bin").read_bytes()
    fuzz.fuzz_append(data)
    twin = _compiled.load_twin("pyraft.core.log")
    real = twin.RaftLog.maybe_append

    def short(self, index, log_term, commit, batch):  # commits one entry less
        return real(self, index, log_term, max(0, commit - 1), batch)

    monkeypatch.setattr(twin.RaftLog, "maybe_append", short)
    with pytest.raises(fuzz.FuzzContractError, match="RaftLog differ"):
        fuzz.fuzz_append(data)


def test_stream_target_detects_an_inbox_that_delivers_otherwise(monkeypatch):
    from pyraft import _compiled

    data = (REGRESSIONS / "stream/seed-delivers-messages-in-pieces.bin").read_bytes()
    fuzz.fuzz_stream(data)  # the real twins agree, and this input delivers messages
    twin = _compiled.load_twin("pyraft.transport.stream")
    real = twin.decode_body

    def off_by_one(body):  # the twin's decoder, as its Inbox calls it
        message = real(body)
        message.commit += 1
        return message

    monkeypatch.setattr(twin, "decode_body", off_by_one)
    with pytest.raises(fuzz.FuzzContractError, match="Inbox differ"):
        fuzz.fuzz_stream(data)


def test_stream_target_detects_a_failure_told_otherwise(monkeypatch):
    from pyraft import _compiled

    data = (REGRESSIONS / "stream/seed-message-from-another-member.bin").read_bytes()
    fuzz.fuzz_stream(data)
    twin = _compiled.load_twin("pyraft.transport.stream")
    real = twin.feed_frames

    def quiet(decoder, connection, data):  # the twin forgets to report frames in progress
        class Silent:
            def __getattr__(self, name):
                return getattr(connection, name)

            def _partial(self, *args):
                pass

        return real(decoder, Silent(), data)

    monkeypatch.setattr(twin, "feed_frames", quiet)
    with pytest.raises(fuzz.FuzzContractError, match="Inbox differ"):
        fuzz.fuzz_stream(data)


def test_http_builder_makes_valid_requests():
    request, structured = fuzz.build_http_request(bytes([6, 1, 1]) + b"k" + bytes(12))
    assert structured and request.startswith(b"PUT /v1/kv/k HTTP/1.1\r\n")
    assert b"X-Client-Id: " in request and b"X-Request-Seq: " in request
    raw, structured = fuzz.build_http_request(b"\xffjunk")
    assert not structured and raw.startswith(b"GET /v1/kv/a HTTP/1.1\r\n")
