"""An operator's mistakes end in one line on stderr that names the flag, file, address or
variable and what to do, and exit status 2, never a traceback (issue 16, "Errors a person can
act on"); ``--debug`` shows the traceback. Each mistake runs as ``python -m pyraft ...``.

Also here: the ``pyraft`` command's surface an operator relies on (``--version``, help text on
every option, ``--log-level`` in any case, ``--log-format json``, ``wal inspect`` of a data
directory, ``node --join URL`` with nothing else) and the layering of ``pyraft node``'s
settings (defaults < ``--config`` < ``PYRAFT_*`` < flags)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

import pyraft
from pyraft.kv.client import KVClient
from pyraft.testing.processes import free_port

#: seconds a refused command may take (imports on a loaded 2-core machine)
REFUSAL_TIMEOUT_S = 60


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's ``PYRAFT_*`` settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYRAFT_") or k == "PYRAFT_NO_EXTENSIONS"}
    env.update(extra)
    return env


def pyraft_cli(*args: str, env: dict[str, str] | None = None,
               timeout: float = REFUSAL_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyraft", *args], capture_output=True,
                          text=True, timeout=timeout, env=env or clean_env())


@pytest.fixture
def busy():
    """A port of 127.0.0.1 that another socket listens on."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def node_args(*extra: str, member: int = 1) -> list[str]:
    listen, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    args = {"--listen": listen, "--http": http}
    extra_list = list(extra)
    for flag in list(args):  # a case's own --listen/--http replaces the default one
        if flag in extra_list:
            del args[flag]
    return ["node", "--id", str(member), *[x for kv in args.items() for x in kv], *extra_list]


def files(tmp_path) -> dict[str, str]:
    """The files the cases refer to as ``{name}``."""
    made = {
        "bad.json": '{"election_timeout_ms_lower": ',
        "bad.toml": "election_timeout_ms_lower = = 1\n",
        "typo.json": '{"election_timeout_ms_lowr": 500}',
        "typo.toml": "election_timeout_ms_lowr = 500\n",
        "small.json": '{"election_timeout_ms_lower": 5}',
        "tls.toml": '[tls]\ncert_file = "/nonexistent/member.pem"\n'
                    'key_file = "/nonexistent/member.key"\n',
    }
    paths = {}
    for name, text in made.items():
        (tmp_path / name).write_text(text)
        paths[name] = str(tmp_path / name)
    (tmp_path / "dir.json").mkdir()  # a config "file" that cannot be read
    paths["dir.json"] = str(tmp_path / "dir.json")
    paths["missing.json"] = str(tmp_path / "missing.json")
    paths["missing.pem"] = str(tmp_path / "missing.pem")
    (tmp_path / "notwal").mkdir()
    (tmp_path / "notwal" / "notes.txt").write_text("hello")
    paths["notwal"] = str(tmp_path / "notwal")
    paths["nope"] = str(tmp_path / "nope")
    return paths


