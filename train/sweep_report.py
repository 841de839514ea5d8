"""Aggregate a sweep's run directories: best learning rates, results tables, curves.

Reads only what the harness wrote (`<run>/<label>/metrics.json` and
`history.json`), so `python -m train.sweep --report-only` can rebuild the
report at any time. Imports neither Keras nor TensorFlow.

    sweep.json    every run: label, lr, seed, status, metric value (and the settings)
    results.md    per optimizer: best lr, mean and min-max of the metric over seeds;
                  and the whole grid, the mean per learning rate
    curves.png    per optimizer at its best lr: the per-epoch test metric, mean over
                  seeds as a line, min-max as a band
"""

import dataclasses
import json
import math
import os

from train import report

# Direction of the metrics.json keys the harness writes; another key needs
# its direction spelled out (`key:max` or `key:min`).
DIRECTIONS = {
    "test_accuracy": "max",
    "test_top5": "max",
    "test_bleu": "max",
    "final_train_accuracy": "max",
    "test_perplexity": "min",
    "test_loss": "min",
    "final_train_loss": "min",
    "final_train_perplexity": "min",
    "final_return": "max",  # PPO: the mean return of the last episodes
}
# The per-epoch history.json key that follows a metrics.json key.
CURVES = {
    "test_accuracy": "val_accuracy",
    "test_top5": "val_top5",
    "test_perplexity": "val_perplexity",
    "test_loss": "val_loss",
    "final_train_loss": "loss",
    "final_train_accuracy": "accuracy",
    "final_train_perplexity": "perplexity",
    "final_return": "episode_return",  # per update, not per epoch
}


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metrics.json key and whether higher ("max") or lower ("min") is better."""

    key: str
    direction: str

    def __str__(self):
        return f"{self.key}:{self.direction}"

    def better(self, a, b):
        """Whether value `a` is strictly better than `b`."""
        return a > b if self.direction == "max" else a < b

    @property
    def curve(self):
        """The history.json key plotted per epoch for this metric."""
        return CURVES.get(self.key, "loss")


def parse_metric(text):
    """`"key"` or `"key:max"` / `"key:min"` -> Metric; ValueError (one line) if not."""
    key, sep, direction = str(text).strip().partition(":")
    key = key.strip()
    if not key:
        raise ValueError(f"expected a metrics.json key such as test_accuracy:max, got {text!r}")
    if not sep:
        if key not in DIRECTIONS:
            raise ValueError(
                f"{key}: say which way is better ({key}:max or {key}:min); known keys: "
                f"{', '.join(DIRECTIONS)}"
            )
        direction = DIRECTIONS[key]
    direction = direction.strip()
    if direction not in ("max", "min"):
        raise ValueError(f"{text}: the direction must be max or min, got {direction!r}")
    return Metric(key, direction)


def default_metric(training_metrics, reinforcement=False):
    """The config's test metric: higher final_return for PPO, else higher
    test_accuracy, else lower test_perplexity, else lower final_train_loss."""
    if reinforcement:
        return Metric("final_return", "max")
    if "accuracy" in training_metrics:
        return Metric("test_accuracy", "max")
    if "perplexity" in training_metrics:
        return Metric("test_perplexity", "min")
    return Metric("final_train_loss", "min")


def lr_name(lr):
    """The directory name of a learning rate: `lr0.001`, `lr1e-05`, `lr1`."""
    return f"lr{lr:g}"


def run_dir(out, label, lr, seed):
    """The harness run directory of one run of a sweep."""
    return os.path.join(out, label, lr_name(lr), f"seed{seed}")


@dataclasses.dataclass
class Record:
    """One run of a sweep as its run directory tells it.

    `status` is "finished", "failed" (a NaN/Inf loss: metrics.json says so),
    "error" (the process ended without metrics.json; `error` says how) or
    "missing" (never run, or still running).
    """

    label: str
    lr: float
    seed: int
    status: str
    metric: float = None
    run_dir: str = ""
    error: str = None

    def as_json(self):
        out = {
            "label": self.label,
            "lr": self.lr,
            "seed": self.seed,
            "status": self.status,
            "metric": self.metric,
            "run_dir": self.run_dir,
        }
        if self.error:
            out["error"] = self.error
        return out


def read_json(path):
    """A JSON file's data, or None if missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_record(out, label, lr, seed, metric):
    """The Record of one run, from `<run dir>/<label>/metrics.json`."""
    where = run_dir(out, label, lr, seed)
    metrics = read_json(os.path.join(where, label, "metrics.json"))
    record = Record(label, lr, seed, "missing", run_dir=where)
    if not isinstance(metrics, dict):
        return record
    record.status = metrics.get("status", "finished")
    if record.status == "finished":
        value = metrics.get(metric.key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            record.metric = float(value)
    else:
        record.error = metrics.get("error")
    return record


def done(record):
    """Whether a run needs no more training: it finished, or failed on a NaN/Inf loss."""
    return record.status in ("finished", "failed")


def best_learning_rates(records, metric, protocol, first_seed):
    """Each label's best learning rate (None where no run can tell).

    "paper": by the metric of the first seed's runs. "grid": by the mean over
    seeds, among learning rates whose every seed finished with a value (one
    diverged seed rules a rate out). Ties go to the smaller learning rate.
    """
    best = {}
    for label in _labels(records):
        candidates = []
        for lr in sorted({r.lr for r in records if r.label == label}):
            runs = [r for r in records if r.label == label and r.lr == lr]
            if protocol == "paper":
                runs = [r for r in runs if r.seed == first_seed]
            if runs and all(r.status == "finished" and r.metric is not None for r in runs):
                candidates.append((lr, _mean([r.metric for r in runs])))
        chosen = None
        for lr, value in candidates:
            if chosen is None or metric.better(value, chosen[1]):
                chosen = (lr, value)
        best[label] = chosen[0] if chosen else None
    return best


@dataclasses.dataclass
class Summary:
    """One optimizer's row of the results table: its best lr over the seeds."""

    label: str
    lr: float
    values: list
    seeds: int  # runs at the best lr, finished or not

    @property
    def mean(self):
        return _mean(self.values) if self.values else None

    @property
    def low(self):
        return min(self.values) if self.values else None

    @property
    def high(self):
        return max(self.values) if self.values else None


def summarize(records, best):
    """A Summary per label (in the records' order) at its best learning rate."""
    rows = []
    for label in _labels(records):
        lr = best.get(label)
        runs = [r for r in records if r.label == label and r.lr == lr and r.status != "missing"]
        values = [r.metric for r in runs if r.status == "finished" and r.metric is not None]
        rows.append(Summary(label, lr, values, len(runs)))
    return rows


def _labels(records):
    return list(dict.fromkeys(r.label for r in records))


def _mean(values):
    return math.fsum(values) / len(values)


def _number(value):
    return "-" if value is None else f"{value:.4g}"


def results_markdown(records, best, metric, *, title, protocol, seeds):
    """results.md: the Table-1-style summary, then the mean per learning rate."""
    lines = [
        f"# {title}",
        "",
        f"Protocol `{protocol}` over seeds {', '.join(map(str, seeds))}; metric "
        f"`{metric.key}` ({'higher' if metric.direction == 'max' else 'lower'} is better).",
        "",
        f"| optimizer | best lr | {metric.key} mean | range (min–max) | seeds |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in summarize(records, best):
        if row.lr is None:
            lines.append(f"| {row.label} | - | - | - | 0 |")
            continue
        seeds_text = str(len(row.values))
        if len(row.values) != row.seeds:
            seeds_text += f" of {row.seeds}"
        lines.append(
            f"| {row.label} | {row.lr:g} | {_number(row.mean)} | "
            f"{_number(row.low)}–{_number(row.high)} | {seeds_text} |"
        )
    lrs = sorted({r.lr for r in records})
    lines += [
        "",
        f"## {metric.key} over the learning-rate grid",
        "",
        "Each cell: the mean over the seeds run at that rate (seeds that finished / run); "
        "**bold**: the best rate; failed: every run stopped on a NaN/Inf loss; "
        "-: not run.",
        "",
        "| optimizer | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
        "| --- |" + " --- |" * len(lrs),
    ]
    for label in _labels(records):
        cells = []
        for lr in lrs:
            runs = [r for r in records if r.label == label and r.lr == lr and r.status != "missing"]
            values = [r.metric for r in runs if r.status == "finished" and r.metric is not None]
            if not runs:
                cell = "-"
            elif not values:
                cell = "failed" if all(r.status == "failed" for r in runs) else "-"
            else:
                cell = f"{_number(_mean(values))} ({len(values)}/{len(runs)})"
                if best.get(label) == lr:
                    cell = f"**{cell}**"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_json(records, best, metric, settings):
    """sweep.json's data: the settings, the best learning rates and every run."""
    return {
        **settings,
        "metric": str(metric),
        "best_learning_rates": best,
        "runs": [r.as_json() for r in records],
    }


def plot_curves(records, best, metric, path, title):
    """curves.png: per label at its best lr, the per-epoch curve's mean and min-max band."""
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    drawn = 0
    for label in _labels(records):
        lr = best.get(label)
        runs = [r for r in records if r.label == label and r.lr == lr and r.status == "finished"]
        series = []
        for r in runs:
            history = read_json(os.path.join(r.run_dir, label, "history.json")) or {}
            series.append(history.get(metric.curve) or [])
        epochs, means, lows, highs = [], [], [], []
        for epoch in range(max((len(s) for s in series), default=0)):
            values = [s[epoch] for s in series if epoch < len(s) and s[epoch] is not None]
            if values:
                epochs.append(epoch + 1)
                means.append(_mean(values))
                lows.append(min(values))
                highs.append(max(values))
        if not epochs:
            continue
        (line,) = ax.plot(
            epochs, means, marker="o" if len(epochs) < 15 else None, ms=3,
            label=f"{label} (lr {lr:g}, {len(runs)} seed{'s' if len(runs) != 1 else ''})",
        )  # fmt: skip
        ax.fill_between(epochs, lows, highs, color=line.get_color(), alpha=0.2)
        drawn += 1
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.curve)
    if metric.curve.endswith("perplexity"):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes)
    subtitle = f"{metric.curve} at the best lr: mean over seeds, min-max band"
    report.save_figure(plt, fig, path, f"{title}\n{subtitle}")


def write(out, records, best, metric, settings, title):
    """Write sweep.json, results.md and curves.png into `out`; returns results.md's text."""
    report.write_json(
        os.path.join(out, "sweep.json"), sweep_json(records, best, metric, settings)
    )
    text = results_markdown(
        records, best, metric, title=title, protocol=settings["protocol"],
        seeds=settings["seeds"],
    )  # fmt: skip
    from train.files import atomic_write

    atomic_write(os.path.join(out, "results.md"), text)
    plot_curves(records, best, metric, os.path.join(out, "curves.png"), title)
    return text
