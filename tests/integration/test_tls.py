"""TLS and mTLS on the three listeners, and certificate rotation without a restart."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from scaler._gen import externalscaler_pb2 as pb
from scaler._gen import externalscaler_pb2_grpc as pb_grpc
from tests.otlpdata import DECODE, gauge, now_ns, otlp_stub, request


@dataclass
class Pem:
    cert: bytes
    key: bytes


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> tuple[Pem, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return _pem(cert, key), cert, key


def issue(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, cn: str, server: bool, client: bool | None = None
) -> Pem:
    """A leaf for a server (with localhost names) or a client (``client`` defaults to ``not server``;
    both for a peer that serves and calls its peers)."""
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    if (not server) if client is None else client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return _pem(builder.sign(ca_key, hashes.SHA256()), key)


def _pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    return Pem(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


@dataclass
class Pki:
    ca: Pem
    server: Pem
    client: Pem
    dir: Path

    def write_server(self, server: Pem) -> None:
        for name, data in (("server.crt", server.cert), ("server.key", server.key)):
            tmp = self.dir / (name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, self.dir / name)  # atomic, as a Secret volume update is


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca, ca_cert, ca_key = make_ca("test-ca")
    p = Pki(ca, issue(ca_cert, ca_key, "keda-otel-scaler", True), issue(ca_cert, ca_key, "keda", False), tmp_path)
    (tmp_path / "ca.crt").write_bytes(ca.cert)
    p.write_server(p.server)
    return p


def tls_settings(prefix: str, pki: Pki) -> dict[str, str]:
    d = pki.dir
    return {
        f"{prefix}_tls_cert_file": str(d / "server.crt"),
        f"{prefix}_tls_key_file": str(d / "server.key"),
        f"{prefix}_tls_ca_file": str(d / "ca.crt"),
    }


def keda_stub(port: int, root: bytes, client: Pem | None) -> pb_grpc.ExternalScalerStub:
    creds = grpc.ssl_channel_credentials(
        root_certificates=root,
        private_key=client.key if client else None,
        certificate_chain=client.cert if client else None,
    )
    return pb_grpc.ExternalScalerStub(grpc.secure_channel(f"localhost:{port}", creds))


SPEC = pb.ScaledObjectRef(name="so", namespace="ns", scalerMetadata={"metricQuery": "x", "targetValue": "2"})


def test_keda_mtls_refuses_clients_without_a_certificate_and_rotates(service_factory: Any, pki: Pki) -> None:
    svc = service_factory(**tls_settings("keda", pki))
    port = svc.ports.keda
    ok = keda_stub(port, pki.ca.cert, pki.client)
    assert ok.GetMetricSpec(SPEC, timeout=5).metricSpecs[0].targetSizeFloat == 2
    with pytest.raises(grpc.RpcError) as err:
        keda_stub(port, pki.ca.cert, None).GetMetricSpec(SPEC, timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError):
        grpc_insecure = pb_grpc.ExternalScalerStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        grpc_insecure.GetMetricSpec(SPEC, timeout=5)

    # rotate to a server certificate from a new CA that also trusts our client CA
    new_ca, new_ca_cert, new_ca_key = make_ca("rotated-ca")
    pki.write_server(issue(new_ca_cert, new_ca_key, "keda-otel-scaler", True))
    deadline = time.monotonic() + 10
    while True:
        try:
            rotated = keda_stub(port, new_ca.cert, pki.client).GetMetricSpec(SPEC, timeout=5)
            break
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert rotated.metricSpecs[0].targetSizeFloat == 2
    with pytest.raises(grpc.RpcError):  # the old CA no longer verifies the server
        keda_stub(port, pki.ca.cert, pki.client).GetMetricSpec(SPEC, timeout=5)


def test_otlp_grpc_tls(service_factory: Any, pki: Pki) -> None:
    svc = service_factory(**tls_settings("otlp", pki))
    creds = grpc.ssl_channel_credentials(pki.ca.cert, pki.client.key, pki.client.cert)
    stub = otlp_stub(svc.ports.otlp, creds)
    stub.Export(request(DECODE, "d0", gauge("vllm:num_requests_waiting", 3, now_ns())), timeout=5)
    reply = httpx.post(svc.http + "/memstore/query", json={"query": "vllm:num_requests_waiting"})
    assert reply.json()["value"] == 3


def test_rest_mtls_and_reload(service_factory: Any, pki: Pki) -> None:
    svc = service_factory(**tls_settings("rest", pki))
    url = f"https://localhost:{svc.ports.http}/healthz"
    ca = str(pki.dir / "ca.crt")
    client_cert, client_key = pki.dir / "client.crt", pki.dir / "client.key"
    client_cert.write_bytes(pki.client.cert)
    client_key.write_bytes(pki.client.key)
    import ssl

    def context(cafile: str, with_client: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=cafile)
        if with_client:
            ctx.load_cert_chain(client_cert, client_key)
        return ctx

    assert httpx.get(url, verify=context(ca, True)).json() == {"status": "ok"}
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, verify=context(ca, False))
    new_ca, new_ca_cert, new_ca_key = make_ca("rotated-ca")
    pki.write_server(issue(new_ca_cert, new_ca_key, "keda-otel-scaler", True))
    (pki.dir / "new-ca.crt").write_bytes(new_ca.cert)
    deadline = time.monotonic() + 10
    while True:
        try:
            assert httpx.get(url, verify=context(str(pki.dir / "new-ca.crt"), True)).status_code == 200
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
