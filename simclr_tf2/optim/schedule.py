"""SimCLR learning rate: batch-size scaling, linear warmup, then cosine decay.

SimCLR scales a base learning rate with the batch size (linear:
`0.3 * B / 256`; square root: `0.075 * sqrt(B)`, better for small batches
with LARS; both give 4.8 at B = 4096), warms up linearly for some epochs and
then decays to zero with a cosine, without restarts.

Three rules keep short runs and batches larger than the dataset trainable,
and leave runs whose batch is smaller than the split (the paper's settings)
unchanged:

- The batch size the rate is scaled with is at most the number of training
  examples: a larger batch holds copies of the same images, which average
  into the same gradient and give no licence for a larger step.
- For the same reason a step covers at most one epoch: with a batch larger
  than the split, `--train_epochs=E` trains E steps, not
  E x split / batch (150 epochs of the 1,437 digits at batch 4096: 150
  steps rather than 53; 53 steps left the online linear head at 0.78 where
  150 reach 0.93, docs/results/digits.md).
- Warmup lasts at least `MIN_WARMUP_STEPS` steps, but at most
  `MAX_WARMUP_FRACTION` of the run: a warmup given in epochs is under two
  steps when one step covers several epochs (batch 4096 on 1,437 images),
  too short for momentum and batch-norm statistics to settle.
"""

import math

import keras
from keras import ops

# Warmup floor in steps, and the largest share of a run it may take.
MIN_WARMUP_STEPS = 10
MAX_WARMUP_FRACTION = 0.25


def scale_learning_rate(base_learning_rate, batch_size, scaling):
    """Scales a base learning rate with the batch size.

    Args:
        base_learning_rate: The learning rate before scaling.
        batch_size: Global (all replicas) training batch size.
        scaling: `"linear"` (`base * batch_size / 256`) or `"sqrt"`
            (`base * sqrt(batch_size)`).

    Returns:
        The scaled learning rate, a Python float.

    Raises:
        ValueError: If `scaling` is not one of the above.
    """
    if scaling == "linear":
        return base_learning_rate * batch_size / 256.0
    if scaling == "sqrt":
        return base_learning_rate * math.sqrt(batch_size)
    raise ValueError(
        f"Unknown learning rate scaling {scaling!r}; use 'linear' or 'sqrt'."
    )


def warmup_and_total_steps(
    num_examples, batch_size, warmup_epochs, train_epochs, train_steps=0
):
    """Converts epochs into optimizer steps.

    Args:
        num_examples: Number of training examples per epoch.
        batch_size: Global training batch size.
        warmup_epochs: Epochs of linear warmup (may be fractional).
        train_epochs: Epochs of training; ignored when `train_steps` > 0.
        train_steps: Total steps; overrides `train_epochs` when > 0.

    Returns:
        `(warmup_steps, total_steps)` as Python ints. With
        `b = scaling_batch_size(batch_size, num_examples)` (a step covers at
        most one epoch): `total_steps = train_steps or ceil(num_examples *
        train_epochs / b)` and `warmup_steps = round(warmup_epochs *
        num_examples / b)`, raised (never lowered) to
        `min(MIN_WARMUP_STEPS, floor(MAX_WARMUP_FRACTION * total_steps))`
        when `warmup_epochs` > 0.
    """
    per_step = scaling_batch_size(batch_size, num_examples)
    total_steps = int(train_steps or math.ceil(
        num_examples * train_epochs / per_step
    ))
    warmup_steps = int(round(warmup_epochs * num_examples / per_step))
    if warmup_epochs > 0:
        floor = min(MIN_WARMUP_STEPS,
                    int(MAX_WARMUP_FRACTION * total_steps))
        warmup_steps = max(warmup_steps, floor)
    return warmup_steps, total_steps


def scaling_batch_size(batch_size, num_examples):
    """The batch size the learning rate is scaled with: at most the split.

    Args:
        batch_size: Global training batch size.
        num_examples: Training examples per epoch (0 or None: unknown).

    Returns:
        `min(batch_size, num_examples)`, or `batch_size` when unknown.
    """
    if not num_examples:
        return batch_size
    return min(batch_size, num_examples)


@keras.saving.register_keras_serializable(package="simclr_tf2")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0, then cosine decay to 0, then 0.

    ```
    lr(step) = base * step / warmup_steps                  step < warmup
             = base * 0.5 * (1 + cos(pi * (step - warmup)
                                      / (total - warmup)))  warmup <= step
             = 0                                            step >= total
    ```

    Args:
        base_learning_rate: Peak learning rate, reached at `warmup_steps`
            (already scaled for the batch size).
        warmup_steps: Number of warmup steps; 0 starts at the peak.
        total_steps: Step at which the learning rate reaches 0.
    """

    def __init__(self, base_learning_rate, warmup_steps, total_steps):
        if warmup_steps < 0 or total_steps < 0:
            raise ValueError(
                "warmup_steps and total_steps must be >= 0, got "
                f"{warmup_steps} and {total_steps}."
            )
        self.base_learning_rate = base_learning_rate
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step):
        """Returns the learning rate at `step` as a float32 scalar."""
        step = ops.cast(step, "float32")
        base = ops.cast(self.base_learning_rate, "float32")
        warmup = float(self.warmup_steps)
        # max(., 1) guards the divisions; the branch it guards is then unused.
        warmup_lr = base * step / max(warmup, 1.0)
        decay_steps = max(float(self.total_steps) - warmup, 1.0)
        progress = ops.clip((step - warmup) / decay_steps, 0.0, 1.0)
        cosine_lr = base * 0.5 * (1.0 + ops.cos(math.pi * progress))
        lr = ops.where(step < warmup, warmup_lr, cosine_lr)
        # Exactly 0 from total_steps on (cos(float32(pi)) is only ~ -1).
        return ops.where(step >= float(self.total_steps), 0.0, lr)

    def get_config(self):
        """Returns the constructor arguments as a serialisable dict."""
        return {
            "base_learning_rate": self.base_learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


def build_learning_rate_schedule(
    base_learning_rate: float,
    learning_rate_scaling: str,
    batch_size: int,
    num_examples: int,
    warmup_epochs: float,
    train_epochs: float,
    train_steps: int = 0,
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Builds SimCLR's scaled warmup + cosine schedule.

    Args:
        base_learning_rate: Learning rate before batch-size scaling (0.3 for
            linear scaling in the paper, 0.075 for square root).
        learning_rate_scaling: `"linear"` or `"sqrt"`.
        batch_size: Global training batch size.
        num_examples: Number of training examples per epoch.
        warmup_epochs: Epochs of linear warmup.
        train_epochs: Epochs of training; ignored when `train_steps` > 0.
        train_steps: Total steps; overrides `train_epochs` when > 0.

    Returns:
        A `WarmupCosineDecay` peaking at the base rate scaled with
        `scaling_batch_size(batch_size, num_examples)`.
    """
    peak = scale_learning_rate(
        base_learning_rate, scaling_batch_size(batch_size, num_examples),
        learning_rate_scaling
    )
    warmup_steps, total_steps = warmup_and_total_steps(
        num_examples, batch_size, warmup_epochs, train_epochs, train_steps
    )
    return WarmupCosineDecay(peak, warmup_steps, total_steps)
