"""Runs examples/quickstart.ipynb top to bottom with the installed embgraft and saves it with its
outputs, as committed. Run from the checkout with the shared data beside it (the MiniLM donor and
The Time Machine, found by the notebook's first cell):

    python scripts/execute-notebook.py

Needs nbclient, nbformat and ipykernel. The outputs are what a reader of the repository sees; the
Python tests check that they have the form today's code writes."""

import shutil
import sys
from pathlib import Path

import nbclient
import nbformat

here = Path(__file__).resolve().parents[1] / "examples"
path = here / "quickstart.ipynb"
nb = nbformat.read(path, as_version=4)
shutil.rmtree(here / "runs", ignore_errors=True)  # the notebook's own run folders: a fresh start
nbformat.validator.normalize(nb)  # cell ids, for nbformat 5
for cell in nb.cells:
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
nbclient.NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(here)}}).execute()
# What only this machine knows stays out of the committed file; a cell's lines on one stream are
# one output, as a notebook front shows them.
nb.metadata.pop("widgets", None)
for cell in nb.cells:
    cell.metadata.pop("execution", None)
    merged = []
    for out in cell.get("outputs", []):
        if merged and out.output_type == "stream" and merged[-1].output_type == "stream" and merged[-1].name == out.name:
            merged[-1].text += out.text
        else:
            merged.append(out)
    if cell.cell_type == "code":
        cell.outputs = merged
nbformat.write(nb, path)
errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
sys.exit(f"{len(errors)} cells failed; see the notebook" if errors else 0)
