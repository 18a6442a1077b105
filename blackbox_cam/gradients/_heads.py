"""Where a detector's candidates come from: the levels of its head, read from the graph.

A one-stage detector (YOLOv3 to v11, YOLOX, SSD-like heads) predicts its candidates on several
feature maps at once, one grid per stride (Lin et al. 2017, feature pyramid networks: P3/8,
P4/16, P5/32). The export flattens every level's grid and concatenates them along the
candidate axis, so candidate ``a`` belongs to the level whose slice of that axis holds it. The
map a per-detection Grad-CAM explains at is that level's *neck map*: the tensor the head's
branches for the level (box, class, objectness) all start from, i.e. the Detect head's input
(Ultralytics ``Detect(P3, P4, P5)`` reads ``model.15``, ``model.18``, ``model.21`` in
``yolov8.yaml``); pytorch-grad-cam's YOLO tutorial hooks the same modules.

How it is found (:func:`detector_levels`), from the graph only:

1. The *anchor concat*: a Concat upstream of the output whose axis has the output's candidate
   count ``A`` (on whichever axis: YOLOX concatenates ``[B, 5 + C, h*w]`` pieces on axis 2, then
   transposes) and whose every input, followed upstream to the nearest 4-D map ``[N, K, h, w]``,
   holds a whole number of grids, ``n_i = k h w``. Every such Concat (Ultralytics has one for
   the boxes and one for the classes) gives the same split; their 4-D maps are the level's head
   outputs.
2. The *neck map* of level ``i``: the latest tensor that every path from the image to the
   level's head outputs runs through (their common dominator), among the maps with the level's
   ``h x w``. For a YOLOv8 head that is the C2f output both ``cv2`` and ``cv3`` read.

Nothing here knows a vendor's module names; the layout (which output, which axis holds the
candidates) comes from the detector's reader (:mod:`blackbox_cam.model.detections`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import onnx

from blackbox_cam.gradients._graph import image_inputs, upstream
from blackbox_cam.gradients._layers import LayerInfo

#: Ops a level's flattening passes through between its 4-D head map and the anchor concat.
_FLATTEN_PATH = {"Reshape", "Flatten", "Transpose", "Sigmoid", "Identity", "Cast", "Mul", "Add", "Sub", "Div",
                 "Exp", "Pow", "Split", "Slice", "Concat", "Unsqueeze", "Squeeze"}


@dataclass(frozen=True)
class DetectorLevel:
    """One level of a detector's head: which candidates it predicts and from which map.

    ``first``, ``count``: its candidates are ``first .. first + count - 1``; ``per_cell`` of them
    per grid cell (1 for anchor-free heads, 3 for YOLOv5's anchors); ``neck``: the tensor its
    branches start from (None when the graph has no single one); ``head_maps``: the level's 4-D
    head outputs that feed the anchor concat.
    """

    index: int
    h: int
    w: int
    stride: float
    first: int
    count: int
    neck: str | None
    head_maps: tuple[str, ...] = ()

    @property
    def per_cell(self) -> int:
        return self.count // (self.h * self.w)

    @property
    def name(self) -> str:
        """``P3/8`` for stride 8 (the pyramid level is log2 of the stride), else ``L0/12.5``."""
        s = self.stride
        if s > 0 and float(s).is_integer() and (int(s) & (int(s) - 1)) == 0:
            return f"P{int(math.log2(int(s)))}/{int(s)}"
        return f"L{self.index}/{s:g}"

    @property
    def last(self) -> int:
        return self.first + self.count - 1

    def holds(self, candidate: int) -> bool:
        return self.first <= candidate <= self.last

    def cell(self, candidate: int) -> tuple[int, int, int]:
        """``(row, col, anchor)`` of a candidate of this level: Ultralytics orders a level's
        candidates row-major over the grid; YOLOv5 anchor-major (``view(na, ny, nx)``)."""
        k = candidate - self.first
        anchor, rest = divmod(k, self.h * self.w) if self.per_cell > 1 else (0, k)
        row, col = divmod(rest, self.w)
        return row, col, anchor

    def describe(self) -> str:
        return (f"{self.name} {self.h}x{self.w}: candidates {self.first}-{self.last}"
                + (f" ({self.per_cell} a cell)" if self.per_cell > 1 else ""))


def _shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    out = {}
    for vi in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        t = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and t.HasField("shape"):
            out[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
    return out


def _constants(model: onnx.ModelProto) -> set[str]:
    names = {t.name for t in model.graph.initializer}
    names |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    return names


def _nearest_map(name: str, producer: dict, shapes: dict, constants: set[str], size: int) -> str | None:
    """The nearest 4-D tensor upstream of ``name`` (through :data:`_FLATTEN_PATH` ops only)
    whose ``h * w`` divides ``size``, or None."""
    seen, todo = {name}, [name]
    while todo:
        t = todo.pop(0)
        s = shapes.get(t)
        if s is not None and len(s) == 4 and all(isinstance(d, int) and d > 0 for d in s[2:]) \
                and size % (s[2] * s[3]) == 0 and t != name:
            return t
        node = producer.get(t)
        if node is None or node.op_type not in _FLATTEN_PATH:
            continue
        for i in node.input:
            if i and i not in constants and i not in seen:
                seen.add(i)
                todo.append(i)
    return None


def _anchor_concats(model: onnx.ModelProto, output: str, axis: int, count: int):
    """``[(node, [n_i], [map_i])]`` for every anchor concat upstream of ``output``."""
    graph = model.graph
    shapes, constants = _shapes(model), _constants(model)
    producer = {o: n for n in graph.node for o in n.output}
    up = upstream(graph, output)
    found = []
    for node in graph.node:
        if node.op_type != "Concat" or node.output[0] not in up or len(node.input) < 2:
            continue
        out = shapes.get(node.output[0])
        if not out:
            continue
        # the concat axis may differ from the output's candidate axis: YOLOX concatenates
        # [B, 5 + C, h*w] pieces on axis 2 and then transposes to [B, A, 5 + C]
        ax = next((a.i for a in node.attribute if a.name == "axis"), 0) % len(out)
        if out[ax] != count:
            continue
        sizes = [shapes.get(i, (None,) * len(out))[ax] for i in node.input]
        if not all(isinstance(n, int) and n > 0 for n in sizes) or sum(sizes) != count:
            continue
        maps = [_nearest_map(i, producer, shapes, constants, n) for i, n in zip(node.input, sizes)]
        if all(maps):
            found.append((node, sizes, maps))
    return found


def _reachable_without(graph: onnx.GraphProto, sources: Sequence[str], blocked: str, targets: set[str],
                       constants: set[str]) -> bool:
    """Whether any of ``targets`` depends on ``sources`` by a path that avoids ``blocked``."""
    reached = set(sources) - {blocked}
    for node in graph.node:
        if any(i in reached for i in node.input if i and i not in constants):
            reached.update(o for o in node.output if o and o != blocked)
    return bool(reached & targets)


def _dominator(model: onnx.ModelProto, targets: Sequence[str], hw: tuple[int, int],
               maps: Sequence[LayerInfo]) -> str | None:
    """The latest map of size ``hw`` every path from the image to ``targets`` runs through."""
    graph = model.graph
    constants = _constants(model)
    ups = [upstream(graph, t) for t in targets]
    sources = image_inputs(graph)
    order = {o: k for k, n in enumerate(graph.node) for o in n.output}
    cands = [l for l in maps if l.hw == hw and l.name not in targets and all(l.name in u for u in ups)]
    for l in sorted(cands, key=lambda l: -order.get(l.name, -1)):
        if not _reachable_without(graph, sources, l.name, set(targets), constants):
            return l.name
    return None


def detector_levels(model: onnx.ModelProto, output: str, axis: int, input_size: Sequence[int],
                    layers: Sequence[LayerInfo]) -> tuple[DetectorLevel, ...]:
    """The levels of a detector's head, in candidate order (see the module docstring); ``()``
    when the graph shows none (a DETR's queries, an export whose candidates come from one map).

    Parameters
    ----------
    model : a prepared model (:func:`~blackbox_cam.gradients.prepare_model`: shapes inferred).
    output : the output holding the candidates; ``axis`` its candidate axis (Ultralytics
        ``[B, 4+C, A]``: 2; YOLOv5 ``[B, A, 5+C]``: 1).
    input_size : the model input's ``(H, W)``: a level's stride is ``H / h``.
    layers : the model's :func:`~blackbox_cam.gradients.candidate_layers`.
    """
    shapes = _shapes(model)
    out = shapes.get(output)
    if not out or not isinstance(out[axis], int):
        return ()
    count = out[axis]
    concats = _anchor_concats(model, output, axis, count)
    if not concats:
        return ()
    sizes = concats[-1][1]
    same = [c for c in concats if c[1] == sizes]
    maps = [l for l in layers if l.role == "map" and not l.plumbing and l.layout == "NCHW"]
    levels, first = [], 0
    for i, n in enumerate(sizes):
        heads = tuple(dict.fromkeys(c[2][i] for c in same))
        s = shapes[heads[0]]
        hw = (int(s[2]), int(s[3]))
        neck = _dominator(model, heads, hw, maps)
        levels.append(DetectorLevel(i, hw[0], hw[1], float(input_size[0]) / hw[0], first, n, neck, heads))
        first += n
    return tuple(levels)


def level_of(levels: Sequence[DetectorLevel], candidate: int) -> DetectorLevel | None:
    """The level that predicts ``candidate``, or None."""
    return next((l for l in levels if l.holds(int(candidate))), None)
