#!/usr/bin/env python3
"""Runs ONNX models with ONNX Runtime for NormKit's export tests.

Usage: run_onnxruntime.py MODEL INPUT OUTPUT [MODEL INPUT OUTPUT ...]

For each triple: checks MODEL with the ONNX checker (full check: schema and
shape inference), feeds the tensor in INPUT to the graph's only input and
writes its only output to OUTPUT. Several models share one Python start-up,
which dominates the test's time.

Tensor files (both directions) are: rank as uint32, rank dimensions as int64,
then the float32 values row-major, all little-endian.

Needs: python3 -m pip install onnxruntime onnx numpy
"""
import struct
import sys

import numpy as np
import onnx
import onnxruntime


def read_tensor(path):
    with open(path, "rb") as f:
        data = f.read()
    (rank,) = struct.unpack_from("<I", data, 0)
    shape = struct.unpack_from("<%dq" % rank, data, 4)
    values = np.frombuffer(data, dtype="<f4", offset=4 + 8 * rank)
    return values.reshape(shape)


def write_tensor(path, array):
    array = np.ascontiguousarray(array, dtype="<f4")
    with open(path, "wb") as f:
        f.write(struct.pack("<I", array.ndim))
        f.write(struct.pack("<%dq" % array.ndim, *array.shape))
        f.write(array.tobytes())


def main(arguments):
    if len(arguments) == 0 or len(arguments) % 3 != 0:
        sys.exit(__doc__)
    for start in range(0, len(arguments), 3):
        model_path, input_path, output_path = arguments[start:start + 3]
        onnx.checker.check_model(onnx.load(model_path), full_check=True)
        session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        (graph_input,) = session.get_inputs()
        (output,) = session.run(None, {graph_input.name: read_tensor(input_path)})
        write_tensor(output_path, output)


if __name__ == "__main__":
    main(sys.argv[1:])
