"""Bytes the protobuf and gzip libraries will not produce on request: protobuf wire builders for
invalid UTF-8 in string fields and nesting past the decoder's depth limit, and gzip bombs."""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Sequence


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings, bytes, embedded messages."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def fixed64(number: int, raw: bytes) -> bytes:
    """A 64-bit field (wire type 1): fixed64 timestamps, doubles."""
    assert len(raw) == 8
    return varint(number << 3 | 1) + raw


def wire_key_value(key: bytes, value: bytes) -> bytes:
    """``KeyValue{key: 1, value: AnyValue{string_value: 1}}`` with the strings as given."""
    return field(1, key) + field(2, field(1, value))


def wire_gauge_request(
    name: bytes,
    attributes: Sequence[tuple[bytes, bytes]],
    resource_attributes: Sequence[tuple[bytes, bytes]],
    t_ns: int,
    value: float,
) -> bytes:
    """An ExportMetricsServiceRequest with one gauge point, written field by field so that its
    strings can hold bytes the protobuf library would refuse to serialize."""
    point = b"".join(field(7, wire_key_value(k, v)) for k, v in attributes)  # NumberDataPoint.attributes
    point += fixed64(3, struct.pack("<Q", t_ns))  # time_unix_nano
    point += fixed64(4, struct.pack("<d", value))  # as_double
    metric = field(1, name) + field(5, field(1, point))  # Metric.name, Metric.gauge{data_points}
    resource = b"".join(field(1, wire_key_value(k, v)) for k, v in resource_attributes)  # Resource.attributes
    scope_metrics = field(2, metric)  # ScopeMetrics.metrics
    resource_metrics = field(1, resource) + field(2, scope_metrics)  # ResourceMetrics.resource, scope_metrics
    return field(1, resource_metrics)  # ExportMetricsServiceRequest.resource_metrics


def wire_nested_attribute_request(depth: int, kind: str, t_ns: int) -> bytes:
    """A gauge point whose one attribute is an AnyValue nested ``depth`` levels deep through
    ``array_value`` (field 5) or ``kvlist_value`` (field 6)."""
    value = field(1, b"leaf")  # AnyValue.string_value
    for _ in range(depth):
        # AnyValue.array_value{values}, or AnyValue.kvlist_value{values{key, value}}
        value = field(5, field(1, value)) if kind == "array" else field(6, field(1, field(1, b"k") + field(2, value)))
    point = field(7, field(1, b"deep") + field(2, value))
    point += fixed64(3, struct.pack("<Q", t_ns)) + fixed64(4, struct.pack("<d", 1.0))
    metric = field(1, b"hostile_deep_protobuf") + field(5, field(1, point))
    return field(1, field(2, field(2, metric)))


# ---------------------------------------------------------------------------------- gzip


@functools.cache
def gzip_bomb(inflated_mib: int) -> bytes:
    """One gzip member that inflates to ``inflated_mib`` MiB of zeros, with a valid trailer.

    Compressing a GiB takes seconds; instead one MiB is compressed and full-flushed (which resets
    the compressor, so every further MiB compresses to the same bytes) and that block repeated.
    """
    zeros = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush()  # an empty final block, then the trailer of the 2 MiB compressed so far
    crc = 0
    for _ in range(inflated_mib):
        crc = zlib.crc32(zeros, crc)
    trailer = struct.pack("<II", crc, (inflated_mib << 20) & 0xFFFFFFFF)
    return first + block * (inflated_mib - 1) + end[:-8] + trailer


@functools.cache
def gzip_multi_member_bomb(members: int) -> bytes:
    """``members`` concatenated gzip members of 1 MiB of zeros each (a multi-member gzip body,
    which gzip(1) and Go's reader inflate whole)."""
    return zlib.compress(bytes(1 << 20), 9, wbits=16 + zlib.MAX_WBITS) * members