#: (case, command line (``{name}``: a file of ``files()``, ``{busy}``: a port in use),
#:  environment, words the single line must hold)
CASES = [
    ("listen port", node_args("--listen", "127.0.0.1:99999"), {}, ["--listen", "65535"]),
    ("http port", node_args("--http", "127.0.0.1:99999"), {}, ["--http", "65535"]),
    ("metrics port", node_args("--metrics", "127.0.0.1:99999"), {}, ["--metrics", "65535"]),
    ("advertise port", node_args("--advertise", "127.0.0.1:99999"), {},
     ["--advertise", "65535"]),
    ("advertise-http port", node_args("--advertise-http", "127.0.0.1:70000"), {},
     ["--advertise-http", "65535"]),
    ("http without port", node_args("--http", "localhost"), {}, ["--http", "HOST:PORT"]),
    ("raft port in use", node_args("--listen", "{busy}"), {}, ["--listen", "{busy}", "in use"]),
    ("http port in use", node_args("--http", "{busy}"), {}, ["--http", "{busy}", "in use"]),
    ("metrics port in use", node_args("--metrics", "{busy}"), {},
     ["--metrics", "{busy}", "in use"]),
    # refused before it asks the (absent) cluster anything: a member that cannot serve
    # does not join
    ("http port in use when joining", node_args("--http", "{busy}", "--join",
                                                "http://127.0.0.1:9"), {},
     ["--http", "{busy}", "in use"]),
    ("missing config", node_args("--config", "{missing.json}"), {},
     ["--config", "{missing.json}", "No such file"]),
    ("unreadable config", node_args("--config", "{dir.json}"), {},
     ["--config", "{dir.json}", "cannot read"]),
    ("malformed json config", node_args("--config", "{bad.json}"), {},
     ["--config", "{bad.json}", "not valid JSON"]),
    ("malformed toml config", node_args("--config", "{bad.toml}"), {},
     ["--config", "{bad.toml}", "not valid TOML"]),
    ("misspelt json key", node_args("--config", "{typo.json}"), {},
     ["{typo.json}", "election_timeout_ms_lowr", "did you mean", "election_timeout_ms_lower"]),
    ("misspelt toml key", node_args("--config", "{typo.toml}"), {},
     ["{typo.toml}", "election_timeout_ms_lowr", "did you mean", "election_timeout_ms_lower"]),
    ("bad value in config", node_args("--config", "{small.json}"), {},
     ["{small.json}", "election_timeout_ms_lower", "at least"]),
    ("peers with a colon", node_args("--peers", "1:127.0.0.1:7001"), {},
     ["--peers", "1:127.0.0.1:7001", "ID=HOST:PORT"]),
    ("http-peers with a colon", node_args("--http-peers", "2:127.0.0.1:7001"), {},
     ["--http-peers", "ID=HOST:PORT"]),
    ("bad log level", node_args("--log-level", "verbose"), {},
     ["--log-level", "verbose", "debug, info"]),
    ("tls without files", node_args("--transport", "tls"), {}, ["--cert", "--key", "--ca"]),
    ("tls with a missing file", node_args("--transport", "tls", "--cert", "{missing.pem}",
                                          "--key", "{missing.pem}", "--ca", "{missing.pem}"),
     {}, ["--cert", "{missing.pem}", "No such file"]),
    ("tls file from the environment", node_args(),
     {"PYRAFT_TLS_CERT_FILE": "{missing.pem}", "PYRAFT_TLS_KEY_FILE": "{missing.pem}",
      "PYRAFT_TLS_CA_FILE": "{missing.pem}"},
     ["PYRAFT_TLS_CERT_FILE", "{missing.pem}", "No such file"]),
    ("tls file from the config file", node_args("--config", "{tls.toml}"), {},
     ["tls.cert_file in {tls.toml}", "/nonexistent/member.pem", "No such file"]),
    ("join an ftp url", node_args("--join", "ftp://127.0.0.1:1"), {}, ["--join", "http://"]),
    ("data directory is a file", node_args("--data", "{bad.json}"), {},
     ["--data", "{bad.json}", "not a directory"]),
    ("sqlite data directory is a file", node_args("--data", "{bad.json}", "--state", "sqlite"),
     {}, ["--data", "{bad.json}", "not a directory"]),
    ("sqlite state in memory", node_args("--state", "sqlite"), {}, ["--state", "--data"]),
    ("bad number in environment", node_args(), {"PYRAFT_ELECTION_TIMEOUT_MS_LOWER": "banana"},
     ["PYRAFT_ELECTION_TIMEOUT_MS_LOWER", "banana", "unset"]),
    ("bad value in environment", node_args(), {"PYRAFT_ELECTION_TIMEOUT_MS_LOWER": "5"},
     ["PYRAFT_ELECTION_TIMEOUT_MS_LOWER", "at least"]),
    ("misspelt variable", node_args(), {"PYRAFT_ELECTION_TIMEOUT_MS_LOWR": "500"},
     ["PYRAFT_ELECTION_TIMEOUT_MS_LOWR", "did you mean", "PYRAFT_ELECTION_TIMEOUT_MS_LOWER"]),
    ("wal inspect of nothing", ["wal", "inspect", "{nope}"], {},
     ["{nope}", "no such directory"]),
    ("wal inspect of another directory", ["wal", "inspect", "{notwal}"], {},
     ["{notwal}", "not a write-ahead log", "notes.txt"]),
    ("wal repair of another directory", ["wal", "repair", "{notwal}", "--yes"], {},
     ["{notwal}", "not a write-ahead log"]),
    ("playground of no members", ["playground", "--members", "0"], {}, ["--members", "0"]),
    ("playground of -1 members", ["playground", "--members", "-1"], {}, ["--members", "-1"]),
    ("playground of too many", ["playground", "--members", "100"], {}, ["--members", "100"]),
    ("playground of no time", ["playground", "--duration", "0"], {}, ["--duration"]),
]


def fill(text: str, names: dict[str, str]) -> str:
    return re.sub(r"\{([\w.]+)\}", lambda match: names[match[1]], text)


