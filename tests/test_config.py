"""RaftConfig and ClusterConfig: both sides of every limit, the translation into ticks, every
constructor (keywords, dict, JSON and TOML files, environment) and their round trips."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pathlib
import pickle
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyraft.config import (
    FRAME_HEADROOM_BYTES,
    LIMITS,
    MEMBER_ID_MAX,
    METADATA_BYTES_MAX,
    PEERS_MAX,
    ClusterConfig,
    RaftConfig,
    TlsConfig,
    format_address,
    is_wildcard,
    parse_address,
)
from pyraft.errors import ConfigError


def test_defaults_translate_into_ticks():
    options = RaftConfig(member_id=1).core_options()
    assert (options.election_ticks_lower, options.election_ticks_upper) == (30, 60)
    assert options.heartbeat_ticks == 6  # 0.2 x 300 ms at 10 ms per tick
    assert options.lease_ticks == 29  # one tick short of the lower election timeout
    assert options.id == 1 and options.pre_vote and options.check_quorum


def test_clock_drift_shortens_the_lease():
    options = RaftConfig(member_id=1, clock_drift_bound=1.5).core_options()
    assert options.lease_ticks == 19  # 30 / 1.5 - 1


@pytest.mark.parametrize(
    "field,bad,good",
    [
        ("member_id", 0, 1),
        ("tick_ms", 0, 1.0),
        ("election_timeout_ms_lower", 29.0, 30.0),
        ("election_timeout_ms_upper", 305.0, 310.0),
        ("heartbeat_threshold", 1.0, 0.9),
        ("heartbeat_threshold", 0.0, 0.1),
        ("clock_drift_bound", 0.99, 1.0),
        ("clock_drift_bound", 10.5, 10.0),
        ("inflight_messages_max", 0, 1),
        ("inflight_bytes_max", 0, 1),
        ("append_bytes_max", 0, 1),
        ("uncommitted_bytes_max", 0, 64 * 1024 * 1024),
        ("apply_bytes_max", 0, 1),
        ("snapshot_chunk_bytes", 0, 1),
        ("snapshot_inflight_bytes_max", 0, 1),
        ("snapshot_inflight_bytes_max", True, 2),
        ("warmup_rounds", 0, 1),
        ("warmup_rounds", True, 2),
        ("ready_pipeline_max", 0, 1),
        ("ready_pipeline_max", 1025, 1024),
    ],
)
def test_both_sides_of_each_limit(field, bad, good):
    with pytest.raises(ConfigError) as info:
        RaftConfig(**{"member_id": 1, field: bad}).validate()
    assert info.value.field == field and field in str(info.value)
    assert isinstance(info.value, ValueError)
    RaftConfig(**{"member_id": 1, field: good}).core_options()


def test_heartbeat_must_beat_the_election_timeout_in_ticks():
    with pytest.raises(ConfigError, match="heartbeat_threshold"):
        # 34 ms is 3 ticks (rounded); 0.99 x 34 ms is also 3 ticks (rounded down)
        RaftConfig(member_id=1, election_timeout_ms_lower=34, election_timeout_ms_upper=60,
                   heartbeat_threshold=0.99).validate()


def test_append_bound_within_uncommitted_bound():
    with pytest.raises(ConfigError, match="append_bytes_max"):
        RaftConfig(member_id=1, append_bytes_max=2048, uncommitted_bytes_max=1024).validate()


# ---- ClusterConfig: one member's full configuration ----------------------------------------

MiB = 1024 * 1024
#: elections long enough for the fixed ceilings of the request and connect timeouts
SLOW = {"election_timeout_ms_lower": 100_000.0, "election_timeout_ms_upper": 200_000.0}


def cluster(**changes) -> ClusterConfig:
    return ClusterConfig(**{"member_id": 1, **changes})


def refused(field: str, **changes) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        cluster(**changes).validate()
    assert info.value.field == field, str(info.value)
    assert str(info.value).startswith(f"{field}: ")
    return info.value


def test_cluster_defaults_are_the_seeds():
    config = cluster().validate()
    assert isinstance(config, RaftConfig)
    # timing measured for operators (issue 16), not the seed's 150-300 ms and 0.5
    assert (config.election_timeout_ms_lower, config.election_timeout_ms_upper) == (300, 600)
    assert config.heartbeat_threshold == 0.2 and config.clock_drift_bound == 1.0
    assert config.warmup_rounds == 10 and config.cold_start and not config.standby
    assert config.transmission_block_bytes == 65535
    assert config.connect_timeout_ms <= config.request_timeout_ms
    assert config.request_timeout_ms <= config.election_timeout_ms_lower
    assert config.data_dir is None and config.tls is None and config.sync == "always"
    assert dict(config.peers) == {} and dict(config.metadata) == {}
    assert config.voters == {1} and config.endpoint == config.listen
    # the protocol's parameters translate exactly as RaftConfig's do
    assert config.core_options() == RaftConfig(member_id=1).core_options()


ROWS = [
    # field, bad, good, other settings
    ("member_id", MEMBER_ID_MAX + 1, MEMBER_ID_MAX, {}),
    ("cluster_id", -1, 0, {}),
    ("cluster_id", 2**64, 2**64 - 1, {}),
    ("sync_interval_ms", 0.0, 0.001, {}),
    ("sync_interval_ms", 10_000.5, 10_000.0, {}),
    ("request_timeout_ms", 0.0, 0.001, {"connect_timeout_ms": 0.001}),
    ("request_timeout_ms", 300.5, 300.0, {}),  # at most the lower election timeout
    ("request_timeout_ms", 60_000.5, 60_000.0, SLOW),
    ("connect_timeout_ms", 0.0, 0.001, {}),
    ("connect_timeout_ms", 100.5, 100.0, {}),  # at most the request timeout
    ("connect_timeout_ms", 60_000.5, 60_000.0, {**SLOW, "request_timeout_ms": 60_000.0}),
    ("linger_ms", -1.0, 0.0, {}),
    ("linger_ms", 60_000.5, 60_000.0, {}),
    ("graceful_shutdown_timeout_ms", 0.0, 0.001, {}),
    ("graceful_shutdown_timeout_ms", 600_000.5, 600_000.0, {}),
    ("transmission_block_bytes", 0, 1, {}),
    ("transmission_block_bytes", 16 * MiB + 1, 16 * MiB, {}),
    ("server_backlog", 0, 1, {}),
    ("server_backlog", 65536, 65535, {}),
    ("frame_bytes_max", MiB + FRAME_HEADROOM_BYTES - 1, MiB + FRAME_HEADROOM_BYTES, {}),
    ("frame_bytes_max", 2 * MiB + FRAME_HEADROOM_BYTES - 1, 2 * MiB + FRAME_HEADROOM_BYTES,
     {"snapshot_chunk_bytes": 2 * MiB}),
    ("frame_bytes_max", 2**32, 2**32 - 1, {}),
    ("frame_bytes_max", 0, 1 + FRAME_HEADROOM_BYTES,
     {"append_bytes_max": 1, "snapshot_chunk_bytes": 1}),
    ("send_queue_messages_max", 0, 1, {}),
    ("send_queue_messages_max", 1_000_001, 1_000_000, {}),
    ("proposal_queue_max", 0, 1, {}),
    ("proposal_queue_max", 1_000_001, 1_000_000, {}),
    ("ttl_hops", 0, 1, {}),
    ("ttl_hops", 256, 255, {}),
    ("handshakes_max", 0, 1, {}),
    ("handshakes_max", 2**32, 2**32 - 1, {}),
    ("unknown_members_max", -1, 0, {}),
    ("unknown_members_max", 2**32, 2**32 - 1, {}),
    ("user_requests_inflight_max", 0, 1, {}),
    ("user_requests_inflight_max", 2**32, 2**32 - 1, {}),
    ("receive_bytes_per_s_min", -1, 0, {}),
    ("receive_bytes_per_s_min", 2**32, 2**32 - 1, {}),
    ("inline_sync_max_ms", -0.5, 0.0, {}),
    ("inline_sync_max_ms", 1_000.5, 1_000.0, {}),
    ("inline_sync_bytes_max", -1, 0, {}),
    ("inline_sync_bytes_max", 2**32, 2**32 - 1, {}),
    ("consensus_snapshot_entries", 0, 1, {}),
    ("consensus_snapshot_entries", 2**32, 2**32 - 1, {}),
    ("sync", "sometimes", "interval", {}),
    ("sync", "ALWAYS", "never", {}),
    ("proposal_queue_full", "drop", "raise", {}),
    ("peers", {i: f"h{i}:7100" for i in range(1, PEERS_MAX + 2)},
     {i: f"h{i}:7100" for i in range(1, PEERS_MAX + 1)}, {}),
    # one byte of key, the rest value: the bound counts both
    ("metadata", {"k": "x" * METADATA_BYTES_MAX}, {"k": "x" * (METADATA_BYTES_MAX - 1)}, {}),
    ("metadata", {"k": "\u00e9" * (METADATA_BYTES_MAX // 2)}, {"k": "é" * 100}, {}),
]


@pytest.mark.parametrize("field,bad,good,others", ROWS)
def test_cluster_both_sides_of_each_limit(field, bad, good, others):
    error = refused(field, **{**others, field: bad})
    assert isinstance(error, ValueError)
    cluster(**{**others, field: good}).validate().core_options()


def test_every_fixed_limit_is_tested_on_both_sides():
    tested = {row[0] for row in ROWS}
    assert set(LIMITS) <= tested
    for name, bounds in LIMITS.items():
        sides = [row for row in ROWS if row[0] == name]
        assert any(row[1] > bounds.high for row in sides), name
        assert any(row[1] <= bounds.low for row in sides), name


def test_the_seeds_timeout_rule_allows_equality():
    # connect timeout <= request timeout <= lower election timeout
    config = cluster(connect_timeout_ms=150, request_timeout_ms=150).validate()
    assert config.connect_timeout_ms == config.request_timeout_ms == 150
    message = str(refused("request_timeout_ms", election_timeout_ms_lower=90,
                          election_timeout_ms_upper=200))
    assert "election_timeout_ms_lower" in message


@pytest.mark.parametrize(
    "field,value",
    [
        ("member_id", "1"),
        ("member_id", True),
        ("election_timeout_ms_lower", "150"),
        ("tick_ms", math.nan),
        ("election_timeout_ms_upper", math.inf),
        ("cold_start", 1),
        ("standby", "false"),
        ("listen", 7100),
        ("public_endpoint", 7100),
        ("cluster_id", 1.0),
        ("linger_ms", "0"),
        ("data_dir", 3),
        ("peers", [(1, "a:1")]),
        ("peers", {"1": "a:1"}),
        ("peers", {True: "a:1"}),
        ("peers", {1: 7100}),
        ("metadata", {1: "a"}),
        ("metadata", {"a": 1}),
        ("tls", {"cert_file": "c", "key_file": "k"}),
        ("server_backlog", 10.0),
    ],
)
def test_wrong_types_are_refused_by_name(field, value):
    refused(field, **{field: value})


def test_raft_config_wrong_types_are_config_errors_too():
    with pytest.raises(ConfigError, match="^tick_ms: "):
        RaftConfig(member_id=1, tick_ms="10").validate()


# ---- addresses -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,expected",
    [
        ("localhost:7100", ("localhost", 7100)),
        ("10.0.0.1:1", ("10.0.0.1", 1)),
        ("[::1]:65535", ("::1", 65535)),
        ("[fe80::1]:80", ("fe80::1", 80)),
        ("node_1.example.com.:443", ("node_1.example.com.", 443)),
    ],
)
def test_addresses_parse(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    ["localhost", ":7100", "host:", "host:0", "host:65536", "host:-1", "host:8o", "::1:80",
     "[::g]:80", "[::1:80", "ho st:80", "-host:80", "host..a:80", "a" * 254 + ":80", "",
     "host:123456", "host:\u0661"],
)
def test_bad_addresses_are_refused(text):
    with pytest.raises(ValueError):
        parse_address(text)


@pytest.mark.parametrize(
    "host,port,text",
    [("10.0.0.1", 7100, "10.0.0.1:7100"), ("::1", 80, "[::1]:80"), ("h.example", 0, "h.example:0")],
)
def test_format_address_is_the_inverse_of_parse_address(host, port, text):
    assert format_address(host, port) == text
    assert parse_address(text, port_zero=True) == (host, port)


@pytest.mark.parametrize(
    "host,wildcard",
    [("0.0.0.0", True), ("::", True), ("0:0::0", True), ("127.0.0.1", False), ("::1", False),
     ("localhost", False), ("0.0.0.0.example", False)],
)
def test_is_wildcard_names_only_the_unspecified_addresses(host, wildcard):
    assert is_wildcard(host) is wildcard


def test_frame_bytes_max_defaults_to_the_kernels_frame_limit():
    from raftcore.framing import FRAME_BYTES_MAX

    assert ClusterConfig(member_id=1).frame_bytes_max == FRAME_BYTES_MAX == 64 * 1024 * 1024


def test_addresses_in_the_configuration():
    assert parse_address("h:0", port_zero=True) == ("h", 0)
    cluster(listen="0.0.0.0:0").validate()  # a wildcard listener, the system picks the port
    cluster(listen="[::]:7100").validate()
    refused("listen", listen="localhost")
    refused("listen", listen="h:65536")
    refused("public_endpoint", public_endpoint="h:0")
    refused("public_endpoint", public_endpoint="0.0.0.0:7100")
    refused("public_endpoint", public_endpoint="[::]:7100")
    cluster(public_endpoint="203.0.113.5:7100").validate()
    refused("peers", peers={1: "a:1", 2: "b:0"})
    refused("peers", peers={1: "a:1", 2: "0.0.0.0:7100"})
    refused("peers", peers={1: "a:1", 0: "b:1"})
    refused("peers", peers={1: "a:1", MEMBER_ID_MAX + 1: "b:1"})
    cluster(peers={1: "a:1", MEMBER_ID_MAX: "b:1"}).validate()
    error = refused("peers", peers={1: "a:1", 2: "b:2", 3: "A.:1"})
    assert "1 and 3" in str(error)


def test_endpoint_falls_back_to_the_member_list_then_to_listen():
    assert cluster(listen="0.0.0.0:7100").endpoint == "0.0.0.0:7100"
    peers = {1: "10.0.0.1:7100", 2: "10.0.0.2:7100"}
    assert cluster(listen="0.0.0.0:7100", peers=peers).endpoint == "10.0.0.1:7100"
    assert cluster(peers=peers, public_endpoint="203.0.113.5:1").endpoint == "203.0.113.5:1"


# ---- membership at start -------------------------------------------------------------------
def test_cold_start_bootstraps_a_cluster_this_member_belongs_to():
    three = {1: "a:1", 2: "b:1", 3: "c:1"}
    assert cluster(peers=three).validate().voters == {1, 2, 3}
    error = refused("peers", member_id=4, peers=three)
    assert "(4)" in str(error) and "cold_start" in str(error)
    # joining a cluster that exists: this member need not be listed yet
    assert cluster(member_id=4, peers=three, cold_start=False).validate().voters == {1, 2, 3}
    cluster(cold_start=False).validate()


def test_a_standby_member_cannot_bootstrap_alone():
    refused("standby", standby=True)
    refused("standby", standby=True, peers={1: "a:1"})
    cluster(standby=True, peers={1: "a:1", 2: "b:1"}).validate()
    cluster(standby=True, cold_start=False).validate()


def test_other_settings():
    cluster(data_dir="/var/lib/pyraft").validate()
    refused("data_dir", data_dir="")
    refused("data_dir", data_dir="a\0b")
    assert cluster(data_dir=pathlib.Path("/tmp/x")).data_dir == "/tmp/x"
    cluster(metadata={"zone": "eu-1", "k8s.io/rack": "r=3, row 2", "0": ""}).validate()
    for key in ("", "a b", "a=b", "a,b", "_a", "é"):
        refused("metadata", metadata={key: "v"})


# ---- TLS -----------------------------------------------------------------------------------
def test_tls():
    tls = TlsConfig("member.pem", "member.key", "ca.pem", require_client_cert=True)
    assert cluster(tls=tls).validate().tls is tls
    cluster(tls=TlsConfig("member.pem", "member.key")).validate()
    refused("tls.ca_file", tls=TlsConfig("c", "k", require_client_cert=True))
    refused("tls.cert_file", tls=TlsConfig("", "k"))
    refused("tls.key_file", tls=TlsConfig("c", " "))
    refused("tls.ca_file", tls=TlsConfig("c", "k", ca_file=""))
    refused("tls.require_client_cert", tls=TlsConfig("c", "k", "ca", require_client_cert=1))
    refused("tls.cert_file", tls=TlsConfig(None, "k"))


# ---- read-only and value semantics ----------------------------------------------------------
def test_mappings_are_copied_and_read_only():
    peers = {1: "a:1", 2: "b:1"}
    config = cluster(peers=peers, metadata={"zone": "a"}).validate()
    peers[3] = "c:1"
    assert dict(config.peers) == {1: "a:1", 2: "b:1"} and config.peers == {1: "a:1", 2: "b:1"}
    for change in (
        lambda: config.peers.__setitem__(3, "c:1"),
        lambda: config.peers.pop(1),
        lambda: config.peers.update({3: "c:1"}),
        lambda: config.metadata.clear(),
        lambda: config.metadata.setdefault("x", "y"),
    ):
        with pytest.raises(TypeError, match="read-only"):
            change()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.listen = "h:1"  # type: ignore[misc]
    changed = dataclasses.replace(config, peers={**config.peers, 3: "c:1"}).validate()
    assert changed.voters == {1, 2, 3}
    with pytest.raises(TypeError):
        changed.peers[4] = "d:1"


def test_configurations_pickle_copy_and_hash():
    config = cluster(peers={1: "a:1"}, metadata={"zone": "a"}, tls=TlsConfig("c", "k"))
    for twin in (pickle.loads(pickle.dumps(config)), copy.deepcopy(config), copy.copy(config)):
        assert twin == config and hash(twin) == hash(config)
        with pytest.raises(TypeError):
            twin.peers[2] = "b:1"
    assert len({config, dataclasses.replace(config)}) == 1


# ---- from_dict -----------------------------------------------------------------------------
def test_from_dict_takes_json_shaped_values():
    config = ClusterConfig.from_dict({
        "member_id": 2,
        "peers": {"1": "a:1", "2": "b:1"},
        "election_timeout_ms_lower": 200,
        "election_timeout_ms_upper": 400,
        "tls": {"cert_file": "c", "key_file": "k"},
        "linger_ms": None,
    })
    assert config.peers == {1: "a:1", 2: "b:1"} and config.tls == TlsConfig("c", "k")
    assert type(config.election_timeout_ms_lower) is float
    assert isinstance(ClusterConfig.from_dict({"member_id": 1}), ClusterConfig)
    assert type(RaftConfig.from_dict({"member_id": 1})) is RaftConfig


@pytest.mark.parametrize(
    "data,field,words",
    [
        ({"member_id": 1, "listn": "h:1"}, "listn", "did you mean 'listen'"),
        ({"member_id": 1, "bogus": 1}, "bogus", "unknown setting"),
        ({"listen": "h:1"}, "member_id", "required"),
        ({"member_id": 1, "peers": {"1": "a:1", "01": "b:1"}}, "peers", "twice"),
        ({"member_id": 1, "peers": {"x": "a:1"}}, "peers", "integers"),
        ({"member_id": 1, "tls": {"cert_file": "c"}}, "tls.key_file", "required"),
        ({"member_id": 1, "tls": {"cert_file": "c", "key_file": "k", "ca": "x"}}, "tls.ca",
         "did you mean 'tls.ca_file'"),
        ({"member_id": 1, "request_timeout_ms": "100"}, "request_timeout_ms", "number"),
        ({"member_id": 1, "cold_start": "yes"}, "cold_start", "true or false"),
    ],
)
def test_from_dict_refusals_name_the_setting(data, field, words):
    with pytest.raises(ConfigError) as info:
        ClusterConfig.from_dict(data)
    assert info.value.field == field and words in str(info.value)


def test_from_dict_needs_a_mapping_and_raft_config_has_no_cluster_settings():
    with pytest.raises(ConfigError, match="^config: must be a mapping"):
        ClusterConfig.from_dict([("member_id", 1)])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="^listen: unknown setting"):
        RaftConfig.from_dict({"member_id": 1, "listen": "h:1"})


# ---- from_file -----------------------------------------------------------------------------
TOML = """\
member_id = 2
cluster_id = 7
listen = "0.0.0.0:7100"
public_endpoint = "10.0.0.2:7100"
election_timeout_ms_lower = 200
election_timeout_ms_upper = 400
data_dir = "/var/lib/pyraft"
sync = "interval"
proposal_queue_full = "raise"

