"""ONNX Runtime (``--library onnxruntime``): one ONNX operator per implementation, run through a
minimal graph built in memory with ``onnx.helper`` (one node, opset 18, IR version 9) on the CPU
execution provider with the session's default options (graph optimisations on, as deployed)
and one thread. ONNX Runtime has CPU kernels for float16, float32 and float64; bfloat16 is
left out of audits with a note (its CPU provider has no bfloat16 kernel for these operators).
"""

from __future__ import annotations

import numpy as np

from . import Adapter

OPSET = 18
IR_VERSION = 9
DTYPES = ("float16", "float32", "float64")


def load(device: str) -> dict:
    import onnx
    import onnxruntime  # noqa: F401 - ImportError when missing

    from . import version

    return {"onnx": onnx.__version__ if hasattr(onnx, "__version__") else version("onnx"),
            "opset": OPSET, "execution_provider": "CPUExecutionProvider"}


def model(op: str, dtype, attrs=None, labels: bool = False, axes: bool = False) -> bytes:
    """A one-node ONNX model: x (batch, n) of ``dtype`` [, labels (batch,) int64] -> y."""
    from onnx import TensorProto, helper

    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inputs = [helper.make_tensor_value_info("x", et, ["batch", "n"])]
    names = ["x"]
    init = []
    if labels:
        inputs.append(helper.make_tensor_value_info("labels", TensorProto.INT64, ["batch"]))
        names.append("labels")
    if axes:
        init.append(helper.make_tensor("axes", TensorProto.INT64, [1], [-1]))
        names.append("axes")
    node = helper.make_node(op, names, ["y"], **(attrs or {}))
    graph = helper.make_graph([node], f"numstab_{op}", inputs, [helper.make_tensor_value_info("y", et, None)],
                              initializer=init)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="numstab")
    m.ir_version = IR_VERSION
    return m.SerializeToString()


def run(op: str, x: np.ndarray, attrs=None, labels=None, axes: bool = False) -> np.ndarray:
    """Build the model for x's dtype, open a CPU session and run it once."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(model(op, x.dtype, attrs, labels is not None, axes), so,
                                providers=["CPUExecutionProvider"])
    feeds = {"x": np.ascontiguousarray(x)}
    if labels is not None:
        feeds["labels"] = np.asarray(labels, dtype=np.int64)
    return np.asarray(sess.run(["y"], feeds)[0])


def adapters(function: str, device: str) -> list[Adapter]:
    def softmax(x):
        return run("Softmax", x, {"axis": -1})

    def log_softmax(x):
        return run("LogSoftmax", x, {"axis": -1})

    def logsumexp(x):
        return run("ReduceLogSumExp", x, {"keepdims": 0}, axes=True)

    def cross_entropy(x, target):
        return run("SoftmaxCrossEntropyLoss", x, {"reduction": "none"}, labels=target)

    def sigmoid(x):
        return run("Sigmoid", x)

    def softplus(x):
        return run("Softplus", x)

    table = {
        "sigmoid": [Adapter("onnxruntime:Sigmoid", "Sigmoid(x)", sigmoid, DTYPES)],
        "softplus": [Adapter("onnxruntime:Softplus", "Softplus(x)", softplus, DTYPES)],
        "softmax": [Adapter("onnxruntime:Softmax", "Softmax(axis=-1)", softmax, DTYPES)],
        "log_softmax": [Adapter("onnxruntime:LogSoftmax", "LogSoftmax(axis=-1)", log_softmax, DTYPES)],
        "logsumexp": [Adapter("onnxruntime:ReduceLogSumExp", "ReduceLogSumExp(x, axes=[-1], keepdims=0)",
                              logsumexp, DTYPES)],
        "cross_entropy": [Adapter("onnxruntime:SoftmaxCrossEntropyLoss",
                                  "SoftmaxCrossEntropyLoss(x, target, reduction='none')", cross_entropy,
                                  DTYPES)],
    }
    return table.get(function, [])
