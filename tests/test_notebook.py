"""docs/tutorial.ipynb runs top to bottom in a fresh Jupyter kernel (nbclient + ipykernel), and every
cell that should show a picture shows one; the committed notebook carries its outputs."""
from __future__ import annotations

import base64
import importlib.util
import io

import pytest
from PIL import Image

from conftest import ROOT

nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbclient, nbformat and ipykernel")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"


def _runner():
    spec = importlib.util.spec_from_file_location("run_tutorial", ROOT / "docs" / "run_tutorial.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def pictures(cell) -> list[Image.Image]:
    out = []
    for o in cell.get("outputs", []):
        png = o.get("data", {}).get("image/png")
        if png:
            im = Image.open(io.BytesIO(base64.b64decode(png)))
            im.load()
            out.append(im)
    return out


def text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        parts.append(o.get("text", "") if o["output_type"] == "stream" else o.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def check(nb) -> None:
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "every code cell ran"
    assert not [o for c in code for o in c.outputs if o["output_type"] == "error"]
    tagged = [c for c in code if "picture" in c.metadata.get("tags", [])]
    assert len(tagged) >= 7
    for c in tagged:
        pics = pictures(c)
        assert pics, f"no picture from:\n{c.source}"
        assert all(min(p.size) >= 200 for p in pics), [p.size for p in pics]
    by_source = {c.source.split("\n")[0]: c for c in code}
    assert text(by_source['result = bc.explain(MODEL, CAT, "decam", budget=500, seed=0)']).startswith(
        "<Result chelsea.png: Egyptian cat")
    clean = next(c for c in code if c.source.startswith("clean = run_gate("))
    assert "gate passed: clean.onnx decam: 0/8 images failed" in text(clean) and not pictures(clean)
    hans = next(c for c in code if "report = run_gate(" in c.source)
    assert "gate FAILED: clever_hans.onnx decam: 8/8 images failed" in text(hans)


@pytest.mark.slow
def test_tutorial_runs_top_to_bottom_in_a_fresh_kernel():
    nb, seconds = _runner().execute(NOTEBOOK)
    print(f"docs/tutorial.ipynb executed in {seconds:.1f} s")
    check(nb)
    assert seconds < 600


def test_committed_tutorial_carries_its_outputs():
    check(nbformat.read(NOTEBOOK, as_version=4))
