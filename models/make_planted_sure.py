"""Make ``planted_sure/planted_sure.onnx``: the planted CNN made to be *sure* (onnx only, no torch).

``planted/planted_softmax.onnx`` with its last layer's weights and bias multiplied by
:data:`SHARPEN` (a temperature of 1 / SHARPEN): the same argmax and the same decision regions,
but the Softmax output saturates (p of the top class at 1 - 1e-7 and beyond on most held-out
images, 1.0 in float32 on many), as sure vendor models are. The README's "Maps that still speak
when the model is sure" measures ``--score probability`` against ``--score log-odds`` on it with
the pointing game on ``planted/heldout.npz``. Run again with ``python models/make_planted_sure.py``.
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

HERE = Path(__file__).resolve().parent
SHARPEN = 12.0


def main() -> None:
    m = onnx.load(str(HERE / "planted" / "planted_softmax.onnx"))
    gemm = next(n for n in m.graph.node if n.op_type == "Gemm")
    for init in m.graph.initializer:
        if init.name in gemm.input[1:]:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(SHARPEN), init.name))
    m.doc_string = f"planted_softmax.onnx with the last Gemm scaled by {SHARPEN:g} (a sure model; models/make_planted_sure.py)"
    out = HERE / "planted_sure"
    out.mkdir(exist_ok=True)
    onnx.save(m, str(out / "planted_sure.onnx"))
    (out / "planted_sure.json").write_text((HERE / "planted" / "planted_softmax.json").read_text()
                                           .replace('"planted_labels.txt"', '"../planted/planted_labels.txt"'))
    import onnxruntime as ort
    d = np.load(HERE / "planted" / "heldout.npz")
    x = d["images"].astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    p = ort.InferenceSession(str(out / "planted_sure.onnx"), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    top = p.max(1)
    print(f"held-out accuracy {np.mean(p.argmax(1) == d['labels']):.2f}; top p median {np.median(top):.10f}, "
          f"share with p == 1.0 in float32 {np.mean(top == 1.0):.2f}, share with 1 - p < 1e-4 {np.mean(1 - top < 1e-4):.2f}")


if __name__ == "__main__":
    main()
