"""The sidecar: everything a vendor's pipeline does before the model, read from one JSON file.

Three vocabularies are understood, so the file a vendor already ships *is* a valid sidecar:

* **Hugging Face** image-processor keys, verbatim (``preprocessor_config.json``): ``do_resize``,
  ``size`` (``{height, width}``: squash; ``{shortest_edge}``: shorter side, then
  ``do_center_crop`` to ``crop_size``; ``{longest_edge}``: longer side, padded), ``resample``
  (Pillow codes), ``crop_pct`` (ConvNeXt: shorter side to ``int(shortest_edge / crop_pct)``,
  centre crop; a plain squash from 384 on), ``do_rescale``, ``rescale_factor``,
  ``do_normalize``, ``image_mean``, ``image_std`` (RGB), ``do_flip_channel_order`` (BGR).
  Resizing is on 8-bit pixels with Pillow and crops use Hugging Face's ``center_crop``
  offsets, as the PIL backend does.
* **timm** ``pretrained_cfg`` keys (top level or nested under ``pretrained_cfg``):
  ``input_size`` (C, H, W), ``interpolation``, ``crop_pct``, ``crop_mode`` (``center``,
  ``squash``, ``border``), ``mean``, ``std`` (RGB), as ``transforms_imagenet_eval`` builds them.
* **ours**: ``preprocess`` presets, ``mean``/``std``/``scale`` (``(v / scale - mean) / std``,
  mean and std in the order the model receives the channels: RGB, or BGR with ``"bgr": true``,
  as Caffe/OpenCV code writes its ``MEAN_BGR``), ``resize``, ``crop_pct``, ``resample``,
  ``uint8_resize``, ``pad_color``, ``jpeg_quality``, ``jpeg_at``, ``pad_anchor`` (``center`` or
  ``top-left``), ``resample`` also as OpenCV's ``cv2-nearest|cv2-linear|cv2-cubic|cv2-area``,
  ``detector`` (a detector's output layout, :data:`blackbox_cam.model.detections.SIDECAR_KEYS`),
  and ``bgr``, ``layout``, ``labels``, ``input_size`` [H, W], ``output``, which combine with
  either vocabulary.

An unknown key is refused with the nearest valid one ("did you mean"); a Hugging Face or timm
key whose step is not implemented is refused by name when it would do something, never ignored.
"""
from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BlackboxCamError
from .geometry import CENTRES, CV2_FILTERS, FILTERS, JPEG_AT, PAD_ANCHORS, RESIZE_MODES

LAYOUTS = ("NCHW", "NHWC")
PRESET_NAMES = ("imagenet", "unit", "symmetric", "raw")
#: Our own keys (any vocabulary may add the ones in OWN_ANYWHERE).
OWN_KEYS = {"preprocess", "mean", "std", "scale", "resize", "crop_pct"}
OWN_ANYWHERE = {"bgr", "layout", "labels", "input_size", "output", "resample", "uint8_resize", "pad_color",
                "jpeg_quality", "jpeg_at", "pad_anchor", "detector"}
HF_KEYS = {"do_resize", "size", "do_center_crop", "crop_size", "do_rescale", "rescale_factor", "do_normalize",
           "image_mean", "image_std", "do_convert_rgb", "do_flip_channel_order", "default_to_square"}
#: Hugging Face keys that only name things (no step).
HF_INFO = {"image_processor_type", "feature_extractor_type", "processor_class", "_processor_class", "auto_map",
           "data_format", "input_data_format", "return_tensors", "device", "disable_grouping"}
#: Hugging Face keys whose steps are not implemented: refused when set to anything but null/false/0.
HF_NOT_IMPLEMENTED = {
    "do_pad": "padding to pad_size / the batch's largest image", "pad_size": "padding to pad_size",
    "size_divisor": "rounding sizes to a multiple", "ensure_multiple_of": "rounding sizes to a multiple",
    "keep_aspect_ratio": "DPT's aspect-keeping resize", "do_thumbnail": "Donut's thumbnail",
    "do_align_long_axis": "Donut's rotation", "do_reduce_labels": "segmentation labels",
    "reduce_labels": "segmentation labels", "do_image_splitting": "splitting into tiles",
    "image_grid_pinpoints": "LLaVA's tiling", "do_split_into_patches": "patching",
    "max_image_tiles": "tiling", "crop_to_patches": "tiling", "min_pixels": "Qwen-VL's pixel budget",
    "max_pixels": "Qwen-VL's pixel budget", "patch_size": "patching", "merge_size": "patch merging",
    "temporal_patch_size": "video patching", "do_color_quantize": "ImageGPT's colour clusters",
    "clusters": "ImageGPT's colour clusters", "do_random_crop": "random crops (training only)"}
