"""What a run writes besides checkpoints: meta.json, history, plots, tables."""

import csv
import json
import math
import os
import platform
import subprocess
import sys
import time

from train.files import atomic_write

# Curves worth plotting, in panel order: (title, [(log key, legend label)]).
PANELS = (
    ("loss", [("loss", "train"), ("val_loss", "test")]),
    ("accuracy", [("accuracy", "train"), ("val_accuracy", "test")]),
    ("perplexity", [("perplexity", "train"), ("val_perplexity", "test")]),
    ("GAN hinge losses", [("d_loss", "discriminator"), ("g_loss", "generator")]),
    ("FID", [("fid", "FID")]),
    ("episode return", [("episode_return", "mean of the last episodes")]),
    ("PPO losses", [("policy_loss", "policy"), ("value_loss", "value"), ("entropy", "entropy")]),
    (
        "Nero monitor",
        [
            ("nero/mean_angle", "mean turn per step (rad)"),
            ("nero/max_norm_error", "max |norm - 1|"),
        ],
    ),
)


def write_json(path, data):
    """Write `data` as JSON, atomically (a killed process leaves the old file or the new)."""
    text = json.dumps(_plain(data), indent=2, sort_keys=False, allow_nan=False)
    atomic_write(path, text + "\n")


def _plain(value):
    """JSON-safe: NaN/inf become null, tuples lists, numpy scalars floats."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def git_revision(path):
    """`(commit, dirty)` of the git checkout holding `path`, or (None, None)."""
    try:
        commit = subprocess.run(
            ["git", "-C", path, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", path, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())


def meta(*, argv, selection, smoke, experiment, description, only=None):
    """The environment and command that produced a run (meta.json)."""
    import keras
    import tensorflow as tf

    import nero_tf

    commit, dirty = git_revision(os.path.dirname(os.path.abspath(nero_tf.__file__)))
    return {
        "experiment": experiment,
        "description": description,
        "command": ["python", "-m", "train", *argv],
        "smoke": smoke,
        "only": only,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "nero_tf_version": nero_tf.__version__,
        "git_revision": commit,
        "git_dirty": dirty,
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "platform": platform.platform(),
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "strategy": selection.describe(),
    }


def read_history_csv(path):
    """Keras CSVLogger output -> {key: [float or None per epoch]} (with 'epoch')."""
    if not os.path.exists(path):
        return {}
    history = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for key, text in row.items():
                try:
                    value = float(text)
                except (TypeError, ValueError):
                    value = None
                if value is not None and not math.isfinite(value):
                    value = None
                history.setdefault(key, []).append(value)
    if "epoch" in history:
        history["epoch"] = [int(e) if e is not None else None for e in history["epoch"]]
    return history


def _x_axis(history):
    """The x values of a history's rows and their name: epochs, or an RL run's
    (train.rl) environment steps."""
    if history.get("env_steps"):
        return history["env_steps"], "environment steps"
    return None, "epoch"


def _series(history, key):
    values = history.get(key) or []
    xs, _ = _x_axis(history)
    points = [(xs[i] if xs else i + 1, v) for i, v in enumerate(values) if v is not None]
    return [p[0] for p in points], [p[1] for p in points]


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed (or wanted)
    import matplotlib.pyplot as plt

    return plt


def _draw_panel(ax, name, lines, log_scale, xlabel="epoch"):
    """One panel of per-epoch curves: `lines` is [(label, epochs, values)]."""
    for label, x, y in lines:
        if x:
            ax.plot(x, y, marker="o" if len(x) < 15 else None, ms=3, label=label)
    ax.set_title(name)
    ax.set_xlabel(xlabel)
    if log_scale:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def save_figure(plt, fig, path, title):
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_run(history, path, title):
    """Learning curves of one run: loss, accuracy (and Nero monitor) per epoch."""
    plt = pyplot()
    # A panel for curves with at least one value (a short RL run may end no episode).
    panels = [
        p for p in PANELS
        if any(v is not None for k, _ in p[1] for v in history.get(k) or [])
    ]  # fmt: skip
    fig, axes = plt.subplots(
        1, max(1, len(panels)), figsize=(4.5 * max(1, len(panels)), 3.6)
    )
    axes = list(axes) if len(panels) > 1 else [axes]
    for ax, (name, curves) in zip(axes, panels):
        lines = [(label, *_series(history, key)) for key, label in curves]
        _draw_panel(ax, name, lines, log_scale=name == "Nero monitor",
                    xlabel=_x_axis(history)[1])
    save_figure(plt, fig, path, title)


def plot_comparison(histories, path, title):
    """One line per run: train loss, then train and test accuracy (or perplexity) per epoch."""
    plt = pyplot()
    panels = [
        ("train loss", "loss", True),
        ("train accuracy", "accuracy", False),
        ("test accuracy", "val_accuracy", False),
        ("train perplexity", "perplexity", True),
        ("test perplexity", "val_perplexity", True),
        ("D loss", "d_loss", False),
        ("G loss", "g_loss", False),
        ("FID", "fid", True),
        ("episode return", "episode_return", False),
    ]
    gan = any(h.get("d_loss") for h in histories.values())
    rl = any(h.get("env_steps") for h in histories.values())
    panels = [
        p for p in panels
        if (p[1] == "loss" and not (gan or rl))
        or any(v is not None for h in histories.values() for v in h.get(p[1]) or [])
    ]  # fmt: skip
    xlabel = "environment steps" if rl else "epoch"
    fig, axes = plt.subplots(1, len(panels), figsize=(14, 3.8), squeeze=False)
    for ax, (name, key, log_scale) in zip(axes[0], panels):
        lines = [(label, *_series(history, key)) for label, history in histories.items()]
        _draw_panel(ax, name, lines, log_scale, xlabel)
    save_figure(plt, fig, path, title)


COLUMNS = (
    ("run", "label", "{}"),
    ("optimizer", "optimizer", "{}"),
    ("lr", "learning_rate", "{:g}"),
    ("train loss", "final_train_loss", "{:.4g}"),
    ("train acc", "final_train_accuracy", "{:.4f}"),
    ("test loss", "test_loss", "{:.4g}"),
    ("test acc", "test_accuracy", "{:.4f}"),
    ("test ppl", "test_perplexity", "{:.2f}"),
    ("test BLEU", "test_bleu", "{:.2f}"),
    ("D loss", "final_d_loss", "{:.4g}"),
    ("G loss", "final_g_loss", "{:.4g}"),
    ("FID", "fid", "{:.2f}"),
    ("return", "final_return", "{:.2f}"),
    ("env steps/s", "env_steps_per_s", "{:.0f}"),
    ("time (s)", "wall_time_s", "{:.1f}"),
)
# Left out of a table where no run has them (a text run has no accuracy, an
# image run no perplexity).
OPTIONAL_COLUMNS = (
    "final_train_accuracy", "test_accuracy", "test_perplexity", "test_bleu",
    "final_d_loss", "final_g_loss", "fid", "final_return", "env_steps_per_s",
)  # fmt: skip
# Left out when every run is a GAN's (train/gan.py) or an RL run's (train/rl.py):
# they have no single loss.
CLASSIFIER_COLUMNS = ("final_train_loss", "test_loss")


def table(rows):
    """A plain-text comparison table of runs' metrics."""
    gans = bool(rows) and all("final_d_loss" in r or "final_return" in r for r in rows)
    columns = [
        c for c in COLUMNS
        if (c[1] not in OPTIONAL_COLUMNS or any(r.get(c[1]) is not None for r in rows))
        and not (gans and c[1] in CLASSIFIER_COLUMNS)
    ]  # fmt: skip
    header = [c[0] for c in columns]
    lines = [header]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value = row.get(key)
            cells.append("-" if value is None else fmt.format(value))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)
