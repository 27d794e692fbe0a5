"""The member process of the tests and benchmarks (``pyraft.testing.member``) builds its member
the way users do: a ``ClusterConfig`` whose fields its flags set, every other field at the
configuration's default, and ``RaftCluster.from_config``.

These tests run in this process (nothing is started); ``tests/cluster/test_processes.py``
runs the member as a real process, over TCP and mutual TLS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import types

import pytest

from pyraft.config import ClusterConfig, TlsConfig
from pyraft.errors import ConfigError
from pyraft.testing import member

LISTEN = "127.0.0.1:7001"


def config_of(*flags: str) -> ClusterConfig:
    args = member.parser().parse_args(["--id", "1", "--listen", LISTEN, *flags])
    return member.build_config(args)


def test_without_flags_every_setting_is_the_configuration_default():
    built = config_of()
    expected = ClusterConfig(member_id=1, listen=LISTEN, peers={1: LISTEN}).validate()
    assert built == expected
    # the settings the member used to take from its own defaults are the configuration's
    defaults = {f.name: f.default for f in dataclasses.fields(ClusterConfig)}
    for name in ("election_timeout_ms_lower", "election_timeout_ms_upper", "cluster_id",
                 "proposal_queue_max", "graceful_shutdown_timeout_ms", "connect_timeout_ms"):
        assert getattr(built, name) == defaults[name], name
    assert built.tls is None and built.data_dir is None and built.cold_start


@pytest.mark.parametrize("flags, changed", [
    (["--election-ms", "150"], {"election_timeout_ms_lower": 150.0,
                                "election_timeout_ms_upper": 300.0}),
    (["--tick-ms", "5"], {"tick_ms": 5.0}),
    (["--data", "/tmp/m1", "--sync", "interval"], {"data_dir": "/tmp/m1", "sync": "interval"}),
    (["--cluster-id", "99"], {"cluster_id": 99}),
    (["--standby", "--peers", "1=127.0.0.1:7001,2=127.0.0.1:7002"],
     {"standby": True, "peers": {1: LISTEN, 2: "127.0.0.1:7002"}}),
    (["--failure-dead-ms", "600"], {"failure_dead_ms": 600.0}),
    (["--proposal-queue-max", "65536"], {"proposal_queue_max": 65536}),
    (["--join", "--peers", "2=127.0.0.1:7002"],
     {"cold_start": False, "peers": {2: "127.0.0.1:7002", 1: LISTEN}}),
])
def test_each_flag_sets_its_field_and_nothing_else(flags, changed):
    default = config_of()
    built = config_of(*flags)
    assert {name: getattr(built, name) for name in changed} == changed
    unchanged = {f.name for f in dataclasses.fields(ClusterConfig)} - set(changed)
    assert {name: getattr(built, name) for name in unchanged} == \
        {name: getattr(default, name) for name in unchanged}


def test_certificate_flags_give_mutual_tls_with_member_identities():
    built = config_of("--cert", "m.pem", "--key", "m.key", "--ca", "ca.pem")
    assert built.tls == TlsConfig(cert_file="m.pem", key_file="m.key", ca_file="ca.pem",
                                  require_client_cert=True, member_identity=True)


def test_tls_needs_all_three_files():
    with pytest.raises(ConfigError) as caught:
        config_of("--cert", "m.pem", "--key", "m.key")
    assert caught.value.field == "--cert"


def test_a_config_file_sets_any_field_under_the_flags(tmp_path):
    path = tmp_path / "member.json"
    path.write_text(json.dumps({"election_timeout_ms_lower": 500.0,
                                "election_timeout_ms_upper": 1000.0,
                                "request_timeout_ms": 80.0, "sync": "never"}))
    built = config_of("--config", str(path), "--election-ms", "200")
    assert (built.election_timeout_ms_lower, built.election_timeout_ms_upper) == (200.0, 400.0)
    assert built.request_timeout_ms == 80.0 and built.sync == "never"


def test_a_setting_the_configuration_refuses_is_a_config_error():
    # 10 ms is under three ticks, and under the default request timeout
    with pytest.raises(ConfigError) as caught:
        config_of("--election-ms", "10")
    assert caught.value.field == "election_timeout_ms_lower"


@pytest.mark.parametrize("peers", ["1:127.0.0.1:7001", "x=127.0.0.1:7001"])
def test_a_malformed_peer_list_names_the_flag(peers):
    with pytest.raises(ConfigError) as caught:
        config_of("--peers", peers)
    assert caught.value.field == "--peers"


def test_main_refuses_a_bad_configuration_before_starting_anything(capsys):
    assert member.main(["--id", "1", "--listen", LISTEN, "--election-ms", "10"]) == 2
    assert "election_timeout_ms_lower" in capsys.readouterr().err


def test_main_refuses_a_bad_control_address(capsys):
    assert member.main(["--id", "1", "--listen", LISTEN, "--control", "nowhere"]) == 2
    assert "--control" in capsys.readouterr().err


def test_the_member_is_built_by_from_config_with_its_state_machine(monkeypatch):
    built: list[tuple] = []

    class Built(Exception):
        pass

    def from_config(config, *, state_machine=None, **options):
        built.append((config, state_machine, options))
        raise Built

    monkeypatch.setattr(member.RaftCluster, "from_config", from_config)
    args = member.parser().parse_args(["--id", "1", "--listen", LISTEN, "--state", "count",
                                       "--snapshot-entries", "77"])
    config, machine = member.build_config(args), member.build_machine(args)
    with pytest.raises(Built):
        asyncio.run(member.serve(config, machine, ("127.0.0.1", 0)))
    assert built == [(config, machine, {})]
    assert isinstance(machine, member.CountLog) and machine.snapshot_entries == 77


def test_items_of_a_member_that_keeps_only_a_count_is_an_error():
    counting = types.SimpleNamespace(state_machine=member.CountLog())
    with pytest.raises(ValueError, match="keeps no items"):
        asyncio.run(member.handle(counting, {"op": "items"}))
    keeping = types.SimpleNamespace(state_machine=member.ItemLog())
    keeping.state_machine.apply(1, memoryview(b"first"))
    assert asyncio.run(member.handle(keeping, {"op": "items"})) == {"ok": True,
                                                                  "items": ["first"]}