[peers]
1 = "10.0.0.1:7100"
2 = "10.0.0.2:7100"
3 = "[2001:db8::3]:7100"

[metadata]
zone = "eu-1"

[tls]
cert_file = "member.pem"
key_file = "member.key"
ca_file = "ca.pem"
require_client_cert = true
"""

JSON = {
    "member_id": 2, "cluster_id": 7, "listen": "0.0.0.0:7100",
    "public_endpoint": "10.0.0.2:7100", "election_timeout_ms_lower": 200,
    "election_timeout_ms_upper": 400.0, "data_dir": "/var/lib/pyraft", "sync": "interval",
    "proposal_queue_full": "raise", "linger_ms": None,
    "peers": {"1": "10.0.0.1:7100", "2": "10.0.0.2:7100", "3": "[2001:db8::3]:7100"},
    "metadata": {"zone": "eu-1"},
    "tls": {"cert_file": "member.pem", "key_file": "member.key", "ca_file": "ca.pem",
            "require_client_cert": True},
}


def test_from_file_reads_json_and_toml_alike(tmp_path):
    (tmp_path / "member.toml").write_text(TOML)
    (tmp_path / "member.json").write_text(json.dumps(JSON))
    from_toml = ClusterConfig.from_file(tmp_path / "member.toml")
    from_json = ClusterConfig.from_file(str(tmp_path / "member.json"))
    assert from_toml == from_json
    assert from_toml.peers[3] == "[2001:db8::3]:7100" and from_toml.voters == {1, 2, 3}
    assert from_toml.tls == TlsConfig("member.pem", "member.key", "ca.pem", True)
    assert from_toml.endpoint == "10.0.0.2:7100" and from_toml.cluster_id == 7
    (tmp_path / "UPPER.JSON").write_text(json.dumps(JSON))
    assert ClusterConfig.from_file(tmp_path / "UPPER.JSON") == from_json


@pytest.mark.parametrize(
    "name,text,field,words",
    [
        ("member.yaml", "member_id: 1", "member.yaml", "use .json or .toml"),
        ("member", "{}", "member", "use .json or .toml"),
        ("member.json", "{member_id: 1}", "member.json", "not valid JSON"),
        ("member.json", "[1, 2]", "config", "must be a mapping"),
        ("member.toml", "member_id = ", "member.toml", "not valid TOML"),
        ("member.json", '{"member_id": 1, "ttl_hops": 0}', "ttl_hops", "(in "),
        ("member.toml", "member_id = 1\nlisten = 'h'\n", "listen", "member.toml"),
        ("member.toml", "listen = 'h:1'\n", "member_id", "required"),
    ],
)
def test_from_file_refusals(tmp_path, name, text, field, words):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        ClusterConfig.from_file(path)
    assert info.value.field in (field, str(path)) and words in str(info.value)
    if field == name:
        assert info.value.field == str(path)
    else:
        assert info.value.field == field


def test_from_file_undecodable_and_missing(tmp_path):
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe{")
    (tmp_path / "bad.toml").write_bytes(b"member_id = 1\n\xff")
    for name in ("bad.json", "bad.toml"):
        with pytest.raises(ConfigError, match="not valid"):
            ClusterConfig.from_file(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        ClusterConfig.from_file(tmp_path / "absent.toml")


# ---- from_env ------------------------------------------------------------------------------
def test_from_env_parses_every_kind():
    config = ClusterConfig.from_env(environ={
        "PYRAFT_MEMBER_ID": " 2 ",
        "PYRAFT_CLUSTER_ID": "1_000",
        "PYRAFT_ELECTION_TIMEOUT_MS_LOWER": "2e2",
        "PYRAFT_ELECTION_TIMEOUT_MS_UPPER": "400",
        "PYRAFT_PRE_VOTE": "off",
        "PYRAFT_COLD_START": "No",
        "PYRAFT_LISTEN": "[::]:7100",
        "PYRAFT_PUBLIC_ENDPOINT": "",
        "PYRAFT_PEERS": "1=10.0.0.1:7100, 2=[::1]:7100,,",
        "PYRAFT_METADATA": "zone=eu-1,rack = r3,note=a=b,empty=",
        "PYRAFT_DATA_DIR": "/var/lib/pyraft",
        "PYRAFT_LINGER_MS": "0",
        "PYRAFT_TLS_CERT_FILE": "c",
        "PYRAFT_TLS_KEY_FILE": "k",
        "PYRAFT_TLS_CA_FILE": "",
        "PYRAFT_NO_EXTENSIONS": "1",  # a switch of pyraft, not a setting
        "PYRAFT_REWRITE": "1",
        "PYRAFTER": "x",  # another prefix
        "HOME": "/root",
    })
    assert config.member_id == 2 and config.cluster_id == 1000
    assert config.election_timeout_ms_lower == 200.0 and not config.pre_vote
    assert not config.cold_start and config.public_endpoint is None
    assert config.peers == {1: "10.0.0.1:7100", 2: "[::1]:7100"}
    assert config.metadata == {"zone": "eu-1", "rack": "r3", "note": "a=b", "empty": ""}
    assert config.linger_ms == 0.0 and config.tls == TlsConfig("c", "k")


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "yes", "On", " on "])
def test_env_true(text):
    assert ClusterConfig.from_env(environ={"PYRAFT_MEMBER_ID": "1", "PYRAFT_STANDBY": text,
                                           "PYRAFT_COLD_START": "false"}).standby


@pytest.mark.parametrize("text", ["0", "false", "False", "no", "off"])
def test_env_false(text):
    env = {"PYRAFT_MEMBER_ID": "1", "PYRAFT_PRE_VOTE": text}
    assert not ClusterConfig.from_env(environ=env).pre_vote


@pytest.mark.parametrize(
    "variable,text,field,words",
    [
        ("PYRAFT_MEMBER_ID", "one", "member_id", "PYRAFT_MEMBER_ID='one' is not an integer"),
        ("PYRAFT_MEMBER_ID", "1.0", "member_id", "not an integer"),
        ("PYRAFT_TICK_MS", "fast", "tick_ms", "PYRAFT_TICK_MS='fast' is not a number"),
        ("PYRAFT_TICK_MS", "nan", "tick_ms", "finite"),
        ("PYRAFT_STANDBY", "maybe", "standby", "not a boolean"),
        ("PYRAFT_STANDBY", "", "standby", "not a boolean"),
        ("PYRAFT_PEERS", "1=a:1,1=b:1", "peers", "twice"),
        ("PYRAFT_PEERS", "a=a:1", "peers", "'a' is not a number"),
        ("PYRAFT_PEERS", "a:1", "peers", "not 'key=value'"),
        ("PYRAFT_PEERS", "1=a:1,2=b", "peers", "member 2"),
        ("PYRAFT_METADATA", "=v", "metadata", "not 'key=value'"),
        ("PYRAFT_METADATA", "k=1,k=2", "metadata", "twice"),
        ("PYRAFT_LISTN", "h:1", "PYRAFT_LISTN", "did you mean 'PYRAFT_LISTEN'"),
        ("PYRAFT_member_id", "1", "PYRAFT_member_id", "unknown setting"),
        ("PYRAFT_TLS_CERT", "c", "PYRAFT_TLS_CERT", "did you mean 'PYRAFT_TLS_CERT_FILE'"),
        ("PYRAFT_TLS_KEY_FILE", "k", "tls.cert_file", "required"),
        ("PYRAFT_TLS_REQUIRE_CLIENT_CERT", "sure", "tls.require_client_cert", "boolean"),
        ("PYRAFT_TTL_HOPS", "300", "ttl_hops", "must be in [1, 255], not 300"),
    ],
)
def test_from_env_refusals_name_the_setting(variable, text, field, words):
    env = {"PYRAFT_MEMBER_ID": "1", variable: text}
    with pytest.raises(ConfigError) as info:
        ClusterConfig.from_env(environ=env)
    assert info.value.field == field and words in str(info.value), str(info.value)


def test_from_env_prefix_and_process_environment(monkeypatch):
    monkeypatch.setenv("PYRAFT_MEMBER_ID", "5")
    monkeypatch.setenv("RAFTNODE7_MEMBER_ID", "6")
    monkeypatch.setenv("RAFTNODE7_LISTEN", "h:1")
    assert ClusterConfig.from_env().member_id == 5
    node = ClusterConfig.from_env("RAFTNODE7_")
    assert node.member_id == 6 and node.listen == "h:1"
    # a prefix shared with other software: refuse its variables, or ignore them
    monkeypatch.setenv("RAFTNODE7_EXTRA_CA_CERTS", "/etc/ca.pem")
    with pytest.raises(ConfigError, match="^RAFTNODE7_EXTRA_CA_CERTS: unknown setting"):
        ClusterConfig.from_env("RAFTNODE7_")
    assert ClusterConfig.from_env("RAFTNODE7_", strict=False) == node
    with pytest.raises(ConfigError, match="^prefix: "):
        ClusterConfig.from_env("", environ={})
    with pytest.raises(ConfigError, match="^member_id: is required"):
        ClusterConfig.from_env("NOTHING_HERE_", environ={})
    assert RaftConfig.from_env(environ={"PYRAFT_MEMBER_ID": "3"}) == RaftConfig(member_id=3)
    with pytest.raises(ConfigError, match="^PYRAFT_TLS_CERT_FILE: unknown setting"):
        RaftConfig.from_env(environ={"PYRAFT_MEMBER_ID": "3", "PYRAFT_TLS_CERT_FILE": "c"})


def test_to_env_refuses_what_the_format_cannot_carry():
    with pytest.raises(ConfigError, match="^metadata: "):
        cluster(metadata={"k": "a,b"}).to_env()
    with pytest.raises(ConfigError, match="^metadata: "):
        cluster(metadata={"k": " a"}).to_env()
    with pytest.raises(ConfigError, match="^data_dir: "):
        cluster(data_dir="/tmp/x ").to_env()
    env = cluster(tls=TlsConfig("c", "k")).to_env("X_")
    assert env["X_TLS_CA_FILE"] == "" and env["X_TLS_REQUIRE_CLIENT_CERT"] == "false"
    assert "X_TLS" not in env and "X_PEERS" in env


# ---- round trips ---------------------------------------------------------------------------
_hosts = st.sampled_from(["127.0.0.1", "localhost", "node-1.example.com", "[::1]", "10.1.2.3"])
_member_ids = st.integers(1, MEMBER_ID_MAX)
_env_safe_text = st.text(st.characters(exclude_characters=",", exclude_categories=("Cs",)),
                         max_size=8).map(str.strip)
_metadata = st.dictionaries(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,8}", fullmatch=True), _env_safe_text,
    max_size=4)
_paths = st.text("abc/_-.0123456789", min_size=1, max_size=12).map(lambda p: "/" + p)
_tls = st.none() | st.builds(
    TlsConfig, _paths, _paths, _paths, st.booleans()
).filter(lambda t: t.ca_file is not None or not t.require_client_cert)


@st.composite
def cluster_configs(draw) -> ClusterConfig:
    member = draw(_member_ids)
    cold_start = draw(st.booleans())
    others = draw(st.lists(_member_ids, max_size=4, unique=True))
    members = sorted(set(others) | ({member} if others and cold_start else set()))
    host = draw(_hosts)
    peers = {m: f"{host}:{7000 + i}" for i, m in enumerate(members)}
    tick = draw(st.sampled_from([1.0, 5.0, 10.0]))
    lower = draw(st.floats(30.0, 1000.0))
    upper = lower + draw(st.floats(tick, 1000.0))
    request = draw(st.floats(0.5, lower))
    connect = draw(st.floats(0.25, request))
    append = draw(st.integers(1, 4 * MiB))
    return ClusterConfig(
        member_id=member,
        election_timeout_ms_lower=lower,
        election_timeout_ms_upper=upper,
        heartbeat_threshold=draw(st.floats(0.01, 0.6)),
        clock_drift_bound=draw(st.floats(1.0, 10.0)),
        tick_ms=tick,
        pre_vote=draw(st.booleans()),
        standby=draw(st.booleans()) and len(peers) > 1,
        append_bytes_max=append,
        warmup_rounds=draw(st.integers(1, 100)),
        cluster_id=draw(st.integers(0, 2**64 - 1)),
        listen=f"{draw(_hosts)}:{draw(st.integers(0, 65535))}",
        public_endpoint=draw(st.none() | st.just(f"{host}:{draw(st.integers(1, 65535))}")),
        peers=peers,
        cold_start=cold_start,
        metadata=draw(_metadata),
        data_dir=draw(st.none() | _paths),
        sync=draw(st.sampled_from(["always", "interval", "never"])),
        sync_interval_ms=draw(st.floats(0.001, 10_000.0)),
        request_timeout_ms=request,
        connect_timeout_ms=connect,
        linger_ms=draw(st.none() | st.floats(0.0, 60_000.0)),
        graceful_shutdown_timeout_ms=draw(st.floats(0.001, 600_000.0)),
        transmission_block_bytes=draw(st.integers(1, 16 * MiB)),
        server_backlog=draw(st.integers(1, 65535)),
        frame_bytes_max=draw(st.integers(max(append, MiB) + FRAME_HEADROOM_BYTES, 2**32 - 1)),
        send_queue_messages_max=draw(st.integers(1, 1_000_000)),
        proposal_queue_max=draw(st.integers(1, 1_000_000)),
        proposal_queue_full=draw(st.sampled_from(["wait", "raise"])),
        ttl_hops=draw(st.integers(1, 255)),
        tls=draw(_tls),
    ).validate()


@given(cluster_configs())
def test_round_trip_through_a_dict_and_json(config):
    assert ClusterConfig.from_dict(config.to_dict()) == config
    assert ClusterConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@given(cluster_configs(), st.sampled_from(["PYRAFT_", "NODE_1_"]))
def test_round_trip_through_the_environment(config, prefix):
    assert ClusterConfig.from_env(prefix, environ=config.to_env(prefix)) == config


@given(cluster_configs())
def test_round_trip_through_a_file(config):
    with tempfile.TemporaryDirectory() as directory:
        path = pathlib.Path(directory) / "member.json"
        path.write_text(json.dumps(config.to_dict()))
        assert ClusterConfig.from_file(path) == config


@given(st.integers(1, MEMBER_ID_MAX), st.floats(30.0, 500.0), st.floats(0.05, 0.6))
def test_raft_config_round_trips(member, lower, threshold):
    config = RaftConfig(member_id=member, election_timeout_ms_lower=lower,
                        election_timeout_ms_upper=lower * 2, heartbeat_threshold=threshold)
    config.validate()
    assert RaftConfig.from_dict(config.to_dict()) == config
    assert RaftConfig.from_env(environ=config.to_env()) == config


@pytest.mark.parametrize(
    "field,bad,good",
    [
        ("failure_dead_ms", -1.0, 0.0),
        ("failure_dead_ms", 3_600_001.0, 3_600_000.0),
        ("failure_dead_ms", 599.0, 600.0),  # shorter than an election could take
        ("failure_phi_threshold", 0.5, 1.0),
        ("failure_phi_threshold", 101.0, 100.0),
        ("failure_voters_min", 0, 1),
        ("failure_voters_min", 1025, 1024),
        ("failure_unheard_ms", -1.0, 0.0),
        ("failure_unheard_ms", 36_000_001.0, 36_000_000.0),
        ("failure_unheard_ms", 999.0, 1000.0),  # shorter than the dead window below
    ],
)
def test_failure_detection_limits(field, bad, good):
    base = {"member_id": 1, "failure_dead_ms": 1000.0} if field == "failure_unheard_ms" \
        else {"member_id": 1}
    with pytest.raises(ConfigError) as info:
        RaftConfig(**{**base, field: bad}).validate()
    assert info.value.field == field
    RaftConfig(**{**base, field: good}).core_options()


def test_failure_detection_translates_into_ticks():
    options = RaftConfig(member_id=1, failure_dead_ms=1000, failure_voters_min=5).core_options()
    assert (options.failure_dead_ticks, options.failure_voters_min) == (100, 5)
    assert RaftConfig(member_id=1).core_options().failure_dead_ticks == 0  # off by default
    # a voter never heard from: ten times the dead window unless set (0 says "derived")
    assert options.failure_unheard_ticks == 0
    options = RaftConfig(member_id=1, failure_dead_ms=1000,
                         failure_unheard_ms=30_000).core_options()
    assert options.failure_unheard_ticks == 3000
