#!/usr/bin/env bash
# Regenerates scaler/_gen from proto/ with the pinned grpcio-tools / mypy-protobuf of the venv.
# The virtual include path maps proto/ onto scaler/_gen so the generated *_pb2_grpc.py imports
# its *_pb2 as `scaler._gen.externalscaler_pb2`.
set -euo pipefail
out="${1:-scaler/_gen}"
py="${PYTHON:-.venv/bin/python}"
export PATH="$(dirname "$py"):$PATH"
rm -f "$out"/*_pb2*.py "$out"/*_pb2*.pyi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m grpc_tools.protoc -Iscaler/_gen=proto \
  --python_out="$tmp" --grpc_python_out="$tmp" --mypy_out="$tmp" --mypy_grpc_out="$tmp" \
  scaler/_gen/externalscaler.proto
mkdir -p "$out"
cp "$tmp"/scaler/_gen/* "$out"/
