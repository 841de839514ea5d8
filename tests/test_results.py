"""The committed reproductions in results/: each table is what its runs say, each page says how to make it."""

import json
import pathlib

import pytest

from train import sweep_report

ROOT = pathlib.Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "results").glob("**/sweep.json"))
PAGES = sorted((ROOT / "results").glob("*/README.md"))


def _records(data):
    return [
        sweep_report.Record(
            r["label"], r["lr"], r["seed"], r["status"], r["metric"], r["run_dir"], r.get("error")
        )
        for r in data["runs"]
    ]


def test_results_holds_the_sweeps_of_every_claim():
    names = {p.relative_to(ROOT / "results").parts[0] for p in SWEEPS}
    assert {"c1_depth_mlp", "c2_constraints", "c3_granularity", "c4_weight_scale",
            "c5_default_lr"} <= names


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_a_committed_results_table_is_what_its_sweep_json_says(path):
    # results.md is regenerated from the runs recorded in sweep.json: the best rate
    # of each optimiser and every mean and range in the table follow from them.
    data = json.loads(path.read_text())
    records = _records(data)
    metric = sweep_report.parse_metric(data["metric"])
    best = sweep_report.best_learning_rates(
        records, metric, data["protocol"], first_seed=data["seeds"][0]
    )
    assert best == data["best_learning_rates"]
    committed = (path.parent / "results.md").read_text()
    title = committed.splitlines()[0].removeprefix("# ")
    rebuilt = sweep_report.results_markdown(
        records, best, metric, title=title, protocol=data["protocol"], seeds=data["seeds"]
    )
    assert rebuilt == committed
    assert (path.parent / "curves.png").is_file()


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.parent.name)
def test_a_results_page_starts_with_the_command_that_made_it(path):
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# ") and lines[2] == "```bash", f"{path}: no command at its top"
    command = text.split("```bash", 1)[1].split("```", 1)[0]
    assert "python -m train" in command
    # The pages name data by where a user keeps it (~/data/mnist.npz), never by a
    # path of the machine that made them: its work or temporary folders, or the
    # developers' data folder beside the repository.
    developers_data = "/".join(("..", "shared"))
    for machine_path in ("/work/", "/tmp/", developers_data, "shared/data"):
        assert machine_path not in text, f"{path}: {machine_path}"
