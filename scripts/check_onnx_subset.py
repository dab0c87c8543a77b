#!/usr/bin/env python3
"""Checks NormKit's ONNX schema subset against the official ONNX schema.

Usage: check_onnx_subset.py DESCRIPTOR_SET

DESCRIPTOR_SET is `protoc --descriptor_set_out` of onnx-subset.proto. Every
message, field (number, type, repeated or not) and enum value in it must exist
with the same definition in the `onnx` package's onnx.proto; extra fields in
the official schema are fine (the subset leaves them out).

Needs: python3 -m pip install onnx
"""
import sys

import onnx
from google.protobuf import descriptor_pb2

REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED


def check(messages, prefix, pool):
    problems, count = [], 0
    for message in messages:
        name = prefix + message.name
        try:
            official = pool.FindMessageTypeByName(name)
        except KeyError:
            problems.append("%s: no such message in ONNX" % name)
            continue
        for field in message.field:
            count += 1
            reference = official.fields_by_name.get(field.name)
            if reference is None:
                problems.append("%s.%s: no such field in ONNX" % (name, field.name))
                continue
            repeated = reference.label == REPEATED if hasattr(reference, "label") else reference.is_repeated
            if (reference.number, reference.type, repeated) != (field.number, field.type, field.label == REPEATED):
                problems.append("%s.%s: subset has number %d type %d, ONNX has number %d type %d"
                                % (name, field.name, field.number, field.type, reference.number, reference.type))
        for enum in message.enum_type:
            values = official.enum_types_by_name[enum.name].values_by_name
            for value in enum.value:
                count += 1
                if value.name not in values or values[value.name].number != value.number:
                    problems.append("%s.%s.%s: differs from ONNX" % (name, enum.name, value.name))
        nested_problems, nested_count = check(message.nested_type, name + ".", pool)
        problems += nested_problems
        count += nested_count
    return problems, count


def main(path):
    descriptors = descriptor_pb2.FileDescriptorSet()
    with open(path, "rb") as f:
        descriptors.ParseFromString(f.read())
    (subset,) = descriptors.file
    problems, count = check(subset.message_type, subset.package + ".", onnx.ModelProto.DESCRIPTOR.file.pool)
    if problems:
        sys.exit("\n".join(problems))
    print("onnx-subset.proto: %d fields and enum values match onnx %s" % (count, onnx.__version__))


if __name__ == "__main__":
    main(*sys.argv[1:])
