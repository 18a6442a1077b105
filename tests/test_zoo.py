"""The conformance zoo: real architectures exported the ways vendors export them, explained at
the default layer and at three depths, each map equal to pytorch-grad-cam's within 1e-4.

``tests/data/zoo/make_zoo.py`` (dev-only, needs torch) builds ResNet, MobileNetV3, EfficientNet,
RegNet, DenseNet and ConvNeXt from timm, a torchvision-style VGG and a TensorFlow-habit vendor
graph (NHWC maps between Transposes and Casts, the global pooling a mean over axes 1, 2) with
random weights, exports each several ways (TorchScript opset 13/17, dynamo opset 18, channels_last,
NHWC input, float16 and uint8 input, fixed batch 1; the vendor graph at opset 9 and 17) and
stores pytorch-grad-cam's maps; these tests read only the stored files (no torch).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blackbox_cam.methods import gradcam as gc
from blackbox_cam.model.runtime import Classifier

ZOO = Path(__file__).parent / "data" / "zoo"
MANIFEST = json.loads((ZOO / "zoo.json").read_text())


def _batch(entry: dict, ref) -> np.ndarray:
    """The model-space batch of a zoo file: pixels for a uint8 input, else (u - 128) / 128."""
    return ref["u"].transpose(0, 3, 1, 2).astype(np.float32) if entry["input"] == "uint8" else ref["x"]


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_zoo_model_is_explained_like_pytorch_grad_cam_at_the_default_and_three_depths(name):
    entry = MANIFEST[name]
    ref = np.load(ZOO / f"{entry['family']}.npz")
    clf = Classifier(ZOO / entry["file"])
    layers = {info.name: info for info in gc.list_layers(clf)}
    default = [info for info in layers.values() if info.is_default]
    pooled = entry["layers"][0]
    assert len(default) == 1 and default[0].name in pooled["tensors"], (
        f"default {[d.name for d in default]}; the global pooling reads {pooled['tensors']}")
    for depth in entry["layers"]:
        assert layers[depth["tensors"][0]].layout == depth["layout"], depth["module"]
    tensors = list(dict.fromkeys([default[0].name] + [d["tensors"][0] for d in entry["layers"]]))
    maps = gc.layer_cams(clf, _batch(entry, ref), ref["targets"], method="gradcam", layers=tensors)
    want = {d["tensors"][0]: ref[f"cam/{d['module']}"] for d in entry["layers"]}
    want[default[0].name] = ref[f"cam/{pooled['module']}"]
    for tensor, cam in maps.items():
        err = float(np.abs(cam - want[tensor]).max())
        assert err < 1e-4, f"{name} at {tensor}: {err:.2e} off pytorch-grad-cam"


def test_vendor_graph_lists_its_channels_last_maps_and_hides_its_casts():
    """The open_nsfw pattern: NHWC maps between Casts and Transposes are listed as NHWC with
    their height x width; Cast and Transpose outputs only with --all."""
    from click.testing import CliRunner

    from blackbox_cam.cli import main

    path = str(ZOO / "vendor_opset17.onnx")
    out = CliRunner().invoke(main, ["layers", path])
    assert out.exit_code == 0, out.output
    rows = [line.split("\t") for line in out.output.splitlines() if "\t" in line]
    default = [r for r in rows if r[0].startswith("*")]
    assert len(default) == 1 and default[0][3:6] == ["NHWC", "8x8", "map"]
    assert not [r for r in rows if r[1] in ("Cast", "Transpose")]
    assert {r[3] for r in rows} == {"NCHW", "NHWC"}
    every = CliRunner().invoke(main, ["layers", path, "--all"])
    assert sum("\tCast\t" in line for line in every.output.splitlines()) >= 10


def test_model_whose_head_reads_no_map_has_no_default_and_names_the_candidates(tmp_path):
    """A head that reads one pixel of a map (no pooling, no flatten, no tokens): `auto` is
    refused in one line that names the last feature maps, never silently explained at some
    early map. (A ViT's class-token head has a default since issue 19: tests/test_tokens.py.)"""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from blackbox_cam.errors import BlackboxCamError

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    consts = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
              (("s", [0, 0]), ("e", [1, 1]), ("ax", [2, 3]), ("shape", [-1, 4]))]
    fc = numpy_helper.from_array(np.ones((4, 2), np.float32), "fc")
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Slice", ["r", "s", "e", "ax"], ["corner"]),
             helper.make_node("Reshape", ["corner", "shape"], ["v"]),
             helper.make_node("MatMul", ["v", "fc"], ["logits"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
                              [w, fc] + consts)
    path = tmp_path / "corner.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    clf = Classifier(path, preprocess="raw")
    assert not any(info.is_default for info in gc.list_layers(clf))
    with pytest.raises(BlackboxCamError, match="no default layer; pick one with --layer, e.g. 'c'"):
        gc.compute_cams(clf, np.zeros((1, 3, 8, 8), np.float32), [0], layer="auto")
