"""Hugging Face reference: transformers' own PIL-backend image processors (v5) on the images,
random-weight ViT / ConvNeXt classifiers (torch) exported to ONNX, and their logits as expected
rows. Needs torch 2.13 (CPU), transformers 5.25, onnxscript; no torchvision (the PIL backend).

    DEVENV/bin/python bench/vendors/hf_scores.py IMAGES OUT

Writes OUT/{vit,convnext}/{model.onnx, preprocessor_config.json, expected.csv}.
"""
import csv, json, sys
from pathlib import Path
import torch
from PIL import Image
import transformers
from transformers import ViTConfig, ViTForImageClassification, ConvNextConfig, ConvNextForImageClassification
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil
from transformers.models.convnext.image_processing_pil_convnext import ConvNextImageProcessorPil

here = Path(sys.argv[2])
images = sorted(p for p in Path(sys.argv[1]).iterdir() if p.suffix in (".png", ".jpg"))
CONFIGS = {
    # as google/vit-base-patch16-224 ships it (size as a dict, as save_pretrained writes it today)
    "vit": {"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "ViTImageProcessor", "image_std": [0.5, 0.5, 0.5], "resample": 2,
            "rescale_factor": 0.00392156862745098, "size": {"height": 224, "width": 224}},
    # as facebook/convnext-tiny-224 ships it
    "convnext": {"crop_pct": 0.875, "do_normalize": True, "do_rescale": True, "do_resize": True,
                 "image_mean": [0.485, 0.456, 0.406], "image_processor_type": "ConvNextImageProcessor",
                 "image_std": [0.229, 0.224, 0.225], "resample": 3, "rescale_factor": 0.00392156862745098,
                 "size": {"shortest_edge": 224}},
}
PROC = {"vit": ViTImageProcessorPil, "convnext": ConvNextImageProcessorPil}


def model_for(name):
    torch.manual_seed(0)
    if name == "vit":
        m = ViTForImageClassification(ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                intermediate_size=128, image_size=224, patch_size=16, num_labels=5))
    else:
        m = ConvNextForImageClassification(ConvNextConfig(depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128],
                                                          num_labels=5))
    with torch.no_grad():  # random weights at HF's init are near-silent; make the head speak
        m.classifier.weight.normal_(0, 1.0)
    return m.eval()


for name, cfg in CONFIGS.items():
    d = here / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "preprocessor_config.json").write_text(json.dumps(cfg, indent=2))
    proc = PROC[name](**{k: v for k, v in cfg.items() if k != "image_processor_type"})
    model = model_for(name)
    rows = []
    for p in images:
        with Image.open(p) as im:
            pv = proc(im.convert("RGB"), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            logits = model(pixel_values=pv).logits[0].numpy()
        rows.append([p.name] + [repr(float(v)) for v in logits])
    with open(d / "expected.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image"] + [str(i) for i in range(5)])
        w.writerows(rows)
    torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(d / "model.onnx"), input_names=["pixel_values"],
                      output_names=["logits"], dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    print(name, "transformers", transformers.__version__, "rows", len(rows), "onnx", (d / "model.onnx").stat().st_size)
