#!/bin/bash
# verify on the vendors' own scores, then with one key wrong at a time (README's tables).
#   bench/vendors/run_verify.sh IMAGES OUT      (OUT as written by vendor_scores.py and hf_scores.py)
set -u
IMAGES=$1; OUT=$2; HERE=$(cd "$(dirname "$0")" && pwd)
check() {  # model-file sidecar-json expected-csv label [python edit of the sidecar dict d]
  local model=$1 side=$2 exp=$3 label=$4 edit=${5:-}
  local d=$OUT/runs/$label; mkdir -p "$d"; cp "$model" "$d/$(basename "$model")"
  local name=$(basename "$side"); [ "$name" = preprocessor_config.json ] || name=$(basename "${model%.onnx}").json
  python -c "import json; d=json.load(open('$side')); ${edit:-pass}; json.dump(d, open('$d/$name', 'w'))"
  echo "== $label ${edit:+(wrong: $edit)}"
  blackbox-cam verify "$d/$(basename "$model")" --expect "$exp" --images "$IMAGES" --table "$d/table.csv" --device cpu 2>/dev/null
  echo "exit $?"
}
S=$HERE/sidecars
check $OUT/opennsfw.onnx $S/opennsfw.json $OUT/expected_opennsfw.csv opennsfw
check $OUT/yahoo_nsfw.onnx $S/yahoo_nsfw.json $OUT/expected_yahoo_nsfw.csv yahoo_nsfw
check $OUT/orinet.onnx $S/orinet.json $OUT/expected_orinet.csv orinet
check $OUT/vit/model.onnx $OUT/vit/preprocessor_config.json $OUT/vit/expected.csv vit
check $OUT/convnext/model.onnx $OUT/convnext/preprocessor_config.json $OUT/convnext/expected.csv convnext
check $OUT/opennsfw.onnx $S/opennsfw.json $OUT/expected_opennsfw.csv nsfw_no_jpeg "d.pop('jpeg_quality')"
check $OUT/opennsfw.onnx $S/opennsfw.json $OUT/expected_opennsfw.csv nsfw_rgb "d['bgr']=False"
check $OUT/opennsfw.onnx $S/opennsfw.json $OUT/expected_opennsfw.csv nsfw_mean_rgb "d['mean']=[123,117,104]"
check $OUT/opennsfw.onnx $S/opennsfw.json $OUT/expected_opennsfw.csv nsfw_crop "d['resize']='crop'"
check $OUT/opennsfw.onnx $S/opennsfw.json $OUT/expected_opennsfw.csv nsfw_pct1 "d['crop_pct']=1.0"
check $OUT/opennsfw.onnx $S/opennsfw.json $OUT/expected_opennsfw.csv nsfw_float "d['uint8_resize']=False"
check $OUT/opennsfw.onnx $S/opennsfw.json $OUT/expected_opennsfw.csv nsfw_old_closest "d.pop('jpeg_quality'); d.pop('uint8_resize'); d.pop('resample'); d['resize']='crop'"
check $OUT/yahoo_nsfw.onnx $S/yahoo_nsfw.json $OUT/expected_yahoo_nsfw.csv yahoo_jpeg_after_crop "d.pop('jpeg_at')"
check $OUT/orinet.onnx $S/orinet.json $OUT/expected_orinet.csv orinet_mean_pad "d.pop('pad_color')"
check $OUT/orinet.onnx $S/orinet.json $OUT/expected_orinet.csv orinet_squash "d['resize']='squash'"
check $OUT/orinet.onnx $S/orinet.json $OUT/expected_orinet.csv orinet_float "d['uint8_resize']=False"
check $OUT/orinet.onnx $S/orinet.json $OUT/expected_orinet.csv orinet_unit "d['preprocess']='unit'"
check $OUT/vit/model.onnx $OUT/vit/preprocessor_config.json $OUT/vit/expected.csv vit_bicubic "d['resample']=3"
check $OUT/vit/model.onnx $OUT/vit/preprocessor_config.json $OUT/vit/expected.csv vit_imagenet_mean "d['image_mean']=[0.485,0.456,0.406]; d['image_std']=[0.229,0.224,0.225]"
check $OUT/convnext/model.onnx $OUT/convnext/preprocessor_config.json $OUT/convnext/expected.csv convnext_no_crop_pct "d.pop('crop_pct'); d['do_center_crop']=True; d['crop_size']={'height':224,'width':224}"
check $OUT/convnext/model.onnx $OUT/convnext/preprocessor_config.json $OUT/convnext/expected.csv convnext_bgr "d['do_flip_channel_order']=True"
