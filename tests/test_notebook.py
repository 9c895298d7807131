"""binclass in Jupyter: a notebook executed by nbclient trains, shows the run, the doctor's findings and
predictions, and finds HTML in every output; training shows one table updated in place."""

from __future__ import annotations

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TIMEOUT = 600  # seconds per cell: bounded, whatever the machine


def test_a_notebook_shows_the_run_the_findings_and_the_predictions(tiny_data, tmp_path):
    cells = [
        f"import binclass\nrun = binclass.train({str(tiny_data)!r}, out={str(tmp_path / 'run')!r}, model='small', "
        "image_size=32, epochs=2)",
        "run",
        "binclass.doctor(run.path)",
        f"run.predict({str(tiny_data / 'validation')!r})[:5]",
        "binclass.lint()",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(notebook, timeout=TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})  # fmt: skip
    client.execute()
    outputs = [cell.outputs for cell in notebook.cells]
    html = [[o["data"]["text/html"] for o in out if "text/html" in o.get("data", {})] for out in outputs]
    # training: one display, replaced as the run went, its final state a table of both epochs
    assert len(html[0]) == 1 and html[0][0].count("<tr>") == 3 and "val acc" in html[0][0]
    assert not any(o.get("name") == "stdout" and "epoch " in o.get("text", "") for o in outputs[0])
    assert (
        "validation accuracy" in html[1][0] and "data:image/png;base64," in html[1][0] and "report.html" in html[1][0]
    )
    assert "<table" in html[2][0] or "no findings" in html[2][0]
    assert html[3][0].count("<tr>") == 6 and "ood_score" in html[3][0]  # a header and five rows
    assert "no findings" in html[4][0]
    assert outputs[1][0]["data"]["text/plain"].startswith("Run(")  # the terminal's text is unchanged
