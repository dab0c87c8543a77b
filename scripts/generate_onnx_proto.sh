#!/usr/bin/env bash
# Regenerates Sources/NormKitONNX/Schema/onnx-subset.pb.swift from onnx-subset.proto.
#
# The generated Swift is committed: CI and users never build the protobuf plugin
# (its first build takes about ten minutes). Run this only after editing the .proto.
#
# Needs:
#   - protoc (Debian: apt-get install protobuf-compiler; 3.21 was used);
#   - protoc-gen-swift from apple/swift-protobuf at the version Package.swift
#     names, so the generated code matches the runtime:
#       git clone https://github.com/apple/swift-protobuf /tmp/swift-protobuf
#       cd /tmp/swift-protobuf && git checkout 1.39.0
#       swift build -c release --product protoc-gen-swift
#     Point PROTOC_GEN_SWIFT at the binary if it is elsewhere;
#   - python3 with the onnx package, to check the subset against the official schema.
set -euo pipefail
cd "$(dirname "$0")/.."

plugin="${PROTOC_GEN_SWIFT:-/tmp/swift-protobuf/.build/release/protoc-gen-swift}"
schema=Sources/NormKitONNX/Schema

# Internal visibility: the ONNX messages are an implementation detail of NormKitONNX.
protoc --plugin=protoc-gen-swift="$plugin" \
  --proto_path="$schema" \
  --swift_out="$schema" \
  --swift_opt=Visibility=Internal \
  onnx-subset.proto
echo "wrote $schema/onnx-subset.pb.swift"

# Every field number, type and enum value must be ONNX's own.
descriptors="$(mktemp)"
trap 'rm -f "$descriptors"' EXIT
protoc --proto_path="$schema" --descriptor_set_out="$descriptors" onnx-subset.proto
python3 scripts/check_onnx_subset.py "$descriptors"
