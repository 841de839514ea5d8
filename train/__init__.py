"""The training harness: `python -m train` runs an experiment config.

Run from the repository root (it is not installed with `nero_tf`).

Modules: `config` (the schema, without TensorFlow), `typed` (strict typed
parsing of plain data), `checks` (what the types cannot say: ranges, names),
`data` (offline-safe datasets), `optimizers` (by name), `schedules` (the
paper's learning-rate schedules), `strategy` (tf.distribute and XLA, in one
place), `loop` (the training loop: `model.fit`'s behaviour under every
strategy, multi-worker included), `backup` (the training state on disk, for
exact resumption), `callbacks` (`NeroMonitor`, `NonFiniteLoss`, ...),
`diagnose` (where a NaN/Inf started), `runner` (one run directory per
experiment), `report` (meta, history, plots), `files` (atomic writes),
`quickstart` (the default config).
"""
