"""Fuzz target ``otlp_json``: an OTLP/HTTP JSON body → ``receiver.decode`` → translation → store.

``BodyError`` is the receiver's expected answer to a bad body (HTTP 400/415); every other
exception is a crash. What decodes is checked exactly as in ``otlp_protobuf``.
"""

from __future__ import annotations

from tests.fuzz.common import atheris
from tests.fuzz.otlp_protobuf import translate_and_store

with atheris.instrument_imports(include=["scaler"]):
    from scaler.httpbody import BodyError
    from scaler.receiver import decode


def test_one_input(data: bytes) -> None:
    try:
        request, as_json = decode(data, "application/json; charset=utf-8")
    except BodyError:
        return
    assert as_json
    translate_and_store(request)
