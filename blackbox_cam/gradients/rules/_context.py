"""What a VJP rule sees: the forward node, its gradients, and a way to emit new nodes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients.rules._attrs import DEFAULTS


def _decoded(value: Any) -> Any:
    """ONNX stores string attributes as bytes; rules compare and re-emit them as ``str``."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    return value


@dataclass
class GraphFacts:
    """Read-only facts about the forward graph that rules may consult."""

    opset: int
    shapes: dict[str, tuple | None]  # static shape per tensor, None entries for dynamic dims
    dtypes: dict[str, int]  # onnx elem type per tensor
    constants: dict[str, np.ndarray]  # initializers and Constant outputs
    new_name: Callable[[str], str]  # unique-name generator for new tensors
    dims: dict[str, tuple] = field(default_factory=dict)  # int, symbol (str) or None per dim


@dataclass
class Grad:
    """The vocabulary of one rule application (``I``, ``O``, ``GO``, ``GI``) plus node emission.

    ``nodes`` and ``initializers`` collect what the rule emits; the forward graph is never
    mutated. ``grad_outputs[i]`` is the gradient of output *i* or None when no gradient flows
    into it (``GO(i)`` then emits zeros). ``needed[i]`` says whether input *i* needs a gradient.
    """

    node: onnx.NodeProto
    facts: GraphFacts
    grad_outputs: list[str | None]
    needed: list[bool]
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    _gi: dict[int, str] = field(default_factory=dict)

    # ---- vocabulary -------------------------------------------------------------------------
    def I(self, i: int) -> str:  # noqa: E743 - the established name
        """Name of forward input *i* ('' when the optional input is absent)."""
        return self.node.input[i] if i < len(self.node.input) else ""

    def O(self, i: int) -> str:  # noqa: E743
        """Name of forward output *i*."""
        return self.node.output[i] if i < len(self.node.output) else ""

    def GO(self, i: int) -> str:
        """Gradient of forward output *i* (zeros of its shape when no gradient flows in)."""
        name = self.grad_outputs[i] if i < len(self.grad_outputs) else None
        if name is None:
            name = self.op("Mul", self.O(i), self.scalar(0.0, self.O(i)))
            self.grad_outputs[i] = name
        return name

    def GI(self, i: int) -> str:
        """The name to give the gradient of forward input *i*."""
        if i not in self._gi:
            self._gi[i] = self.facts.new_name(f"grad/{self.I(i)}")
        return self._gi[i]

    def needs(self, i: int) -> bool:
        """Whether the gradient of forward input *i* is wanted."""
        return i < len(self.needed) and self.needed[i]

    @property
    def produced(self) -> dict[int, str]:
        """Input index -> gradient name for the gradients the rule produced."""
        return dict(self._gi)

    # ---- facts about tensors ----------------------------------------------------------------
    @property
    def opset(self) -> int:
        return self.facts.opset

    def attrs(self) -> dict[str, Any]:
        """Every attribute the forward node sets, decoded (strings as ``str``), e.g. to emit it again."""
        return {a.name: _decoded(helper.get_attribute_value(a)) for a in self.node.attribute}

    def attr(self, name: str) -> Any:
        """Attribute value of the forward node (strings as ``str``), or its default from ``_attrs.DEFAULTS``."""
        for a in self.node.attribute:
            if a.name == name:
                return _decoded(helper.get_attribute_value(a))
        defaults = DEFAULTS.get(self.node.op_type, {})
        if name not in defaults:
            raise KeyError(f"no default recorded for {self.node.op_type}.{name}")
        return defaults[name]

    def shape(self, name: str) -> tuple | None:
        """Static shape (None for dynamic dims), or None if the rank is unknown."""
        return self.facts.shapes.get(name)

    def dims(self, name: str) -> tuple | None:
        """Static dims with dynamic ones as their symbol (str) or None when anonymous."""
        return self.facts.dims.get(name, self.shape(name))

    def rank(self, name: str) -> int:
        shape = self.shape(name)
        if shape is None:
            raise BlackboxCamError(
                f"the rank of '{name}' (input of {self.node.op_type} node '{self.node.name}') is "
                "unknown after shape inference; gradients need it: re-export the model with "
                "static ranks")
        return len(shape)

    def dtype(self, name: str) -> int:
        return self.facts.dtypes.get(name, onnx.TensorProto.FLOAT)

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a constant input (initializer or Constant node), else None."""
        return self.facts.constants.get(name) if name else None

    # ---- emission ---------------------------------------------------------------------------
    def op(self, op_type: str, *inputs: str, out: str | None = None, n_out: int = 1,
           **attrs: Any) -> Any:
        """Emit one node; returns its output name (a list when ``n_out`` > 1)."""
        if n_out == 1:
            outputs = [out or self.facts.new_name(f"grad/{op_type}")]
        else:
            outputs = [self.facts.new_name(f"grad/{op_type}") for _ in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(
            op_type, list(inputs), outputs, name=self.facts.new_name(f"grad/{op_type}"), **attrs))
        return outputs[0] if n_out == 1 else outputs

    def const(self, value: Any, dtype: Any = None) -> str:
        """A new initializer holding ``value`` (numpy dtype ``dtype`` if given)."""
        arr = np.asarray(value, dtype=dtype)
        name = self.facts.new_name("grad/const")
        self.initializers.append(numpy_helper.from_array(arr, name))
        return name

    def ints(self, values: Any) -> str:
        """A 1-D int64 initializer (axes, shapes, pads)."""
        return self.const(np.asarray(values, dtype=np.int64).reshape(-1))

    def scalar(self, value: float, like: str) -> str:
        """A scalar initializer with the float dtype of tensor ``like``."""
        return self.const(value, helper.tensor_dtype_to_np_dtype(self.dtype(like)))
