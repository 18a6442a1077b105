"""A workaround for an OpenVINO CPU bug: one weight read both plainly and transposed by MatMuls.

Found on a gradient graph (issue 19): when one constant ``W`` feeds ``MatMul(x, W)`` and also
``MatMul(g, Transpose(W))`` (or ``Gemm(g, W, transB=1)``), OpenVINO 2026.4's CPU plugin computes
the second product with the wrong orientation of ``W`` (errors of the size of the values; ONNX
Runtime is exact). Every Linear layer of a transformer does this in its gradient graph (the
backward pass multiplies by ``W^T``), so Grad-CAM on OpenVINO was silently wrong there. Giving
each such consumer its own copy of the constant avoids it (``tests/test_tokens.py`` holds the
four-node reproduction). The copies cost the memory of the weights read both ways.
"""
from __future__ import annotations


def unshare_transposed_weights(payload: bytes) -> bytes:
    """``payload`` with a private copy of every initializer that a MatMul/Gemm reads and another
    node reads too (only when there is one; otherwise the bytes are returned as they are)."""
    import onnx

    model = onnx.load_from_string(payload)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    users: dict[str, list] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in inits:
                users.setdefault(name, []).append((node, i))
    changed = False
    for name, uses in users.items():
        if len(uses) < 2 or not any(n.op_type in ("MatMul", "Gemm") for n, _ in uses):
            continue
        for k, (node, i) in enumerate(uses[1:], 1):
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[name])
            copy.name = f"{name}__ov_copy{k}"
            graph.initializer.append(copy)
            node.input[i] = copy.name
            changed = True
    return model.SerializeToString() if changed else payload
