"""The training harness: `python -m train` runs an experiment config.

Modules: `config` (the schema), `data` (offline-safe datasets), `optimizers`
(by name), `schedules` (the paper's learning-rate schedules), `strategy`
(tf.distribute and XLA, in one place), `callbacks` (`NeroMonitor`, ...),
`runner` (one run directory per experiment), `report` (meta, history, plots),
`quickstart` (the default config).
"""
