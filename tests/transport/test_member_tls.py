"""``pyraft.transport.tls``: the member SSL contexts built from a ``TlsConfig``, and member
identity (the DNS name ``member-<id>.pyraft`` a certificate carries)."""

from __future__ import annotations

import ssl

import pytest
import trustme

from pyraft.config import TlsConfig
from pyraft.transport import tcp, tls
from pyraft.transport.tls import (
    certificate_names,
    identity_problem,
    member_contexts,
    member_identity,
)


def write_pem_files(tmp_path, ca: trustme.CA, name: str, *identities: str) -> dict[str, str]:
    cert = ca.issue_cert("127.0.0.1", *identities)
    files = {"cert_file": str(tmp_path / f"{name}.pem"), "key_file": str(tmp_path / f"{name}.key"),
             "ca_file": str(tmp_path / "ca.pem")}
    cert.cert_chain_pems[0].write_to_path(files["cert_file"])
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(files["cert_file"], append=True)
    cert.private_key_pem.write_to_path(files["key_file"])
    ca.cert_pem.write_to_path(files["ca_file"])
    return files


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize("mutual", [False, True])
@pytest.mark.parametrize("identity", [False, True])
def test_member_contexts_follow_the_configuration(tmp_path, ca, mutual, identity):
    files = write_pem_files(tmp_path, ca, "m1", member_identity(1))
    server, client = member_contexts(TlsConfig(**files, require_client_cert=mutual,
                                               member_identity=identity))
    assert isinstance(server, ssl.SSLContext) and isinstance(client, ssl.SSLContext)
    # an identity is proven by a certificate: member identity asks every client for one
    expected = ssl.CERT_REQUIRED if mutual or identity else ssl.CERT_NONE
    assert server.verify_mode == expected
    assert client.verify_mode == ssl.CERT_REQUIRED  # the server must prove itself
    assert client.check_hostname is False  # members are addressed by IP; the CA is trusted
    # both trust the configured CA (and nothing else was loaded into them)
    assert [c["subject"] for c in server.get_ca_certs()] == \
        [c["subject"] for c in client.get_ca_certs()]
    assert len(client.get_ca_certs()) == 1


def test_member_contexts_report_unreadable_files(tmp_path, ca):
    files = write_pem_files(tmp_path, ca, "m1", member_identity(1))
    with pytest.raises(FileNotFoundError):
        member_contexts(TlsConfig(**{**files, "key_file": str(tmp_path / "missing.key")}))
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ssl.SSLError):
        member_contexts(TlsConfig(**{**files, "cert_file": str(tmp_path / "bad.pem")}))


class FakeConnection:
    """What ``identity_problem`` reads of a connection: ``get_extra_info("peercert")``."""

    def __init__(self, peercert: object) -> None:
        self.peercert = peercert

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.peercert if name == "peercert" else default


def test_identity_problem_names_what_is_missing():
    named = {"subjectAltName": (("DNS", "member-2.pyraft"), ("IP Address", "127.0.0.1"))}
    assert identity_problem(FakeConnection(named), 2) is None  # type: ignore[arg-type]
    wrong = identity_problem(FakeConnection(named), 3)  # type: ignore[arg-type]
    assert wrong is not None and "member-3.pyraft" in wrong and "member-2.pyraft" in wrong
    for peercert in (None, {}):
        problem = identity_problem(FakeConnection(peercert), 2)  # type: ignore[arg-type]
        assert problem is not None and "no verified certificate" in problem
    assert identity_problem(None, 2) is not None


def test_identity_names():
    assert member_identity(7) == "member-7" + tls.MEMBER_IDENTITY_SUFFIX == "member-7.pyraft"
    for bad in (0, -1, 2**64, False):
        with pytest.raises(ValueError):
            member_identity(bad)
    assert certificate_names({"subjectAltName": (("DNS", "A.Example"),)}) == {"a.example"}
    assert certificate_names("not a certificate") == frozenset()


def test_the_tcp_module_re_exports_the_same_helpers():
    assert tcp.member_identity is member_identity
    assert tcp.certificate_names is certificate_names
