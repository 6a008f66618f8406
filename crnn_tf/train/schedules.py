"""Learning-rate schedules driven by an explicit step counter.

The trainer's step counter is a plain `tf.Variable` advanced with TF's own `assign_add`: under asynchronous
parameter-server training Keras 3's `optimizer.iterations` undercounts (its increment is a read-then-write), so the
schedule must not read it.
"""
import math

import tensorflow as tf


def exponential_decay(step, lr_initial: float, lr_final: float, total_steps: int):
    """`lr_initial · (lr_final / lr_initial) ** (step / total_steps)`, held at `lr_final` after `total_steps`.

    Args:
      step: the number of finished steps (int tensor, variable or Python number).
      lr_initial: rate at step 0. lr_final: rate at step `total_steps`.
      total_steps: length of the run (≥ 1).

    Returns:
      float32 scalar tensor.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be ≥ 1, got {total_steps}")
    fraction = tf.minimum(tf.cast(step, tf.float32) / float(total_steps), 1.0)
    return lr_initial * tf.exp(fraction * math.log(lr_final / lr_initial))


class StepDecay:
    """A zero-argument callable for a Keras optimizer's `learning_rate` that reads `step` when called.

    Args:
      step: the trainer's step counter (`tf.Variable`).
      lr_initial, lr_final, total_steps: see `exponential_decay`.
    """

    def __init__(self, step: tf.Variable, lr_initial: float, lr_final: float, total_steps: int):
        self.step = step
        self.lr_initial, self.lr_final, self.total_steps = lr_initial, lr_final, total_steps

    def __call__(self):
        return exponential_decay(self.step, self.lr_initial, self.lr_final, self.total_steps)
