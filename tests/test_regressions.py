"""Regression tests for defects of issue 8, each named for what it guards."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_masks_baseline_defaults_to_zeros_like_every_method():
    """Regression: ``masks.baseline`` defaulted to blur while every caller used zeros."""
    from blackbox_cam.methods.masks import baseline
    x = np.random.default_rng(0).normal(size=(3, 16, 16)).astype(np.float32)
    assert not baseline(x).any()


def test_decam_plan_needs_only_the_budget():
    """Regression: ``decam.plan`` took ``dims`` and never used it."""
    from blackbox_cam.methods.decam import plan
    assert plan(2000) == plan(2000, None)
    assert plan(200, 10) == (10, 10)


def test_preprocessing_has_no_unused_inverse():
    """Regression: ``Preprocessing.invert`` was dead code (nothing draws from model space)."""
    from blackbox_cam.model.preprocess import Preprocessing
    assert not hasattr(Preprocessing, "invert")


def test_a_broken_whitebox_module_breaks_the_import_instead_of_hiding_methods():
    """Regression: ``methods/__init__.py`` imported gradcam "optionally": a broken ``cams`` module
    silently removed the white-box methods."""
    code = "import sys; sys.modules['blackbox_cam.methods.cams'] = None; import blackbox_cam.methods"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert r.returncode != 0 and "blackbox_cam.methods.cams" in r.stderr


def test_no_optional_imports_of_the_packages_own_modules():
    """Regression: ``try: import ... except ImportError`` around our own modules (cli.py,
    methods/__init__.py) and ``importorskip`` of them in tests turned a broken package into
    missing commands or skips."""
    offenders = []
    for path in list((ROOT / "blackbox_cam").rglob("*.py")) + list((ROOT / "tests").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                    isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                    for h in node.handlers):
                own = [n for n in ast.walk(ast.Module(node.body, [])) if isinstance(n, ast.ImportFrom)
                       and (n.level > 0 or (n.module or "").startswith("blackbox_cam"))]
                if own:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "importorskip" and node.args
                    and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("blackbox_cam")):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_one_input_concat_rule_emits_only_the_identity():
    """Regression: the Concat rule emitted Shape/Gather nodes (for a Concat it never built)
    when the Concat had one input."""
    from onnx import TensorProto, helper

    from blackbox_cam.gradients._graph import NameMaker
    from blackbox_cam.gradients.rules import RULES, Grad, GraphFacts
    facts = GraphFacts(opset=17, shapes={"x": (1, 3), "y": (1, 3)}, dtypes={"x": TensorProto.FLOAT},
                       constants={}, new_name=NameMaker({"x", "y", "gy"}))
    g = Grad(helper.make_node("Concat", ["x"], ["y"], axis=1), facts, ["gy"], [True])
    RULES["Concat"](g)
    assert [n.op_type for n in g.nodes] == ["Identity"] and list(g.nodes[0].input) == ["gy"]


def test_rules_read_attributes_through_the_one_decoding_helper():
    """Regression: four rule modules decoded ONNX attributes themselves (``get_attribute_value``
    and ``bytes.decode`` copied into pooling, resize, activation, conv and the helpers)."""
    rules = ROOT / "blackbox_cam" / "gradients" / "rules"
    copies = [f"{p.name}:{i}" for p in sorted(rules.glob("*.py")) if p.name != "_context.py"
              for i, line in enumerate(p.read_text().splitlines(), 1)
              if "get_attribute_value" in line or ".decode(" in line or re.search(r"(?<![\w\"])b\"", line)]
    assert not copies, copies


def test_string_attributes_come_back_as_str():
    from onnx import helper

    from blackbox_cam.gradients._graph import NameMaker
    from blackbox_cam.gradients.rules import Grad, GraphFacts
    facts = GraphFacts(opset=17, shapes={}, dtypes={}, constants={}, new_name=NameMaker(()))
    g = Grad(helper.make_node("Gelu", ["x"], ["y"], approximate="tanh"), facts, ["gy"], [True])
    assert g.attr("approximate") == "tanh" and g.attrs() == {"approximate": "tanh"}
    g = Grad(helper.make_node("Conv", ["x", "w"], ["y"]), facts, ["gy"], [True, False])
    assert g.attr("auto_pad") == "NOTSET"


def test_superseded_bench_scripts_are_gone_and_nothing_points_at_them():
    """Regression (issue 23): bench_quality.py and tune_decam.py were superseded by
    bench/evaluate.py (held-out sets, --variants for DE-CAM settings) but kept, with their own
    scoring code and stale results that the README still quoted."""
    assert not (ROOT / "bench" / "bench_quality.py").exists() and not (ROOT / "bench" / "tune_decam.py").exists()
    assert not list((ROOT / "bench" / "results").glob("quality.*"))
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "bench").glob("*.py")]:
        text = doc.read_text(encoding="utf-8")
        assert "bench_quality" not in text and "tune_decam" not in text, doc
    assert "--variants" in (ROOT / "bench" / "evaluate.py").read_text()


def test_score_map_adds_localisation_for_a_box(planted, heldout):
    from blackbox_cam.jobs.compare.job import MetricSettings, score_box, score_map
    x = planted.prepare(heldout["images"][0].astype(np.float32))
    sal = np.zeros(x.shape[1:], np.float32)
    sal[10:20, 30:40] = 1.0
    row = score_map(planted, x, sal, 0, MetricSettings(road=False, tolerance=0.0), (30, 10, 40, 20))
    assert row["pointing_game"] == 1.0 and row["energy_in_box"] == 1.0
    assert score_box(sal, (0, 0, 5, 5), 0.0) == {"pointing_game": 0.0, "energy_in_box": 0.0}
