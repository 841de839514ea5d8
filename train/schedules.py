"""The paper's learning-rate schedules as Keras `LearningRateSchedule`s.

Keras calls a schedule with `optimizer.iterations`, the number of updates
already made: 0 for the first update. Every schedule here is per iteration and
serialisable (`get_config` / `from_config`, registered for `.keras` files).

- constant: the float itself.
- warmup_multistep (CIFAR, Fig. 1, 2, 6): linear warm-up over the first
  `warmup_epochs`, then x`factor` at each milestone epoch (`WarmupMultiStep`).
- exponential (MNIST MLPs, Fig. 3): x`decay_rate` after every `decay_epochs`
  epochs: Keras' `ExponentialDecay(staircase=True)`.
- warmup_cosine (ImageNet, Fig. 4): linear warm-up then cosine to
  `alpha * lr`: Keras' `CosineDecay(warmup_target=..., warmup_steps=...)`.
- linear_up_down (translation, Fig. 8): linearly up to the peak epoch, then
  linearly down to 0 at the end (`LinearUpDown`).

`build(schedule_config, learning_rate, steps_per_epoch, epochs)` turns a
config's `schedule` section into one of these.
"""

import keras
from keras import ops

# The name the harness registers its Keras objects under (`.keras` files store it).
PACKAGE = "nero_tf_train"


@keras.saving.register_keras_serializable(package=PACKAGE)
class WarmupMultiStep(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up per iteration, then step decay at fixed iterations.

    The authors' CIFAR schedule (their `WarmUpLR` then `MultiStepLR`): update
    `i` (0-based) of the warm-up uses `learning_rate * (i + 1) / warmup_steps`,
    so the last warm-up update is at the full rate; afterwards the rate is
    `learning_rate * factor ** k`, where `k` counts the boundaries `<= i`.

    Args:
        learning_rate: The peak (initial, after warm-up) learning rate.
        warmup_steps: Iterations of linear warm-up; 0 for none.
        boundaries: Increasing iteration counts after which the rate is
            multiplied by `factor` (`epoch * steps_per_epoch`).
        factor: The multiplier at each boundary. Defaults to 0.2.
        name: Optional name.
    """

    def __init__(self, learning_rate, warmup_steps, boundaries, factor=0.2, name=None):
        super().__init__()
        if warmup_steps < 0:
            raise ValueError(
                f"Argument `warmup_steps` must be >= 0. Received: {warmup_steps}"
            )
        if list(boundaries) != sorted(boundaries):
            raise ValueError(
                f"Argument `boundaries` must be increasing. Received: {boundaries}"
            )
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.boundaries = [int(b) for b in boundaries]
        self.factor = float(factor)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr = ops.cast(self.learning_rate, "float32")
        decays = ops.zeros((), "float32")
        for boundary in self.boundaries:
            decays = decays + ops.cast(step >= boundary, "float32")
        decayed = lr * ops.power(ops.cast(self.factor, "float32"), decays)
        if self.warmup_steps == 0:
            return decayed
        warm = lr * (step + 1.0) / float(self.warmup_steps)
        return ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "boundaries": list(self.boundaries),
            "factor": self.factor,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class LinearUpDown(keras.optimizers.schedules.LearningRateSchedule):
    """Linear ramp from 0 up to `learning_rate` at `peak_steps`, then down to 0.

    The translation experiment's schedule: `lr * i / peak_steps` while
    `i < peak_steps`, then `lr * (total_steps - i) / (total_steps -
    peak_steps)`, and 0 from `total_steps` on.

    Args:
        learning_rate: The peak learning rate.
        peak_steps: Iteration of the peak, in `(0, total_steps]`.
        total_steps: Iterations of the whole run.
        name: Optional name.
    """

    def __init__(self, learning_rate, peak_steps, total_steps, name=None):
        super().__init__()
        if not 0 < peak_steps <= total_steps:
            raise ValueError(
                "Arguments must satisfy 0 < peak_steps <= total_steps. Received: "
                f"peak_steps={peak_steps}, total_steps={total_steps}"
            )
        self.learning_rate = float(learning_rate)
        self.peak_steps = int(peak_steps)
        self.total_steps = int(total_steps)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        up = step / float(self.peak_steps)
        down_len = float(max(self.total_steps - self.peak_steps, 1))
        down = (float(self.total_steps) - step) / down_len
        frac = ops.where(step < self.peak_steps, up, down)
        return self.learning_rate * ops.clip(frac, 0.0, 1.0)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "peak_steps": self.peak_steps,
            "total_steps": self.total_steps,
            "name": self.name,
        }


def build(schedule, learning_rate, steps_per_epoch, epochs):
    """The learning rate (a float or a schedule) for a config's `schedule`.

    Args:
        schedule: a `train.config.ScheduleConfig`.
        learning_rate: the optimizer's base learning rate.
        steps_per_epoch: training iterations per epoch.
        epochs: epochs of the run.
    """
    from train.config import schedule_params

    params = schedule_params(schedule)
    lr = float(learning_rate)
    total = max(1, int(steps_per_epoch) * int(epochs))

    def steps(epochs_):
        return int(round(float(epochs_) * steps_per_epoch))

    if schedule.name == "constant":
        return lr
    if schedule.name == "warmup_multistep":
        return WarmupMultiStep(
            lr,
            warmup_steps=steps(params["warmup_epochs"]),
            boundaries=[steps(m) for m in params["milestones"]],
            factor=params["factor"],
        )
    if schedule.name == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            lr,
            decay_steps=max(1, steps(params["decay_epochs"])),
            decay_rate=params["decay_rate"],
            staircase=True,
        )
    if schedule.name == "warmup_cosine":
        warmup = min(steps(params["warmup_epochs"]), total - 1)
        return keras.optimizers.schedules.CosineDecay(
            0.0,
            decay_steps=total - warmup,
            alpha=params["alpha"],
            warmup_target=lr,
            warmup_steps=warmup,
        )
    if schedule.name == "linear_up_down":
        peak = params["peak_epoch"]
        peak_steps = total // 2 if peak is None else min(steps(peak), total)
        return LinearUpDown(lr, peak_steps=max(1, peak_steps), total_steps=total)
    raise ValueError(f"unknown schedule {schedule.name!r}")  # config checks names