TIMM_KEYS = {"interpolation", "crop_mode"}
TIMM_INFO = {"url", "hf_hub_id", "hf_hub_filename", "tag", "custom_load", "num_classes", "pool_size",
             "first_conv", "classifier", "fixed_input_size", "test_input_size", "test_crop_pct", "origin_url",
             "paper_ids", "paper_name", "notes", "license", "architecture", "num_features", "global_pool",
             "model_args", "label_names", "label_descriptions", "min_input_size", "source", "pretrained_cfg"}
ALL_KEYS = OWN_KEYS | OWN_ANYWHERE | HF_KEYS | HF_INFO | set(HF_NOT_IMPLEMENTED) | TIMM_KEYS | TIMM_INFO
#: Hugging Face processors whose int ``size`` means a square (``default_to_square=True``) or a shorter side.
HF_SQUARE = ("ViT", "DeiT", "BeiT", "Beit", "Swin", "Data2Vec", "EfficientNet", "Segformer", "Dinov2WithRegisters")
HF_SHORTEST = ("ConvNext", "CLIP", "Bit", "MobileNet", "MobileViT", "PoolFormer", "LeViT", "Levit", "Dinov2",
               "Siglip", "EfficientFormer", "Perceiver")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # timm's defaults


@dataclass(frozen=True)
class Pipeline:
    """A sidecar resolved: normalisation values, the geometry, and the input size it implies."""

    scale: float | None = None                # None: the preset's
    mean: tuple[float, ...] | None = None     # in the order the model receives the channels
    std: tuple[float, ...] | None = None
    preset: str | None = None
    bgr: bool = False
    geometry: dict[str, Any] = field(default_factory=dict)   # Geometry(**geometry)
    input_size: tuple[int, int] | None = None  # the final (H, W) the vendor's steps produce
    vocabulary: str = "ours"


def sidecar_candidates(model_path: str | Path) -> list[Path]:
    """Where a sidecar is looked for, in order: ``<model>.json``, then ``preprocessor_config.json``."""
    p = Path(model_path)
    return [p.with_suffix(".json"), p.parent / "preprocessor_config.json"]


def find_sidecar(model_path: str | Path, given: str | Path | None = None) -> Path | None:
    """The sidecar file for ``model_path``: ``given`` (must exist), else the first candidate found."""
    if given is not None:
        g = Path(given)
        if not g.is_file():
            raise BlackboxCamError(f"--sidecar {g}: no such file")
        return g
    return next((c for c in sidecar_candidates(model_path) if c.is_file()), None)


def load_sidecar(path: Path | None) -> dict[str, Any]:
    """The JSON object in ``path`` (``{}`` for None), timm's nested ``pretrained_cfg`` flattened."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BlackboxCamError(f"{path}: sidecar is not valid JSON ({e}); fix or remove it") from None
    if not isinstance(data, dict):
        raise BlackboxCamError(f"{path}: a sidecar must be a JSON object (keys such as \"preprocess\", \"resize\", "
                               "or a Hugging Face preprocessor_config.json)")
    return flatten(data)


def flatten(data: dict[str, Any]) -> dict[str, Any]:
    """timm's hub ``config.json`` nests its ``pretrained_cfg``: its keys are read at the top level."""
    if isinstance(data.get("pretrained_cfg"), dict):
        nested = data["pretrained_cfg"]
        data = {**{k: v for k, v in data.items() if k != "pretrained_cfg"}, **nested}
    return data


# -- value checks ---------------------------------------------------------------------------------
def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _off(v: Any) -> bool:
    """A value that switches a step off (null, false, 0, empty)."""
    return v is None or v is False or v == 0 or v == [] or v == {}


def _vector(data: dict, key: str, probs: list[str], example: str, order: str) -> None:
    v = data[key]
    if not isinstance(v, list) or not v or not all(_num(x) for x in v):
        if _num(v) and key.startswith("image_"):  # HF allows one float for every channel
            return
        probs.append(f'"{key}" must be a list of numbers, e.g. {example}, got {json.dumps(v)}')
    elif len(v) not in (1, 3):
        probs.append(f'"{key}" has {len(v)} values; give 3 (one per channel, {order}) or 1 (every channel)')
    elif key in ("std", "image_std") and any(x <= 0 for x in v):
        probs.append(f'"{key}" must be positive (it divides the pixels), got {json.dumps(v)}')


