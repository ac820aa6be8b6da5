"""Which sources an OTLP request carries: the exporting pod of each of its resources, named by
namespace, deployment (or statefulset) and pod from the resource's ``k8s.*`` attributes.

From a decoded request that is its resources' attributes; from its wire bytes (the native path,
which never decodes a request) :func:`resources_in` finds the ``Resource`` bytes of each
``ResourceMetrics`` with a walk of the top-level fields and of each ``ResourceMetrics``' own
fields only — a length skips a scope's metrics — so it costs a few varints per resource, not
per sample. The walk agrees with protobuf's parse on every request protobuf accepts (the
``otlp_protobuf`` fuzz target checks it).
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from scaler import nativeingest, otlp

Source = tuple[str, str, str]
"""(namespace, deployment, pod)."""

ATTRIBUTES = {
    "namespace": ("k8s.namespace.name",),
    "deployment": ("k8s.deployment.name", "k8s.statefulset.name"),
    "pod": ("k8s.pod.name", "service.instance.id"),
}
"""The resource attributes naming a source, the first one present winning."""
ATTRIBUTE_NAMES = frozenset(a for names in ATTRIBUTES.values() for a in names)


def key_of(attributes: Mapping[str, str]) -> Source:
    """A source from resource attributes ('' where none is present)."""
    found = [next((attributes[a] for a in names if attributes.get(a)), "") for names in ATTRIBUTES.values()]
    return found[0], found[1], found[2]


def of_resource(resource: Resource) -> Source:
    """The source a decoded ``Resource`` names."""
    return key_of({kv.key: otlp.any_value_str(kv.value) for kv in resource.attributes if kv.key in ATTRIBUTE_NAMES})


def resources_in(data: bytes) -> list[bytes]:
    """The ``Resource`` bytes of each ``resource_metrics`` of an Export request's wire bytes. A
    request of one resource (a collector sidecar's) is recognised by its first bytes; others are
    cut at their top-level fields by the C walker. A request the walk cannot follow (protobuf
    accepted it before, so it should not happen) is stored all the same, not attributed."""
    if not data:
        return []
    try:
        if data[0] == _RESOURCE_METRICS_TAG:
            size, body = _varint(data, 1)
            if body + size == len(data):
                return [_resource(data, body, len(data))]
        pieces = nativeingest.NativeIngest.pieces(data, 1)  # one per top-level field
        return [
            _resource(data, _varint(data, start + 1)[1], end)
            for start, end in pieces
            if data[start] == _RESOURCE_METRICS_TAG
        ]
    except (IndexError, ValueError, RecursionError):
        return []


def _resource(data: bytes, pos: int, end: int) -> bytes:
    """The ``Resource`` bytes of the ``ResourceMetrics`` at ``data[pos:end]``: its own fields are
    walked (a length skips a scope's metrics) and repeated occurrences concatenated, as protobuf
    merges them."""
    parts = []
    while pos < end:
        tag, pos = _varint(data, pos)
        if tag & 7 == 2:
            size, pos = _varint(data, pos)
            after = pos + size
            if tag == _RESOURCE_TAG:
                parts.append(data[pos:after])
        else:
            after = _skip(data, pos, tag)
        pos = after
    if pos != end:
        raise ValueError("a field runs past its message")
    return parts[0] if len(parts) == 1 else b"".join(parts)


_RESOURCE_METRICS_TAG = 1 << 3 | 2
"""ExportMetricsServiceRequest.resource_metrics (field 1, length-delimited)."""
_RESOURCE_TAG = 1 << 3 | 2
"""ResourceMetrics.resource (field 1, length-delimited)."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it (one to three bytes unrolled: tags and
    the lengths of messages under 2 MiB)."""
    a = data[pos]
    if a < 0x80:
        return a, pos + 1
    b = data[pos + 1]
    if b < 0x80:
        return (a & 0x7F) | b << 7, pos + 2
    c = data[pos + 2]
    if c < 0x80:
        return (a & 0x7F) | (b & 0x7F) << 7 | c << 14, pos + 3
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _skip(data: bytes, pos: int, tag: int) -> int:
    """The position after the value of the field ``tag`` that starts at ``pos`` (groups included)."""
    wire = tag & 7
    if wire == 0:
        return _varint(data, pos)[1]
    if wire == 2:
        size, pos = _varint(data, pos)
        end = pos + size
    elif wire in (1, 5):
        end = pos + (8 if wire == 1 else 4)
    elif wire == 3:
        while (inner := _varint(data, pos))[0] != (tag & ~7 | 4):
            pos = _skip(data, inner[1], inner[0])
        end = inner[1]
    else:
        raise ValueError(f"unexpected wire type {wire}")
    if end > len(data):
        raise ValueError("a field runs past the request")
    return end
