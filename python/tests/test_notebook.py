"""examples/quickstart.ipynb runs headless, top to bottom, and shows verdicts and the curves."""

from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient", reason="pip install nbclient nbformat ipykernel to run the notebook")
import nbformat  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_runs_and_shows_verdicts_and_curves(tmp_path, monkeypatch):
    # Its own generated donor (from memory) and corpus: no network, nothing outside the checkout.
    monkeypatch.setenv("EMBGRAFT_QUICKSTART_SELF_CONTAINED", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    texts, html = [], []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            data = out.get("data", {})
            texts.append(data.get("text/plain", ""))
            html.append(data.get("text/html", ""))
    every = "\n".join(texts + html)
    assert any(s in every for s in ("the graft", "freezing", "not distinguishable at")), every[:2000]
    assert any("data:image/png;base64," in h for h in html), "the Result renders its curves inline"
    assert "A − H" in every, "the scale controls' matched question is answered"
    report = (tmp_path / "runs" / "quickstart-lecture" / "report.md").read_text()
    assert "in-memory array [50257 x 64]" in report
