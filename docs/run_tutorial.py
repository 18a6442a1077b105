"""Run docs/tutorial.ipynb top to bottom in a fresh Jupyter kernel and store it with its outputs.

    python docs/run_tutorial.py            # re-executes the notebook in place, prints its time
    python docs/run_tutorial.py --html F   # also writes the nbconvert HTML export to F (dev extra)

The kernel imports blackbox_cam from this checkout (``PYTHONPATH`` is set to the repository
root), so the outputs are those of the code next to the notebook. ``tests/test_notebook.py``
runs the same :func:`execute` in the test suite. Needs the ``test`` extra (nbclient, ipykernel).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"


def execute(path: Path = NOTEBOOK, timeout: int = 600):
    """``(notebook, seconds)``: ``path`` executed by a new ``python3`` kernel started in its folder,
    importing the package from this checkout. A failing cell raises nbclient's
    ``CellExecutionError`` with the cell's traceback."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + env_path if env_path else "")
    try:
        t0 = time.perf_counter()
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
        seconds = time.perf_counter() - t0
    finally:
        if env_path:
            os.environ["PYTHONPATH"] = env_path
        else:
            os.environ.pop("PYTHONPATH", None)
    return nb, seconds


def main() -> None:
    import nbformat

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--html", type=Path, help="also write the nbconvert HTML export here")
    args = ap.parse_args()
    nb, seconds = execute()
    nbformat.write(nb, NOTEBOOK)
    print(f"{NOTEBOOK.relative_to(ROOT)}: executed in {seconds:.1f} s, {NOTEBOOK.stat().st_size / 1e6:.2f} MB")
    if args.html:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb)
        args.html.write_text(body, encoding="utf-8")
        print(f"HTML -> {args.html}")


if __name__ == "__main__":
    main()
