"""A structure-aware libFuzzer mutator for protobuf inputs (``otlp_protobuf``).

Byte-level mutations of a serialized request mostly produce undecodable bytes. This mutator
decodes the input, changes one to three fields (an interesting value for a scalar, an element
added to/removed from/duplicated in a repeated field, another case of a ``oneof``), and
encodes it again; a third of the time, and for undecodable inputs, it leaves the work to
libFuzzer's own byte mutations.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from tests.fuzz.common import NOW_S, atheris

_NOW_NS = int(NOW_S) * 10**9
_S = 10**9
_FD = FieldDescriptor

_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-9, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf]
_INT32 = [0, 1, -1, 2, 20, 21, -10, -11, 1023, 1024, 1100, -1100, 2**31 - 1, -(2**31)]
_INT64 = [0, 1, -1, 2**53 + 1, 2**63 - 1, -(2**63)]
_UINT32 = [0, 1, 2, 255, 2**32 - 1]
_UINT64 = [0, 1, 2**63, 2**64 - 1, _NOW_NS, _NOW_NS + 1, _NOW_NS - 60 * _S, _NOW_NS + 299 * _S, _NOW_NS + 301 * _S]
_STRINGS = ["", "x", "le", "quantile", "__name__", "k8s.pod.name", "service.name", "a.b/c", "é☃", "+Inf", "0.5"]


def _scalar(field: FieldDescriptor, rng: random.Random, current: Any) -> Any:
    t = field.type
    if t in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return rng.choice([*_FLOATS, rng.uniform(-1e6, 1e6), -current])
    if t in (_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32):
        return rng.choice([*_INT32, rng.randint(-(2**31), 2**31 - 1)])
    if t in (_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64):
        return rng.choice([*_INT64, rng.randint(-(2**63), 2**63 - 1)])
    if t in (_FD.TYPE_UINT32, _FD.TYPE_FIXED32):
        return rng.choice([*_UINT32, rng.randint(0, 2**32 - 1)])
    if t in (_FD.TYPE_UINT64, _FD.TYPE_FIXED64):
        return rng.choice([*_UINT64, rng.randint(0, 2**64 - 1), current + rng.randint(-3, 3) * _S])
    if t == _FD.TYPE_BOOL:
        return not current
    if t == _FD.TYPE_STRING:
        return rng.choice([*_STRINGS, current + current[: rng.randint(0, 8)], current[: rng.randint(0, len(current))]])
    if t == _FD.TYPE_BYTES:
        return rng.randbytes(rng.choice([0, 1, 8, 16]))
    if t == _FD.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values] if field.enum_type is not None else []
        return rng.choice([*numbers, rng.randint(-1, 5)])
    return current


Candidate = tuple[Message, Any]
"""A message and one of its field descriptors."""


def _candidates(message: Message, out: list[Candidate], depth: int = 0) -> None:
    """Every (message, field) of the tree, present or not; bounded so deep inputs stay cheap."""
    if depth > 12 or len(out) > 2000:
        return
    for field in message.DESCRIPTOR.fields:
        out.append((message, field))
        if field.type != _FD.TYPE_MESSAGE:
            continue
        value = getattr(message, field.name)
        if field.is_repeated:
            for item in value:
                _candidates(item, out, depth + 1)
        elif message.HasField(field.name):
            _candidates(value, out, depth + 1)


def _mutate_field(message: Message, field: FieldDescriptor, rng: random.Random) -> None:
    with contextlib.suppress(ValueError, TypeError):  # a value out of the field's range: no change
        _change(message, field, rng)


def _change(message: Message, field: FieldDescriptor, rng: random.Random) -> None:
    value = getattr(message, field.name)
    if field.is_repeated:
        choice = rng.randrange(4)
        if choice == 0 and len(value):
            del value[rng.randrange(len(value))]
        elif field.type == _FD.TYPE_MESSAGE:
            if choice == 1 or not len(value):
                value.add()
            else:
                value.add().CopyFrom(value[rng.randrange(len(value))])  # duplicate an element
        elif choice == 1 or not len(value):
            value.append(_scalar(field, rng, _default(field)))
        else:
            i = rng.randrange(len(value))
            value[i] = _scalar(field, rng, value[i])
        return
    if field.type == _FD.TYPE_MESSAGE:
        if message.HasField(field.name) and rng.random() < 0.3:
            message.ClearField(field.name)
        else:
            value.SetInParent()  # sets this case of a oneof, clearing the others
        return
    setattr(message, field.name, _scalar(field, rng, value))


def _default(field: FieldDescriptor) -> Any:
    defaults: dict[int, Callable[[], Any]] = {
        _FD.CPPTYPE_STRING: lambda: b"" if field.type == _FD.TYPE_BYTES else "",
        _FD.CPPTYPE_BOOL: lambda: False,
        _FD.CPPTYPE_DOUBLE: lambda: 0.0,
        _FD.CPPTYPE_FLOAT: lambda: 0.0,
    }
    return defaults.get(field.cpp_type, lambda: 0)()


def mutator(message_type: type[Message]) -> Callable[[bytes, int, int], bytes]:
    """An atheris ``custom_mutator`` for inputs that are serialized ``message_type``."""

    def mutate(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        message = message_type()
        try:
            message.ParseFromString(data)
        except DecodeError:
            return bytes(atheris.Mutate(data, max_size))
        if rng.random() < 0.33:
            return bytes(atheris.Mutate(data, max_size))
        for _ in range(rng.randint(1, 3)):
            fields: list[Candidate] = []
            _candidates(message, fields)
            target, field = rng.choice(fields)
            _mutate_field(target, field, rng)
        out = message.SerializeToString()
        return out if len(out) <= max_size else bytes(atheris.Mutate(data, max_size))

    return mutate
