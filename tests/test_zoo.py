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


def test_model_whose_head_reads_no_map_has_no_default_and_names_the_candidates():
    """A ViT-like net's head reads the class token: `auto` is refused in one line that names
    the last feature maps, never silently explained at a patch embedding."""
    from blackbox_cam.errors import BlackboxCamError

    clf = Classifier(Path(__file__).parent / "data" / "gradients" / "vit_ts_dynamic.onnx")
    assert not any(info.is_default for info in gc.list_layers(clf))
    with pytest.raises(BlackboxCamError, match="no default layer; pick one with --layer, e.g. '/patch/Conv_output_0'"):
        gc.compute_cams(clf, np.zeros((1, 3, 32, 32), np.float32), [0], layer="auto")
