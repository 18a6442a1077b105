# Copyright (c) 2020 PaddlePaddle Authors. All Rights Reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""PaddleOCR's text direction classifier preprocessing, as the vendor ships it (``preprocess_fn``).

``resize_norm_img`` below is ``TextClassifier.resize_norm_img`` of ``rapidocr_onnxruntime``
1.4.4 (``rapidocr_onnxruntime/ch_ppocr_cls/text_cls.py``, Apache-2.0, from PaddleOCR),
copied verbatim except that ``self.cls_image_shape`` is the module constant ``CLS_IMAGE_SHAPE``
(the wheel's ``config.yaml``: ``cls_image_shape: [3, 48, 192]``). The vendor reads images with
``cv2.imread`` (BGR); blackbox-cam passes RGB, so :func:`preprocess` flips the channels first:
that one line is the only addition. Fit the height to 48, the width ``ceil(48 * w / h)`` up to
192 (squashed beyond), bilinear (OpenCV), scale to [-1, 1], pad on the right with 0 after
normalising. Needs ``opencv-python-headless``.
"""
import math

import cv2
import numpy as np

CLS_IMAGE_SHAPE = [3, 48, 192]


def resize_norm_img(img: np.ndarray) -> np.ndarray:
    img_c, img_h, img_w = CLS_IMAGE_SHAPE
    h, w = img.shape[:2]
    ratio = w / float(h)
    if math.ceil(img_h * ratio) > img_w:
        resized_w = img_w
    else:
        resized_w = int(math.ceil(img_h * ratio))

    resized_image = cv2.resize(img, (resized_w, img_h))
    resized_image = resized_image.astype("float32")
    if img_c == 1:
        resized_image = resized_image / 255
        resized_image = resized_image[np.newaxis, :]
    else:
        resized_image = resized_image.transpose((2, 0, 1)) / 255

    resized_image -= 0.5
    resized_image /= 0.5
    padding_im = np.zeros((img_c, img_h, img_w), dtype=np.float32)
    padding_im[:, :, :resized_w] = resized_image
    return padding_im


def preprocess(image: np.ndarray) -> np.ndarray:
    """One H x W x 3 RGB image -> the model's [3, 48, 192] input, as the vendor makes it."""
    return resize_norm_img(np.ascontiguousarray(image[:, :, ::-1]))
