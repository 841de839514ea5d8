"""`python -m train.sweep`: settings, the paper's protocol, resumable runs, the report.

The aggregation is tested on hand-made metrics.json files (no training); the
runs themselves are `--smoke` harness subprocesses on synthetic data, offline.
"""

import dataclasses
import io
import json
import os
import pathlib
import socket

import pytest

from train import config as config_lib
from train import sweep
from train import sweep_report
from train.sweep_report import Metric, Record
from tests.conftest import one_error_line

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "saved_configs" / "mnist" / "mlp100_fig3_right.yaml")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("no_network")


def run_sweep(argv, capsys):
    """`python -m train.sweep` in-process (its runs are subprocesses): (status, out, err)."""
    status = sweep.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def table_rows(text, header):
    """The rows of the Markdown table whose header starts with `header`, as cell lists."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header}"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def write_metrics(out, label, lr, seed, value=None, status="finished", history=None):
    """A hand-made harness run: `<run dir>/<label>/metrics.json` (and history.json)."""
    where = pathlib.Path(sweep_report.run_dir(str(out), label, lr, seed)) / label
    where.mkdir(parents=True)
    metrics = {"label": label, "status": status, "learning_rate": lr}
    if status == "finished":
        metrics["test_accuracy"] = value
        metrics["final_train_loss"] = 1 - value
    else:
        metrics["error"] = "non-finite loss (nan) at epoch 0, batch 1"
    (where / "metrics.json").write_text(json.dumps(metrics))
    if history is not None:
        (where / "history.json").write_text(json.dumps(history))


# ------------------------------------------------------------------ aggregation


# nero: seed 0 prefers lr 0.001 (0.9 > 0.8), the mean over seeds prefers 0.1.
NERO = {0.001: [0.9, 0.7, 0.7], 0.1: [0.8, 0.9, 0.9]}
# sgd: lr 0.1 is better on seeds 0 and 2 but diverged on seed 1.
SGD = {0.001: [0.2, 0.1, 0.3], 0.1: [0.4, None, 0.5]}


def hand_made_sweep(out):
    for label, table in (("nero", NERO), ("sgd", SGD)):
        for lr, values in table.items():
            for seed, value in enumerate(values):
                if value is None:
                    write_metrics(out, label, lr, seed, status="failed")
                else:
                    history = {"val_accuracy": [value / 2, value], "loss": [2.0, 1.0]}
                    write_metrics(out, label, lr, seed, value, history=history)


def records_of(out, metric=Metric("test_accuracy", "max")):
    return [
        sweep_report.read_record(str(out), label, lr, seed, metric)
        for label, table in (("nero", NERO), ("sgd", SGD))
        for lr, values in table.items()
        for seed in range(len(values))
    ]


def test_the_paper_protocol_picks_by_the_first_seed_the_grid_by_the_mean(tmp_path):
    hand_made_sweep(tmp_path)
    records = records_of(tmp_path)
    accuracy = Metric("test_accuracy", "max")
    assert sweep_report.best_learning_rates(records, accuracy, "paper", 0) == {
        "nero": 0.001,
        "sgd": 0.1,
    }
    # The grid: nero by its mean; sgd's lr 0.1 diverged once, so it is out.
    assert sweep_report.best_learning_rates(records, accuracy, "grid", 0) == {
        "nero": 0.1,
        "sgd": 0.001,
    }
    # Lower is better for a loss: final_train_loss is 1 - accuracy in these files.
    loss = Metric("final_train_loss", "min")
    assert sweep_report.best_learning_rates(records_of(tmp_path, loss), loss, "paper", 0) == {
        "nero": 0.001,
        "sgd": 0.1,
    }


def test_mean_range_and_seed_count_at_the_best_learning_rate(tmp_path):
    hand_made_sweep(tmp_path)
    records = records_of(tmp_path)
    rows = sweep_report.summarize(records, {"nero": 0.001, "sgd": 0.1})
    nero, sgd = rows
    assert (nero.lr, nero.mean, nero.low, nero.high) == (0.001, pytest.approx(2.3 / 3), 0.7, 0.9)
    assert (len(nero.values), nero.seeds) == (3, 3)
    assert (sgd.mean, sgd.low, sgd.high, len(sgd.values), sgd.seeds) == (
        pytest.approx(0.45), 0.4, 0.5, 2, 3,
    )  # fmt: skip
    failed = [r for r in records if r.status == "failed"]
    assert [(r.label, r.lr, r.seed) for r in failed] == [("sgd", 0.1, 1)]


def test_ties_go_to_the_smaller_learning_rate_and_no_finished_run_means_no_best():
    records = [
        Record("a", 0.1, 0, "finished", 0.5),
        Record("a", 0.01, 0, "finished", 0.5),
        Record("b", 0.1, 0, "failed"),
        Record("b", 0.01, 0, "missing"),
    ]
    best = sweep_report.best_learning_rates(records, Metric("test_accuracy", "max"), "paper", 0)
    assert best == {"a": 0.01, "b": None}


@pytest.mark.parametrize(
    "text, want",
    [
        ("test_accuracy", Metric("test_accuracy", "max")),
        ("test_perplexity", Metric("test_perplexity", "min")),
        ("test_accuracy:min", Metric("test_accuracy", "min")),
        ("my_score:max", Metric("my_score", "max")),
    ],
)
def test_metric_names_a_key_and_a_direction(text, want):
    assert sweep_report.parse_metric(text) == want


@pytest.mark.parametrize("text", ["my_score", "test_loss:down", ":max", ""])
def test_a_metric_without_a_known_direction_is_refused(text):
    with pytest.raises(ValueError):
        sweep_report.parse_metric(text)


def test_default_metric_follows_the_configs_test_metric():
    assert sweep_report.default_metric(["accuracy"]) == Metric("test_accuracy", "max")
    assert sweep_report.default_metric(["perplexity"]) == Metric("test_perplexity", "min")
    assert sweep_report.default_metric(["top5"]) == Metric("final_train_loss", "min")
    # PPO configs (an `environment` section): the mean return of the last episodes.
    args = sweep._parser().parse_args(
        ["--config", str(ROOT / "saved_configs/cartpole/ppo_cartpole.yaml"), "--out", "o",
         "--lr", "0.01"]
    )  # fmt: skip
    assert sweep.resolve(args).metric == Metric("final_return", "max")


def test_report_only_tables_hold_the_files_numbers(tmp_path, capsys):
    out = tmp_path / "sweep"
    hand_made_sweep(out)
    argv = ["--config", CONFIG, "--smoke", "--only", "nero", "sgd", "--lr", "1e-3,0.1",
            "--seeds", "0,1,2", "--out", out, "--report-only"]  # fmt: skip
    status, stdout, err = run_sweep(argv, capsys)
    assert status == 0, err
    text = (out / "results.md").read_text()
    assert text in stdout
    summary = {row[0]: row[1:] for row in table_rows(text, "optimizer | best lr")}
    # Paper protocol (the default): nero at 0.001 over seeds 0.9, 0.7, 0.7.
    assert summary["nero"] == ["0.001", f"{2.3 / 3:.4g}", "0.7–0.9", "3"]
    assert summary["sgd"] == ["0.1", "0.45", "0.4–0.5", "2 of 3"]
    # The grid table: the paper protocol ran the other rates on seed 0 only (the
    # files of nero's other seeds at 0.1 are not part of it).
    grid = {row[0]: row[1:] for row in table_rows(text, "optimizer | lr 0.001")}
    assert grid["nero"] == [f"**{2.3 / 3:.4g} (3/3)**", "0.8 (1/1)"]
    assert grid["sgd"] == ["0.2 (1/1)", "**0.45 (2/3)**"]

    data = json.loads((out / "sweep.json").read_text())
    assert data["best_learning_rates"] == {"nero": 0.001, "sgd": 0.1}
    assert data["metric"] == "test_accuracy:max"
    runs = {(r["label"], r["lr"], r["seed"]): r for r in data["runs"]}
    # The paper protocol plans the grid on seed 0 and the best lr on seeds 1, 2.
    assert sorted(runs) == sorted(
        [("nero", 0.001, 0), ("nero", 0.1, 0), ("nero", 0.001, 1), ("nero", 0.001, 2),
         ("sgd", 0.001, 0), ("sgd", 0.1, 0), ("sgd", 0.1, 1), ("sgd", 0.1, 2)]
    )  # fmt: skip
    assert runs[("sgd", 0.1, 1)]["status"] == "failed"
    assert runs[("nero", 0.001, 2)] | {"run_dir": None} == {
        "label": "nero", "lr": 0.001, "seed": 2, "status": "finished", "metric": 0.7,
        "run_dir": None,
    }  # fmt: skip
    assert (out / "curves.png").read_bytes()[:8] == PNG_MAGIC

    # The grid protocol on the same files: nero's best is now 0.1 (the mean).
    status, _, err = run_sweep(argv + ["--protocol", "grid"], capsys)
    assert status == 0, err
    text = (out / "results.md").read_text()
    summary = {row[0]: row[1:] for row in table_rows(text, "optimizer | best lr")}
    assert summary["nero"] == ["0.1", f"{2.6 / 3:.4g}", "0.8–0.9", "3"]
    assert summary["sgd"] == ["0.001", "0.2", "0.1–0.3", "3"]
    grid = {row[0]: row[1:] for row in table_rows(text, "optimizer | lr 0.001")}
    assert grid["nero"] == [f"{2.3 / 3:.4g} (3/3)", f"**{2.6 / 3:.4g} (3/3)**"]
    assert grid["sgd"] == ["**0.2 (3/3)**", "0.45 (2/3)"]


def test_the_paper_protocol_plans_the_grid_on_one_seed_then_the_best_on_the_rest():
    settings = sweep.Settings(
        config_path="c.yaml", out="o", labels=["a", "b"], learning_rates=[0.1, 1.0],
        seeds=[3, 4, 5], protocol="paper", metric=Metric("test_accuracy", "max"),
        overrides=[], smoke=False, experiment="e",
    )  # fmt: skip
    results = {}

    def record(key):
        return results.get(key) or Record(*key, "missing")

    runs, undecided = sweep.planned(settings, record)
    assert runs == [("a", 0.1, 3), ("a", 1.0, 3), ("b", 0.1, 3), ("b", 1.0, 3)]
    assert undecided == 4
    results[("a", 0.1, 3)] = Record("a", 0.1, 3, "finished", 0.2)
    results[("a", 1.0, 3)] = Record("a", 1.0, 3, "finished", 0.6)
    results[("b", 0.1, 3)] = Record("b", 0.1, 3, "failed")
    runs, undecided = sweep.planned(settings, record)
    assert runs[2:4] == [("a", 1.0, 4), ("a", 1.0, 5)] and undecided == 2
    results[("b", 1.0, 3)] = Record("b", 1.0, 3, "failed")
    runs, undecided = sweep.planned(settings, record)
    assert len(runs) == 6 and undecided == 0  # b: no best, no more runs
    grid = dataclasses.replace(settings, protocol="grid")
    assert len(sweep.planned(grid, record)[0]) == 2 * 2 * 3


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "args, message",
    [
        (["--only", "nesterov", "--lr", "0.1"], "--only nesterov: no such optimizer label"),
        (["--lr", ""], "--lr: empty list"),
        (["--lr", "0.1,-0.01"], "--lr: must be positive"),
        (["--lr", "0.1,fast"], "--lr: expected a comma-separated list"),
        (["--lr", "0.1", "--seeds", "0,0"], "--seeds: 0 is listed twice"),
        (["--lr", "0.1", "--set", "training.epochs=0"], "training.epochs: must be positive"),
        (["--lr", "0.1", "--set", "training.seed=4"], "the sweep sets each run's seed"),
        (["--lr", "0.1", "--set", "optimizers.sgd.learning_rate=1"], "sets sgd's learning rate"),
        (["--lr", "0.1", "--set", "sweep.metric=score"], "sweep.metric: score: say which way"),
        (["--set", "sweep.seeds=[0,1]"], "no learning rates to sweep"),
        (["--lr", "0.1", "--jobs", "0"], "--jobs: must be at least 1"),
        (["--lr", "0.1", "--report-only"], "--report-only: no sweep in"),
        (["--lr", "0.1", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(args, message, tmp_path, capsys):
    out = tmp_path / "sweep"
    status, _, err = run_sweep(["--config", CONFIG, "--smoke", *args, "--out", out], capsys)
    assert status == 2
    assert message in one_error_line(err)
    assert not out.exists()


def test_a_missing_config_file_is_one_line(tmp_path, capsys):
    status, _, err = run_sweep(
        ["--config", tmp_path / "none.yaml", "--lr", "0.1", "--out", tmp_path / "s"], capsys
    )
    assert status == 2 and "no such config file" in one_error_line(err)


def test_a_run_directory_of_another_config_is_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "sweep"
    settings_argv = ["--config", CONFIG, "--smoke", "--only", "sgd", "--lr", "0.1",
                     "--seeds", "0", "--out", out]  # fmt: skip
    settings = sweep.Settings(
        config_path=CONFIG, out=str(out), labels=["sgd"], learning_rates=[0.1], seeds=[0],
        protocol="paper", metric=Metric("test_accuracy", "max"), overrides=[], smoke=True,
        experiment="x",
    )  # fmt: skip
    other = config_lib.load(
        CONFIG, settings.run_overrides("sgd", 0.1, 0) + ["training.epochs=3"], smoke=True
    )
    where = pathlib.Path(sweep_report.run_dir(str(out), "sgd", 0.1, 0))
    where.mkdir(parents=True)
    (where / "config.yaml").write_text(config_lib.dump(other))
    status, _, err = run_sweep(settings_argv, capsys)
    assert status == 2
    assert "holds a run of another config (training.epochs: 3 there, 1 here)" in one_error_line(err)
    assert sorted(os.listdir(out)) == ["sgd"] and os.listdir(where) == ["config.yaml"]


def test_the_config_sweep_section_is_typed_and_the_command_line_wins(tmp_path, capsys):
    raw = config_lib.read(CONFIG)
    raw["sweep"] = {"learning_rates": [0.01, 0.1], "seeds": [1, 2], "protocol": "grid",
                    "metric": "final_train_loss"}  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(raw))  # JSON is YAML
    args = sweep._parser().parse_args(["--config", str(path), "--out", str(tmp_path / "o")])
    settings = sweep.resolve(args)
    assert (settings.learning_rates, settings.seeds, settings.protocol, str(settings.metric)) == (
        [0.01, 0.1], [1, 2], "grid", "final_train_loss:min",
    )  # fmt: skip
    args = sweep._parser().parse_args(
        ["--config", str(path), "--out", str(tmp_path / "o"), "--lr", "1", "--seeds", "7",
         "--protocol", "paper", "--metric", "test_accuracy"]
    )  # fmt: skip
    settings = sweep.resolve(args)
    assert (settings.learning_rates, settings.seeds, settings.protocol, str(settings.metric)) == (
        [1.0], [7], "paper", "test_accuracy:max",
    )  # fmt: skip
    # A run's config leaves the sweep section out: the same run whatever grid it is in.
    run = config_lib.load(str(path), settings.run_overrides("sgd", 1.0, 7))
    assert "sweep" not in config_lib.to_dict(run)
    raw["sweep"]["learning_rates"] = [0.1, -1]
    path.write_text(json.dumps(raw))
    status, _, err = run_sweep(["--config", path, "--out", tmp_path / "o"], capsys)
    assert status == 2
    assert one_error_line(err) == "error: sweep.learning_rates.1: must be positive, got -1.0"
    assert not (tmp_path / "o").exists()


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_one_line_rewritten_on_a_terminal_and_plain_lines_otherwise():
    counts = {"total": 4, "done": 1, "kept": 0, "running": 2, "failed": 0}
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = sweep.Progress(stream)
        progress.show(counts)
        progress.show(counts)  # unchanged: a terminal redraws (the clock), a pipe does not
        progress.show({**counts, "done": 4, "running": 0, "failed": 1}, final=True)
    assert terminal.getvalue().count("\r") == 3 and terminal.getvalue().count("\n") == 1
    assert terminal.getvalue().startswith("\rsweep: 1/4 runs done, 2 running, 0 failed, 0:00:0")
    lines = pipe.getvalue().splitlines()
    assert [line.rsplit(",", 1)[0] for line in lines] == [
        "sweep: 1/4 runs done, 2 running, 0 failed",
        "sweep: 4/4 runs done, 0 running, 1 failed",
    ]
    assert "\r" not in pipe.getvalue()


# ------------------------------------------------------------------ real runs


def run_dirs(out):
    """Every harness run directory under a sweep directory (those with a config.yaml)."""
    return sorted(str(p.parent.relative_to(out)) for p in out.glob("*/*/*/config.yaml"))


def test_paper_sweep_runs_grid_then_best_resumes_and_records_a_nan_run(tmp_path, capsys):
    # SGD at 1e30 blows up at the first step: that run fails, the sweep goes on.
    out = tmp_path / "sweep"
    argv = ["--config", CONFIG, "--smoke", "--only", "sgd", "--lr", "0.01,1e30",
            "--seeds", "0,1", "--jobs", "2", "--out", out]  # fmt: skip
    status, stdout, err = run_sweep(argv, capsys)
    assert status == 1, err
    assert "1 run(s) did not finish" in err and "non-finite loss" in err
    # The grid on seed 0, then the best rate (0.01) on seed 1: three runs.
    assert run_dirs(out) == ["sgd/lr0.01/seed0", "sgd/lr0.01/seed1", "sgd/lr1e+30/seed0"]
    metrics = {}
    for name in run_dirs(out):
        where = out / name
        # An ordinary harness run directory, with the run's console output in it.
        assert {"config.yaml", "meta.json", "summary.json", "log.txt", "console.log"} <= set(
            os.listdir(where)
        )
        console = (where / "console.log").read_text()
        assert console.startswith("== ") and f"-m train --config {CONFIG} --only sgd" in console
        metrics[name] = json.loads((where / "sgd" / "metrics.json").read_text())
    assert not list(out.glob("*/*/*.console"))
    assert metrics["sgd/lr1e+30/seed0"]["status"] == "failed"
    values = [metrics[f"sgd/lr0.01/seed{s}"]["test_accuracy"] for s in (0, 1)]
    assert all(metrics[f"sgd/lr0.01/seed{s}"]["status"] == "finished" for s in (0, 1))
    assert [metrics[f"sgd/lr0.01/seed{s}"]["learning_rate"] for s in (0, 1)] == [0.01, 0.01]
    stored = [
        config_lib.yaml_load((out / f"sgd/lr0.01/seed{s}/config.yaml").read_text())
        for s in (0, 1)
    ]
    assert [c["training"]["seed"] for c in stored] == [0, 1]

    text = (out / "results.md").read_text()
    (row,) = table_rows(text, "optimizer | best lr")
    mean = sum(values) / 2
    assert row == ["sgd", "0.01", f"{mean:.4g}", f"{min(values):.4g}–{max(values):.4g}", "2"]
    (grid,) = table_rows(text, "optimizer | lr 0.01")
    assert grid == ["sgd", f"**{mean:.4g} (2/2)**", "failed"]
    data = json.loads((out / "sweep.json").read_text())
    assert [(r["lr"], r["seed"], r["status"]) for r in data["runs"]] == [
        (0.01, 0, "finished"), (1e30, 0, "failed"), (0.01, 1, "finished"),
    ]  # fmt: skip
    assert (out / "curves.png").read_bytes()[:8] == PNG_MAGIC

    # Again: every run is done (finished or failed), so nothing runs, same report.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*/*/sgd/metrics.json")}
    status, stdout, err = run_sweep(argv, capsys)
    assert status == 1
    assert "sweep: 3/3 runs done (3 kept from before), 0 running, 1 failed" in stdout
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*/*/sgd/metrics.json")} == stamps
    assert (out / "results.md").read_text() == text
    assert run_dirs(out) == ["sgd/lr0.01/seed0", "sgd/lr0.01/seed1", "sgd/lr1e+30/seed0"]


def test_a_run_exiting_with_bad_input_stops_the_sweep_with_its_line(tmp_path, capsys):
    # A live process (this one) holds the run directory's lock: the harness refuses it.
    out = tmp_path / "sweep"
    where = pathlib.Path(sweep_report.run_dir(str(out), "sgd", 0.1, 0))
    where.mkdir(parents=True)
    (where / ".lock").write_text(f"{socket.gethostname()} {os.getpid()}\n")
    status, _, err = run_sweep(
        ["--config", CONFIG, "--smoke", "--only", "sgd", "--lr", "0.1", "--seeds", "0,1",
         "--out", out],
        capsys,
    )  # fmt: skip
    assert status == 2
    assert f"run directory {where} is in use by process {os.getpid()}" in one_error_line(err)
    assert not (out / "results.md").exists() and not (out / "sweep.json").exists()
    assert run_dirs(out) == []


@pytest.mark.slow
def test_grid_sweep_runs_every_rate_on_every_seed(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["--config", CONFIG, "--smoke", "--only", "nero", "--lr", "0.001,0.01",
            "--seeds", "0,1", "--protocol", "grid", "--out", out]  # fmt: skip
    status, _, err = run_sweep(argv, capsys)
    assert status == 0, err
    assert run_dirs(out) == [f"nero/lr{lr}/seed{s}" for lr in ("0.001", "0.01") for s in (0, 1)]
    data = json.loads((out / "sweep.json").read_text())
    assert all(r["status"] == "finished" for r in data["runs"]) and len(data["runs"]) == 4
    by_lr = {}
    for r in data["runs"]:
        by_lr.setdefault(r["lr"], []).append(r["metric"])
    best = data["best_learning_rates"]["nero"]
    others = [lr for lr in by_lr if lr != best]
    assert all(sum(by_lr[best]) >= sum(by_lr[lr]) for lr in others)
    (row,) = table_rows((out / "results.md").read_text(), "optimizer | best lr")
    assert row[:3] == ["nero", f"{best:g}", f"{sum(by_lr[best]) / 2:.4g}"]


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_rerunning_its_finished_runs(tmp_path, capsys):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "sweep"
    argv = ["--config", CONFIG, "--smoke", "--only", "sgd", "--lr", "0.01,0.1,1",
            "--seeds", "0", "--protocol", "grid", "--jobs", "1", "--out", str(out)]
    first = out / "sgd" / "lr0.01" / "seed0" / "sgd" / "metrics.json"
    # The whole sweep, its runs included, in one process group: killed at once.
    process = subprocess.Popen([sys.executable, "-m", "train.sweep", *argv], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 300  # generous: a loaded machine
    try:
        while not first.exists():
            assert process.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "the first run did not finish in 300 s"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (out / "results.md").exists(), "the sweep finished before it was killed"
    stamp = first.stat().st_mtime_ns

    status, stdout, err = run_sweep(argv, capsys)
    assert status == 0, err
    assert "sweep: 3/3 runs done (1 kept from before)" in stdout, stdout
    assert first.stat().st_mtime_ns == stamp  # not run again
    data = json.loads((out / "sweep.json").read_text())
    assert [(r["lr"], r["status"]) for r in data["runs"]] == [
        (0.01, "finished"), (0.1, "finished"), (1.0, "finished")]
