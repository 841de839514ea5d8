"""The training harness: `python -m train` runs an experiment config.

Modules: `config` (the schema), `data` (offline-safe datasets), `optimizers`
(by name), `schedules` (the paper's learning-rate schedules), `strategy`
(tf.distribute and XLA, in one place), `loop` (the training loop: `model.fit`'s
behaviour under every strategy, multi-worker included, with exact resumption
from backups), `callbacks` (`NeroMonitor`, `NonFiniteLoss`, ...), `diagnose`
(where a NaN/Inf started), `runner` (one run directory per experiment),
`report` (meta, history, plots), `quickstart` (the default config).
"""
