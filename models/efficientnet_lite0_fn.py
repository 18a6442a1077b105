"""The bundled EfficientNet-Lite0's pipeline written as a function (``--preprocess-fn``).

The same steps as ``efficientnet_lite0.json`` (squash to 224 x 224 with Pillow's bilinear filter
on float pixels, then ``(v - 127) / 128``), written as a vendor would in their own code; the
README's "The vendor's own function" section and ``tests/test_vendor_fn.py`` compare the two.
"""
import numpy as np
from PIL import Image


def preprocess(image: np.ndarray) -> np.ndarray:
    """H x W x 3 RGB (uint8, or float pixels) -> [3, 224, 224] float32."""
    img = np.asarray(image, np.float32)
    if img.shape[:2] != (224, 224):
        img = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(img[:, :, c]), mode="F")
                                   .resize((224, 224), Image.BILINEAR)) for c in range(3)], axis=2)
    return ((img - 127.0) / 128.0).transpose(2, 0, 1).astype(np.float32)
