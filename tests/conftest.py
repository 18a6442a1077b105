"""Shared fixtures: the bundled models and small ONNX graphs built on the fly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
PLANTED = MODELS / "planted"
EFFNET = MODELS / "efficientnet_lite0.onnx"
IMAGES = MODELS / "images"


def save_model(graph: onnx.GraphProto, path: Path, opset: int = 17) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def linear_classifier(path: Path, *, inputs: int = 1, input_shape=("N", 3, 8, 8), elem=TensorProto.FLOAT,
                      classes: int = 4, softmax: bool = False, extra_output: bool = False) -> Path:
    """GlobalAveragePool -> Flatten -> Gemm: a real (if tiny) classifier on 3-channel images."""
    rng = np.random.default_rng(0)
    xs = [helper.make_tensor_value_info(f"x{i}", elem, list(input_shape)) for i in range(inputs)]
    nodes = [helper.make_node("GlobalAveragePool", ["x0"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["logits" if not softmax else "z"], transB=1)]
    if inputs > 1:
        nodes.insert(0, helper.make_node("Add", ["x0", "x1"], ["s"]))
        nodes[1].input[0] = "s"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["z"], ["logits"], axis=1))
    inits = [helper.make_tensor("W", TensorProto.FLOAT, [classes, 3], rng.normal(size=(classes, 3)).ravel()),
             helper.make_tensor("b", TensorProto.FLOAT, [classes], np.zeros(classes))]
    outs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])]
    if extra_output:
        outs.insert(0, helper.make_tensor_value_info("f", TensorProto.FLOAT, ["N", 3]))
    return save_model(helper.make_graph(nodes, "linear", xs, outs, inits), path)


def require(path: Path) -> Path:
    """A bundled file; its absence is a failure (they ship in the repo), not a skip."""
    if not path.exists():
        pytest.fail(f"{path} is missing: it ships with the repo (re-create it with the script in models/)")
    return path


@pytest.fixture(scope="session")
def planted_path() -> Path:
    return require(PLANTED / "planted.onnx")


@pytest.fixture(scope="session")
def heldout():
    data = np.load(require(PLANTED / "heldout.npz"))
    return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def planted(planted_path):
    from blackbox_cam import Classifier
    return Classifier(planted_path, device="cpu")
