"""The Python API (elfdd.api): a whole evaluation in this process, returning a table, without Prefect."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import TINY_RUN

from elfdd import api


def _overrides(toy_npz) -> list[str]:
    return ["data.name=npz", f"data.path={toy_npz}", *TINY_RUN]


def test_evaluate_returns_the_table_of_the_run_it_writes(toy_npz, tmp_path):
    table = api.evaluate(
        tmp_path / "run", students=["convnet", "mlp"], seeds=[0, 1], overrides=_overrides(toy_npz)
    )
    assert sorted(zip(table["student"], table["arm"], strict=True)) == [
        (s, a) for s in ("convnet", "mlp") for a in ("baseline", "elf (clean)")
    ]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    convnet = table[(table["student"] == "convnet") & (table["arm"] == "baseline")].iloc[0]
    accs = [r["test_acc"] for r in results["runs"] if r["student"] == "convnet" and r["mode"] == "baseline"]
    assert convnet["accuracy"] == sum(accs) / 2 and convnet["seeds"] == 2
    elf = table[(table["student"] == "mlp") & (table["arm"] == "elf (clean)")].iloc[0]
    assert "architecture_gap" in table.columns and elf["gain"] == elf["gain"]  # a number, not NaN
    assert api.read_results(tmp_path / "run").equals(table)
    assert (tmp_path / "run" / "report.md").exists()
    features = api.open_store(tmp_path / "run" / "store.zarr", "teacher", 2, "block3")
    assert features.dims == ("sample", "view", "channel", "y", "x") and "label" in features.coords


def test_evaluate_runs_where_prefect_cannot_be_imported(toy_npz, tmp_path):
    script = f"""
import sys
sys.modules["prefect"] = None  # any import of prefect now fails
from elfdd import api
table = api.evaluate({str(tmp_path / "run")!r}, students=["mlp"], overrides={_overrides(toy_npz)!r})
assert "prefect" not in [m.split(".")[0] for m in sys.modules if sys.modules[m] is not None]
print("rows", len(table))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rows 2" in done.stdout
    assert "cell 2 of 2 mlp" in done.stdout  # progress lines on stdout where nothing else shows them