def _size_dict(v: Any) -> bool:
    return isinstance(v, dict) and v and all(_int(x) and x > 0 for x in v.values())


def problems(data: dict[str, Any]) -> list[str]:
    """Every problem of a sidecar, one sentence each (unknown keys, types, lengths, ranges, mixes)."""
    data = flatten(data)
    probs = []
    for k in data:
        if k not in ALL_KEYS:
            near = difflib.get_close_matches(k, sorted(ALL_KEYS), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            probs.append(f"unknown sidecar key {k!r}{hint} (see the README's \"Reproduce your vendor's "
                         "preprocessing\" for the keys)")
    for k, what in HF_NOT_IMPLEMENTED.items():
        if k in data and not _off(data[k]):
            probs.append(f'"{k}": {json.dumps(data[k])} ({what}) is a Hugging Face step blackbox-cam does not '
                         "implement; a fixed-size classifier input needs none")
    order = 'in the order the model receives them: RGB, or BGR with "bgr": true'
    if "preprocess" in data and data["preprocess"] not in PRESET_NAMES:
        probs.append(f'"preprocess" must be one of {", ".join(PRESET_NAMES)}, got {data["preprocess"]!r}')
    for key in ("mean", "std"):
        if key in data:
            _vector(data, key, probs, "[0.485, 0.456, 0.406]", "RGB as timm defines them" if _is_timm(data) else order)
    for key in ("image_mean", "image_std"):
        if key in data and data[key] is not None:
            _vector(data, key, probs, "[0.5, 0.5, 0.5]", "RGB, as Hugging Face defines them")
    if "scale" in data and not (_num(data["scale"]) and data["scale"] > 0):
        probs.append(f'"scale" must be a positive number (255 for pixels in 0..255), got {json.dumps(data["scale"])}')
    for key in ("bgr", "uint8_resize", "do_resize", "do_center_crop", "do_rescale", "do_normalize",
                "do_convert_rgb", "do_flip_channel_order", "default_to_square"):
        if key in data and not isinstance(data[key], bool) and data[key] is not None:
            probs.append(f'"{key}" must be true or false (JSON booleans, no quotes), got {json.dumps(data[key])}')
    if "layout" in data and not (isinstance(data["layout"], str) and data["layout"].upper() in LAYOUTS):
        probs.append(f'"layout" must be "NCHW" or "NHWC", got {json.dumps(data["layout"])}')
    if "labels" in data and not (isinstance(data["labels"], str) and data["labels"].strip()):
        probs.append(f'"labels" must be a file name (relative to the model\'s folder), got {json.dumps(data["labels"])}')
    if "resize" in data and data["resize"] not in RESIZE_MODES:
        probs.append(f'"resize" must be one of {", ".join(RESIZE_MODES)}, got {json.dumps(data["resize"])}')
    if "crop_pct" in data and data["crop_pct"] is not None and not (_num(data["crop_pct"]) and 0 < data["crop_pct"] <= 1):
        probs.append(f'"crop_pct" must be a number in (0, 1], e.g. 0.875 (224 of 256), got {json.dumps(data["crop_pct"])}')
    if "input_size" in data:
        v = data["input_size"]
        ok = isinstance(v, list) and len(v) in (2, 3) and all(_int(x) for x in v)
        if not ok:
            probs.append(f'"input_size" must be [height, width] as two integers, e.g. [224, 224], got '
                         f'{json.dumps(v)} (timm\'s [channels, height, width] is read too)')
        elif min(v) <= 0:
            probs.append(f'"input_size" must be positive, got {json.dumps(v)}')
    if "output" in data:
        v = data["output"]
        if not ((isinstance(v, str) and v) or (_int(v) and v >= 0)):
            probs.append(f'"output" must be an output name or a non-negative index, got {json.dumps(v)}')
    if "resample" in data and not (data["resample"] in FILTERS or data["resample"] in CV2_FILTERS
                                   or (_int(data["resample"]) and data["resample"] in FILTERS.values())):
        probs.append('"resample" must be a Pillow filter code or name: '
                     + ", ".join(f"{v} ({k})" for k, v in FILTERS.items()) + ", or OpenCV's "
                     + ", ".join(CV2_FILTERS) + f"; got {json.dumps(data['resample'])}")
    if "pad_anchor" in data and data["pad_anchor"] not in PAD_ANCHORS:
        probs.append(f'"pad_anchor" must be one of {", ".join(PAD_ANCHORS)}, got {json.dumps(data["pad_anchor"])}')
    if "detector" in data and not isinstance(data["detector"], dict):
        probs.append(f'"detector" must be an object such as {{"kind": "yolov5"}}, got {json.dumps(data["detector"])}')
    if "interpolation" in data and data["interpolation"] not in FILTERS:
        probs.append(f'"interpolation" must be one of {", ".join(FILTERS)} (timm), got {json.dumps(data["interpolation"])}')
    if "crop_mode" in data and data["crop_mode"] not in ("center", "squash", "border", None):
        probs.append(f'"crop_mode" must be "center", "squash" or "border" (timm), got {json.dumps(data["crop_mode"])}')
    if "pad_color" in data:
        v = data["pad_color"]
        if not (isinstance(v, list) and len(v) in (1, 3) and all(_num(x) and 0 <= x <= 255 for x in v)):
            probs.append(f'"pad_color" must be [R, G, B] in 0..255 (e.g. [255, 255, 255] for white), got {json.dumps(v)}')
    if "jpeg_quality" in data and not (_int(data["jpeg_quality"]) and 1 <= data["jpeg_quality"] <= 100):
        probs.append(f'"jpeg_quality" must be an integer 1..100 (Pillow\'s default is 75), got {json.dumps(data["jpeg_quality"])}')
    if "jpeg_at" in data and data["jpeg_at"] not in JPEG_AT:
        probs.append(f'"jpeg_at" must be "crop" (after resize and crop) or "resize" (between them), got {json.dumps(data["jpeg_at"])}')
    if "rescale_factor" in data and not (_num(data["rescale_factor"]) and data["rescale_factor"] > 0):
        probs.append(f'"rescale_factor" must be a positive number (1/255 = 0.00392156862745098), got {json.dumps(data["rescale_factor"])}')
    for key in ("size", "crop_size"):
        if key in data and data[key] is not None and not (_size_dict(data[key]) or (_int(data[key]) and data[key] > 0)):
            probs.append(f'"{key}" must be {{"height": H, "width": W}}, {{"shortest_edge": S}} or '
                         f'{{"longest_edge": L}} (Hugging Face), got {json.dumps(data[key])}')
    probs += _mixes(data)
    return probs


def _is_hf(data: dict) -> bool:
    return any(k in data for k in HF_KEYS | HF_INFO)


def _is_timm(data: dict) -> bool:
    v = data.get("input_size")
    return any(k in data for k in TIMM_KEYS) or (isinstance(v, list) and len(v) == 3)


def _mixes(data: dict) -> list[str]:
    hf, timm = _is_hf(data), _is_timm(data)
    if hf and timm:
        return ["mixes Hugging Face keys (" + ", ".join(sorted(k for k in data if k in HF_KEYS | HF_INFO))
                + ") with timm keys (" + ", ".join(sorted(k for k in data if k in TIMM_KEYS or k == "input_size"))
                + "); keep one vocabulary"]
    if hf:
        own = sorted(k for k in data if k in OWN_KEYS - {"crop_pct"})
        if own:
            return [f"mixes Hugging Face keys with our {', '.join(own)}; in a Hugging Face file write "
                    "image_mean/image_std/rescale_factor/size instead"]
    if timm:
        own = sorted(k for k in data if k in {"preprocess", "scale", "resize"})
        if own:
            return [f"mixes timm keys with our {', '.join(own)}; in a timm config write crop_mode/mean/std instead"]
        if data.get("bgr"):
            return ['"bgr": true with timm\'s "mean"/"std" (RGB by timm\'s definition) is ambiguous; write '
                    'our "mean"/"std" in BGR order with "resize" instead of the timm keys']
    return []


def validate(data: dict[str, Any], source: str = "sidecar") -> dict[str, Any]:
    """``data`` if every key and value is valid; otherwise one error listing every problem, one per line."""
    probs = problems(data)
    if len(probs) == 1:
        raise BlackboxCamError(f"{source}: {probs[0]}")
    if probs:
        raise BlackboxCamError(f"{source}: {len(probs)} problems:\n" + "\n".join(f"  - {q}" for q in probs))
    return data


# -- translation ----------------------------------------------------------------------------------
def _filter(v: Any) -> int | str:
    if v in CV2_FILTERS:
        return v
    return FILTERS[v] if isinstance(v, str) else int(v)


def _triple(v: Any) -> tuple[float, ...]:
    vals = (float(v),) if _num(v) else tuple(float(x) for x in v)
    return vals * 3 if len(vals) == 1 else vals


def _own(data: dict[str, Any], geo: dict[str, Any]) -> None:
    """The keys every vocabulary may add (geometry side)."""
    if "resample" in data:
        geo["resample"] = _filter(data["resample"])
    if "uint8_resize" in data:
        geo["uint8"] = bool(data["uint8_resize"])
    if "pad_color" in data:
        geo["pad_color"] = _triple(data["pad_color"])
    if "jpeg_quality" in data:
        geo["jpeg_quality"] = int(data["jpeg_quality"])
    if "jpeg_at" in data:
        geo["jpeg_at"] = data["jpeg_at"]
    if "pad_anchor" in data:
        geo["centre"] = PAD_ANCHORS[data["pad_anchor"]]


def translate(data: dict[str, Any], source: str = "sidecar") -> Pipeline:
    """A validated sidecar as a :class:`Pipeline` (normalisation, geometry, implied input size)."""
    data = flatten(data)
    validate(data, source)
    if _is_hf(data):
        pipe = _from_hf(data, source)
    elif _is_timm(data):
        pipe = _from_timm(data)
    else:
        pipe = _from_ours(data)
    _own(data, pipe.geometry)
    if isinstance(data.get("input_size"), list) and len(data["input_size"]) == 2:
        given = tuple(int(x) for x in data["input_size"])
        if pipe.input_size is not None and given != pipe.input_size:
            raise BlackboxCamError(f"{source}: \"input_size\" {list(given)} disagrees with the {list(pipe.input_size)} "
                                   "the resize/crop keys produce")
        pipe = _replace(pipe, input_size=given)
    return pipe


def _replace(p: Pipeline, **kw: Any) -> Pipeline:
    from dataclasses import replace
    return replace(p, **kw)


def _from_ours(data: dict[str, Any]) -> Pipeline:
    geo: dict[str, Any] = {"mode": data.get("resize", "squash")}
    if data.get("crop_pct") is not None:
        geo["crop_pct"] = float(data["crop_pct"])
    mean = _triple(data["mean"]) if "mean" in data else None
    std = _triple(data["std"]) if "std" in data else None
    return Pipeline(scale=float(data["scale"]) if "scale" in data else None, mean=mean, std=std, preset=data.get("preprocess"), bgr=bool(data.get("bgr", False)),
                    geometry=geo, vocabulary="ours")


def _from_timm(data: dict[str, Any]) -> Pipeline:
    """timm's ``transforms_imagenet_eval``: PIL resize on 8-bit images, torchvision centre offsets."""
    mean = _triple(data.get("mean") or IMAGENET_MEAN)
    std = _triple(data.get("std") or IMAGENET_STD)
    pct = float(data.get("crop_pct") or 0.875)
    mode = {"center": "crop", None: "crop", "squash": "squash", "border": "letterbox"}[data.get("crop_mode")]
    geo: dict[str, Any] = {"mode": mode, "crop_pct": pct, "resample": FILTERS[data.get("interpolation") or "bicubic"],
                           "uint8": True, "centre": "torchvision"}
    size = None
    if isinstance(data.get("input_size"), list) and len(data["input_size"]) == 3:
        size = (int(data["input_size"][1]), int(data["input_size"][2]))
        if mode == "crop" and size[0] == size[1]:
            geo["size"] = math.floor(size[0] / pct)  # torchvision Resize(int): shorter side
    if mode == "letterbox":
        geo["pad_color"] = tuple(float(round(255 * m)) for m in mean)
    return Pipeline(scale=255.0, mean=mean, std=std, geometry=geo, input_size=size, vocabulary="timm")


def _hf_size(data: dict[str, Any], key: str, source: str) -> dict[str, int]:
    v = data[key]
    if isinstance(v, dict):
        return {k: int(x) for k, x in v.items()}
    kind = str(data.get("image_processor_type") or data.get("feature_extractor_type") or "")
    square = data.get("default_to_square")
    if key == "crop_size" or square is True or (square is None and kind.startswith(HF_SQUARE)):
        return {"height": int(v), "width": int(v)}
    if square is False or kind.startswith(HF_SHORTEST):
        return {"shortest_edge": int(v)}
    raise BlackboxCamError(f'{source}: "{key}": {v} is a square for some Hugging Face processors and a shorter '
                           f'side for others; write {{"height": {v}, "width": {v}}} or {{"shortest_edge": {v}}}')


def _from_hf(data: dict[str, Any], source: str) -> Pipeline:
    """Hugging Face's PIL backend: resize (8-bit, Pillow), centre crop, rescale, normalise."""
    def need(key: str, why: str) -> Any:
        if data.get(key) is None:
            raise BlackboxCamError(f'{source}: "{key}" is missing; {why}')
        return data[key]

    if data.get("do_resize", True) is False:
        raise BlackboxCamError(f'{source}: "do_resize": false is not supported: images of any size must reach the '
                               "model's fixed input; give the resize the model was trained with")
    if data.get("do_convert_rgb") is False:
        pass  # images are read as RGB; a grey or RGBA file is converted as Pillow's convert("RGB") does
    size = _hf_size({"size": need("size", "Hugging Face's default depends on the processor class"), **data},
                    "size", source)
    resample = _filter(need("resample", "Hugging Face's default depends on the processor class (ViT 2 = "
                            "bilinear, ConvNeXt/CLIP 3 = bicubic); write it out"))
    geo: dict[str, Any] = {"resample": resample, "uint8": True, "centre": "hf"}
    crop = data.get("do_center_crop")
    if crop is None and data.get("crop_size") is not None:
        raise BlackboxCamError(f'{source}: "crop_size" is given but "do_center_crop" is not; write '
                               '"do_center_crop": true or false (the default depends on the processor class)')
    final: tuple[int, int] | None = None
    keys = set(size)
    pct = data.get("crop_pct")
    if keys == {"height", "width"}:
        if pct is not None:
            raise BlackboxCamError(f'{source}: "crop_pct" with size {{height, width}} (PoolFormer\'s rule) is not '
                                   "implemented; ConvNeXt's {shortest_edge} + crop_pct is")
        geo.update(mode="squash", size=(size["height"], size["width"]))
        final = (size["height"], size["width"])
    elif keys == {"shortest_edge"}:
        s = size["shortest_edge"]
        if pct is not None:  # ConvNeXt: shorter side to int(s / crop_pct), crop s x s; from 384 on a squash
            if s < 384:
                geo.update(mode="crop", size=int(s / float(pct)))
            else:
                geo.update(mode="squash", size=(s, s))
            final = (s, s)
        else:
            geo.update(mode="crop", size=s)
            if not crop:
                raise BlackboxCamError(f'{source}: size {{"shortest_edge": {s}}} without "do_center_crop": true gives '
                                       "every image a different shape; the model's input is fixed: add "
                                       f'"do_center_crop": true and "crop_size"')
    elif keys == {"longest_edge"}:
        geo.update(mode="letterbox", size=size["longest_edge"])
        final = (size["longest_edge"], size["longest_edge"])
    else:
        raise BlackboxCamError(f'{source}: size {json.dumps(data["size"])} is not implemented (images of different '
                               'shapes); give {"height", "width"}, {"shortest_edge"} or {"longest_edge"}')
    if crop:
        cs = _hf_size(data, "crop_size", source) if data.get("crop_size") is not None else None
        if cs is None or set(cs) != {"height", "width"}:
            raise BlackboxCamError(f'{source}: "do_center_crop": true needs "crop_size": {{"height": H, "width": W}}')
        c = (cs["height"], cs["width"])
        if final is not None and final != c and pct is not None:
            raise BlackboxCamError(f"{source}: ConvNeXt's crop_pct already crops to {list(final)}; a second centre "
                                   f"crop to {list(c)} is not implemented")
        final = c
    rescale = data.get("rescale_factor", 1 / 255) if data.get("do_rescale", True) else 1.0
    if data.get("do_normalize", True):
        mean = _triple(need("image_mean", "Hugging Face's default depends on the processor class"))
        std = _triple(need("image_std", "Hugging Face's default depends on the processor class"))
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    bgr = bool(data.get("bgr", False)) or bool(data.get("do_flip_channel_order", False))
    if bgr:  # image_mean/image_std are RGB; the model receives BGR
        mean, std = mean[::-1], std[::-1]
    return Pipeline(scale=1.0 / float(rescale), mean=mean, std=std, bgr=bgr, geometry=geo, input_size=final,
                    vocabulary="huggingface")


__all__ = ["CENTRES", "Pipeline", "find_sidecar", "load_sidecar", "problems", "sidecar_candidates", "translate",
           "validate"]
