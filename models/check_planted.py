"""Quick checks of the released planted models (numpy + onnxruntime only, ~10 s).

    python models/check_planted.py

1. Every variant in models/planted/ gives the same scores as planted.onnx on heldout.npz
   (fixed-batch variants looped one image at a time; softmax variant vs softmax(logits)).
2. All 50 heldout images are classified correctly.
3. Occlusion sanity map: an 8x8 patch filled with the image's mean colour slid with stride 2;
   the per-pixel average drop of the true-class probability should peak inside the object box.
"""
import json
import os

import numpy as np
import onnxruntime as ort

D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "planted")


def session(stem):
    return ort.InferenceSession(os.path.join(D, stem + ".onnx"), providers=["CPUExecutionProvider"])


def run(stem, images_uint8):
    """Feed uint8 HWC images the way the sidecar says (looping if the batch is fixed)."""
    s = session(stem)
    side = json.load(open(os.path.join(D, stem + ".json")))
    inp = s.get_inputs()[0]
    x = images_uint8.astype(np.float32) / side["scale"]
    x = (x - np.array(side["mean"], np.float32)) / np.array(side["std"], np.float32)
    if side["layout"] == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    x = np.ascontiguousarray(x.astype(np.uint8) if inp.type == "tensor(uint8)" else x)
    if inp.shape[0] == 1:
        return np.concatenate([s.run(None, {inp.name: x[i:i + 1]})[0] for i in range(len(x))])
    return s.run(None, {inp.name: x})[0]


def main():
    d = np.load(os.path.join(D, "heldout.npz"))
    X, Y, B = d["images"], d["labels"], d["boxes"]
    ref = run("planted", X)
    print("heldout accuracy (planted.onnx):", float((ref.argmax(1) == Y).mean()))
    p = np.exp(ref - ref.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    for stem in ("planted_nhwc", "planted_fixed1", "planted_softmax", "planted_uint8", "planted_fixed1_reshape"):
        out = run(stem, X)
        diff = np.abs(out - (p if stem == "planted_softmax" else ref)).max()
        print(f"{stem}: max abs diff vs planted.onnx {diff:.2e}")
        assert diff < 1e-4, stem

    P, st, hits, mass = 8, 2, [], []
    for i in range(len(X)):
        batch, pos = [], []
        for y in range(0, 64 - P + 1, st):
            for x in range(0, 64 - P + 1, st):
                im = X[i].copy()
                im[y:y + P, x:x + P] = X[i].reshape(-1, 3).mean(0).astype(np.uint8)
                batch.append(im)
                pos.append((y, x))
        drop = p[i, Y[i]] - run("planted_softmax", np.stack(batch))[:, Y[i]]
        heat, cnt = np.zeros((64, 64)), np.zeros((64, 64))
        for (y, x), v in zip(pos, drop):
            heat[y:y + P, x:x + P] += v
            cnt[y:y + P, x:x + P] += 1
        heat /= np.maximum(cnt, 1)
        yy, xx = np.unravel_index(heat.argmax(), heat.shape)
        x0, y0, x1, y1 = B[i]
        hits.append(x0 <= xx < x1 and y0 <= yy < y1)
        hp = np.maximum(heat, 0)
        mass.append(hp[y0:y1, x0:x1].sum() / max(hp.sum(), 1e-12))
    print(f"occlusion map argmax inside the object box: {np.mean(hits):.2f} ({sum(hits)}/{len(hits)}); "
          f"mean share of positive mass inside the box: {np.mean(mass):.2f}")


if __name__ == "__main__":
    main()
