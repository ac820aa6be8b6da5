"""The committed stubs in scaler/_gen are exactly what `make proto` generates from proto/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_current(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", "scripts/gen_proto.sh", str(tmp_path)],
        cwd=ROOT,
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
    )
    generated = sorted(p.name for p in tmp_path.iterdir())
    assert generated == [
        "externalscaler_pb2.py",
        "externalscaler_pb2.pyi",
        "externalscaler_pb2_grpc.py",
        "externalscaler_pb2_grpc.pyi",
    ]
    for name in generated:
        committed = (ROOT / "scaler" / "_gen" / name).read_text()
        assert (tmp_path / name).read_text() == committed, f"scaler/_gen/{name} is stale: run `make proto`"


def test_proto_declares_the_keda_contract() -> None:
    from scaler._gen import externalscaler_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["ExternalScaler"]
    assert pb.DESCRIPTOR.package == "externalscaler"
    assert {m.name: (m.input_type.name, m.output_type.name, m.server_streaming) for m in service.methods} == {
        "IsActive": ("ScaledObjectRef", "IsActiveResponse", False),
        "StreamIsActive": ("ScaledObjectRef", "IsActiveResponse", True),
        "GetMetricSpec": ("ScaledObjectRef", "GetMetricSpecResponse", False),
        "GetMetrics": ("GetMetricsRequest", "GetMetricsResponse", False),
        "StreamMetricSpec": ("ScaledObjectRef", "GetMetricSpecResponse", True),
    }
    fields = {
        msg: {f.name: (f.number, f.type) for f in pb.DESCRIPTOR.message_types_by_name[msg].fields}
        for msg in ("MetricSpec", "MetricValue", "GetMetricsRequest")
    }
    fd = FieldDescriptor
    assert fields["MetricSpec"] == {
        "metricName": (1, fd.TYPE_STRING),
        "targetSize": (2, fd.TYPE_INT64),
        "targetSizeFloat": (3, fd.TYPE_DOUBLE),
    }
    assert fields["MetricValue"] == {
        "metricName": (1, fd.TYPE_STRING),
        "metricValue": (2, fd.TYPE_INT64),
        "metricValueFloat": (3, fd.TYPE_DOUBLE),
    }
    ref = pb.DESCRIPTOR.message_types_by_name["GetMetricsRequest"].fields_by_name
    assert (ref["scaledObjectRef"].number, ref["metricName"].number) == (1, 2)
