"""TLS for the three listeners, with certificates re-read when their files change.

* gRPC: ``grpc.dynamic_ssl_server_credentials`` asks us for a new configuration on every
  handshake; we answer with one only when a file's mtime/size changed.
* HTTP: the ``ssl.SSLContext`` uvicorn serves with is reloaded in place by a watcher, so new
  connections get the new certificate without a restart.

A CA file turns on client-certificate verification (mTLS).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import cast

import grpc

from scaler.config import TLSFiles

logger = logging.getLogger(__name__)

FileStamp = tuple[tuple[float, int], ...]


def _stamp(tls: TLSFiles) -> FileStamp:
    out = []
    for path in (tls.cert_file, tls.key_file, tls.ca_file):
        if path:
            st = os.stat(path)
            out.append((st.st_mtime, st.st_size))
    return tuple(out)


def _grpc_config(tls: TLSFiles) -> grpc.ServerCertificateConfiguration:
    key = Path(tls.key_file).read_bytes()
    cert = Path(tls.cert_file).read_bytes()
    ca = Path(tls.ca_file).read_bytes() if tls.ca_file else None
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


def grpc_credentials(tls: TLSFiles, listener: str) -> grpc.ServerCredentials:
    """Server credentials that pick up rotated certificates on the next handshake."""
    state = {"stamp": _stamp(tls)}

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        try:
            stamp = _stamp(tls)
            if stamp == state["stamp"]:
                return None
            config = _grpc_config(tls)
        except OSError as exc:
            logger.error("%s TLS: cannot re-read certificates, keeping the old ones: %s", listener, exc)
            return None
        state["stamp"] = stamp
        logger.info("%s TLS: certificates reloaded", listener)
        return config

    # grpc's stubs say the fetcher must return a configuration; None ("unchanged") is documented.
    fetcher = cast(Callable[[], grpc.ServerCertificateConfiguration], fetch)
    return grpc.dynamic_ssl_server_credentials(
        _grpc_config(tls), fetcher, require_client_authentication=bool(tls.ca_file)
    )


class ReloadingSSLContext:
    """An SSLContext for the HTTP listener plus ``maybe_reload()`` for the watcher."""

    def __init__(self, tls: TLSFiles) -> None:
        self.tls = tls
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamp: FileStamp = ()
        self._load()

    def _load(self) -> None:
        self.context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        if self.tls.ca_file:
            self.context.load_verify_locations(self.tls.ca_file)
            self.context.verify_mode = ssl.CERT_REQUIRED
        self._stamp = _stamp(self.tls)

    def maybe_reload(self) -> bool:
        try:
            if _stamp(self.tls) == self._stamp:
                return False
            self._load()
        except (OSError, ssl.SSLError) as exc:
            logger.error("HTTP TLS: cannot re-read certificates, keeping the old ones: %s", exc)
            return False
        logger.info("HTTP TLS: certificates reloaded")
        return True