@pytest.mark.parametrize("case, argv, env, words", CASES, ids=[c[0] for c in CASES])
def test_a_mistake_ends_in_one_line_and_exit_status_2(tmp_path, busy, case, argv, env, words):
    names = {**files(tmp_path), "busy": busy}
    argv = [fill(arg, names) for arg in argv]
    result = pyraft_cli(*argv, env=clean_env(**{k: fill(v, names) for k, v in env.items()}))
    assert result.returncode == 2, (case, result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pyraft "), lines[0]
    for word in words:
        assert fill(word, names) in lines[0], (word, lines[0])


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_of_a_mistake(where):
    args = node_args("--listen", "127.0.0.1:99999")
    argv = ["--debug", *args] if where == "before" else [*args, "--debug"]
    result = pyraft_cli(*argv)
    assert result.returncode == 2, result.stderr
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith(
        "pyraft node: member 1 refused to start: --listen:")


def test_version_is_one_line():
    result = pyraft_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [result.stdout.strip()]
    assert result.stdout.startswith(f"pyraft {pyraft.__version__} ")


def test_info_shows_no_python_reprs():
    result = pyraft_cli("info")
    assert result.returncode == 0, result.stderr
    assert "kernel crc" in result.stdout
    for repr_mark in ("{", "'", "None", "b'"):
        assert repr_mark not in result.stdout, result.stdout


def test_output_nobody_reads_ends_quietly():
    """`pyraft info | head -1` and the like: the reader is gone before the command writes
    (here it closes the pipe at once, while the command still imports); the command stops
    with exit status 1 and without a traceback (it printed one for BrokenPipeError)."""
    with subprocess.Popen([sys.executable, "-m", "pyraft", "info"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=clean_env()) as child:
        assert child.stdout is not None and child.stderr is not None
        child.stdout.close()
        errors = child.stderr.read().decode()
        code = child.wait(REFUSAL_TIMEOUT_S)
    assert errors == "", errors
    assert code == 1


def _walk(parser: argparse.ArgumentParser, path: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_option_of_the_command_has_help_text():
    from pyraft.cli import build_parser

    walked = list(_walk(build_parser(), "pyraft"))
    assert len({path for path, _ in walked}) >= 8  # pyraft, node, playground, wal inspect...
    offenders = [f"{path} {'/'.join(action.option_strings) or action.dest}"
                 for path, action in walked
                 if not (action.help and action.help.strip()) and action.help != argparse.SUPPRESS]
    assert not offenders, "options without help text:\n" + "\n".join(offenders)


# ---- real members ------------------------------------------------------------------------
def _start(args, env=None, stderr=subprocess.PIPE):
    return subprocess.Popen([sys.executable, "-m", "pyraft", *args], stdout=subprocess.DEVNULL,
                            stderr=stderr, text=True, env=env or clean_env())


def _end(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def _wait_for(url_list, predicate, timeout=40.0):
    deadline = time.monotonic() + timeout
    async with KVClient(url_list, timeout_s=2.0, retries=2) as client:
        while time.monotonic() < deadline:
            for url in url_list:
                try:
                    status = await client.status(url)
                except Exception:  # not up yet
                    continue
                if predicate(status):
                    return status
            await asyncio.sleep(0.2)
    raise AssertionError(f"no member of {url_list} reached the condition in {timeout} s")


def test_json_log_lines_and_wal_inspect_of_the_data_directory(tmp_path):
    """A real member logs one JSON object per line; ``wal inspect DATA_DIR`` reads its log."""
    listen, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    data = tmp_path / "n1"
    log_path = tmp_path / "n1.log"
    with open(log_path, "w") as log_file:
        process = _start(["node", "--id", "1", "--listen", listen, "--http", http, "--data",
                          str(data), "--log-level", "debug", "--log-format", "json"],
                         stderr=log_file)
        try:
            async def write():
                await _wait_for([f"http://{http}"], lambda s: s["role"] == "leader")
                async with KVClient([f"http://{http}"], timeout_s=5.0, retries=20) as client:
                    await client.put("k", "v")
            asyncio.run(write())
        finally:
            _end(process)
    assert process.returncode == 0
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"time", "level", "logger", "member", "message"} <= set(record), record
        assert record["member"] == 1
        assert record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    assert any(r["level"] == "INFO" and "serves the key-value API" in r["message"]
               for r in records), records

    inspected = pyraft_cli("wal", "inspect", str(data))
    assert inspected.returncode == 0, inspected.stdout + inspected.stderr
    assert str(data / "wal") in inspected.stdout
    segments = [line for line in inspected.stdout.splitlines() if ".wal: cluster 0" in line]
    assert segments and all(line.endswith(", ok") for line in segments), inspected.stdout
    assert "no segments" not in inspected.stdout and "None" not in inspected.stdout
    repaired = pyraft_cli("wal", "repair", str(data))  # a clean log: nothing to repair
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert repaired.stdout.startswith(f"{data / 'wal'}: opens cleanly"), repaired.stdout


def test_json_log_formatter_carries_the_exception():
    import logging

    from pyraft.kv.node import JsonLogFormatter

    try:
        raise RuntimeError("disk on fire")
    except RuntimeError:
        record = logging.getLogger("pyraft.test").makeRecord(
            "pyraft.test", logging.ERROR, __file__, 1, "failed: %s", ("x",), sys.exc_info())
    line = json.loads(JsonLogFormatter(7).format(record))
    assert line["message"] == "failed: x" and line["member"] == 7 and line["level"] == "ERROR"
    assert "RuntimeError: disk on fire" in line["exception"]


def test_text_log_lines_carry_the_level_and_any_case_is_accepted(tmp_path):
    listen, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    log_path = tmp_path / "n1.log"
    with open(log_path, "w") as log_file:
        process = _start(["node", "--id", "1", "--listen", listen, "--http", http,
                          "--log-level", "DeBuG"], stderr=log_file)
        try:
            asyncio.run(_wait_for([f"http://{http}"], lambda s: s["role"] == "leader"))
        finally:
            _end(process)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    pattern = re.compile(r"\d{4}-\d\d-\d\d [\d:,]+ member 1 "
                         r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")
    assert lines and all(pattern.match(line) for line in lines), lines
    assert any(" member 1 WARNING pyraft.node: " in line and "in memory" in line
               for line in lines)


def test_a_member_joins_with_only_the_url_of_a_member(tmp_path):
    peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
    http = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3, 4)}
    peers_flag = ",".join(f"{m}={a}" for m, a in peers.items())
    token = tmp_path / "admin-token"
    token.write_text("operator-errors-token\n")
    token.chmod(0o600)
    processes = {m: _start(["node", "--id", str(m), "--listen", peers[m], "--http", http[m],
                            "--data", str(tmp_path / f"n{m}"), "--peers", peers_flag,
                            "--admin-token-file", str(token), "--log-level", "warning"],
                           stderr=subprocess.DEVNULL)
                 for m in peers}
    urls = [f"http://{http[m]}" for m in peers]
    joiner_args = ["node", "--id", "4", "--listen", f"127.0.0.1:{free_port()}", "--http",
                   http[4], "--join", urls[1], "--data", str(tmp_path / "n4"),
                   "--log-level", "warning"]
    try:
        asyncio.run(_wait_for(urls, lambda s: s["role"] == "leader"))
        # without the cluster's credential the join is refused: one line, exit 2, no retries
        refused = pyraft_cli(*joiner_args, timeout=120)
        assert refused.returncode == 2, refused.stderr
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
        assert "--join" in lines[0] and "401" in lines[0] and "--admin-token-file" in lines[0]
        # with it, the same data directory (which recorded the voters) joins
        joiner_log = open(tmp_path / "n4.log", "w")
        joiner = _start([*joiner_args, "--admin-token-file", str(token)], stderr=joiner_log)
        joiner_log.close()
        processes[4] = joiner

        async def check():
            status = await _wait_for(
                urls, lambda s: s["role"] == "leader"
                and 4 in {m["id"] for m in s["members"] if m["voter"]})
            assert {m["id"] for m in status["members"]} == {1, 2, 3, 4}
            async with KVClient([f"http://{http[4]}"], timeout_s=5.0, retries=40) as client:
                await client.put("joined", "yes")
                assert await client.get("joined") == b"yes"

        asyncio.run(check())
        assert joiner.poll() is None, (tmp_path / "n4.log").read_text()
        # restarted with the same command line, it uses the membership it stored
        _end(joiner)
        assert joiner.returncode == 0, (tmp_path / "n4.log").read_text()
        with open(tmp_path / "n4.log", "a") as joiner_log:
            restart = [arg if arg != "warning" else "info" for arg in joiner.args[3:]]
            processes[4] = _start(restart, stderr=joiner_log)

        async def check_restart():
            async with KVClient([f"http://{http[4]}"], timeout_s=5.0, retries=40) as client:
                await client.put("restarted", "yes")
                assert await client.get("restarted", consistency="barrier") == b"yes"
            status = await _wait_for([f"http://{http[4]}"], lambda s: s["leader"] is not None)
            assert 4 in {m["id"] for m in status["members"] if m["voter"]}

        asyncio.run(check_restart())
        assert processes[4].poll() is None, (tmp_path / "n4.log").read_text()
        assert "uses the membership stored there" in (tmp_path / "n4.log").read_text()
    finally:
        for process in processes.values():
            _end(process)
    assert "Traceback" not in (tmp_path / "n4.log").read_text()


def test_join_refuses_an_url_that_does_not_answer():
    dead = f"http://127.0.0.1:{free_port()}"
    result = pyraft_cli(*node_args("--join", dead, "--join-timeout", "1.5"), timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "--join" in lines[0] and dead in lines[0] and "--peers" in lines[0]
    assert "asked for 1.5 s" in lines[0] and "--join-timeout" in lines[0]


def test_join_timeout_must_be_a_positive_number_of_seconds():
    result = pyraft_cli(*node_args("--join", "http://127.0.0.1:1", "--join-timeout", "0"),
                        timeout=60)
    assert result.returncode == 2 and "--join-timeout" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# ---- layering: defaults < --config < PYRAFT_* < flags ----------------------------------
def _config(argv, monkeypatch, env):
    from pyraft.cli import build_parser
    from pyraft.kv.node import build_config

    for name in [n for n in os.environ if n.startswith("PYRAFT_") and n != "PYRAFT_NO_EXTENSIONS"]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return build_config(build_parser().parse_args(["node", "--id", "1", "--listen",
                                                   "127.0.0.1:7001", "--http",
                                                   "127.0.0.1:8001", *argv]))


def test_failure_detection_settings_come_from_the_config_file(tmp_path, monkeypatch):
    """`pyraft node` has no flags for failure detection: an operator sets it in --config
    (the README's way), including the wait for a voter never heard from; a wait shorter
    than the dead window is refused with the field's name."""
    from pyraft.errors import ConfigError

    path = tmp_path / "member.toml"
    path.write_text("failure_dead_ms = 2000\nfailure_unheard_ms = 30000\n")
    config = _config(["--config", str(path)], monkeypatch, {})
    assert (config.failure_dead_ms, config.failure_unheard_ms) == (2000, 30000)
    options = config.core_options()
    ticks = config.tick_ms
    assert options.failure_unheard_ticks == math.ceil(30000 / ticks) > options.failure_dead_ticks
    path.write_text("failure_dead_ms = 2000\n")  # the default: ten dead windows
    assert _config(["--config", str(path)], monkeypatch, {}).core_options() \
        .failure_unheard_ticks == 0
    path.write_text("failure_dead_ms = 2000\nfailure_unheard_ms = 1000\n")
    with pytest.raises(ConfigError) as refused:
        _config(["--config", str(path)], monkeypatch, {})
    assert refused.value.field.startswith("failure_unheard_ms")  # and the file it came from


def test_settings_layer_file_then_environment_then_flags(tmp_path, monkeypatch):
    path = tmp_path / "member.toml"
    path.write_text('election_timeout_ms_lower = 400\nelection_timeout_ms_upper = 900\n'
                    'sync = "interval"\ncluster_id = 5\n[metadata]\nzone = "a"\n')
    config = _config(["--config", str(path)], monkeypatch, {})
    assert (config.election_timeout_ms_lower, config.election_timeout_ms_upper) == (400, 900)
    assert (config.sync, config.cluster_id) == ("interval", 5)
    assert dict(config.metadata) == {"zone": "a", "http": "127.0.0.1:8001"}
    config = _config(["--config", str(path)], monkeypatch,
                     {"PYRAFT_ELECTION_TIMEOUT_MS_LOWER": "300", "PYRAFT_SYNC": "never"})
    assert (config.election_timeout_ms_lower, config.election_timeout_ms_upper) == (300, 900)
    assert config.sync == "never"
    config = _config(["--config", str(path), "--sync", "always", "--cluster-id", "7"],
                     monkeypatch, {"PYRAFT_SYNC": "never", "PYRAFT_CLUSTER_ID": "6"})
    assert (config.sync, config.cluster_id) == ("always", 7)
    assert _config([], monkeypatch, {}).election_timeout_ms_lower == 300  # the default
