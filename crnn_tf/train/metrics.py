"""Observability: progress bar, TensorBoard scalars, `metrics.jsonl`; and the NaN/Inf error."""
import json
import os
import time

import keras
import tensorflow as tf

METRICS_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class NonFiniteLossError(FloatingPointError):
    """A training batch gave a non-finite loss or gradient; its update was not applied."""


class Window:
    """Sums of per-step values between two reports (loss·frames, frames, correct frames, grad norm, steps)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.loss = self.frames = self.correct = self.grad_norm = 0.0
        self.steps = 0
        self.start = time.perf_counter()

    def add(self, loss: float, frames: float, correct: float, grad_norm: float):
        self.loss += loss * frames
        self.frames += frames
        self.correct += correct
        self.grad_norm += grad_norm
        self.steps += 1

    def summary(self) -> dict:
        seconds = max(time.perf_counter() - self.start, 1e-9)
        return {"loss": self.loss / max(self.frames, 1.0), "frame_accuracy": self.correct / max(self.frames, 1.0),
                "grad_norm": self.grad_norm / max(self.steps, 1), "frames_per_second": self.frames / seconds}


class Reporter:
    """Progress bar, TensorBoard scalars and `metrics.jsonl` of the chief (a no-op elsewhere).

    Args:
      model_dir: where `tensorboard/` and `metrics.jsonl` go.
      steps_per_epoch: the progress bar's target.
      log_every: steps between TensorBoard points. progress: show the bar. active: False on non-chief workers.
    """

    def __init__(self, model_dir: str, steps_per_epoch: int, *, log_every: int = 50, progress: bool = True,
                 active: bool = True):
        self.active, self.progress, self.log_every = active, progress and active, log_every
        self.steps_per_epoch = steps_per_epoch
        self.writer = tf.summary.create_file_writer(os.path.join(model_dir, TENSORBOARD_DIR)) if active else None
        self.metrics_path = os.path.join(model_dir, METRICS_NAME)
        self.window = Window()
        self.bar = None

    def start_epoch(self, epoch: int, step_in_epoch: int):
        if self.progress:
            print(f"epoch {epoch + 1}")
            self.bar = keras.utils.Progbar(self.steps_per_epoch, stateful_metrics=["frames/s", "lr"])
            if step_in_epoch:
                self.bar.update(step_in_epoch)
        self.window.reset()

    def step(self, step: int, step_in_epoch: int, values: dict, lr: float):
        """Records one finished step (`values`: loss, frames, correct, grad_norm as Python floats)."""
        self.window.add(values["loss"], values["frames"], values["correct"], values["grad_norm"])
        if self.bar is not None:
            seconds = max(time.perf_counter() - self.window.start, 1e-9)
            self.bar.update(step_in_epoch, [("loss", values["loss"]), ("frames/s", self.window.frames / seconds),
                                            ("lr", lr)])
        if self.active and step % self.log_every == 0:
            self.scalars(step, {**self.window.summary(), "learning_rate": lr}, prefix="train")
            self.window.reset()

    def scalars(self, step: int, values: dict, prefix: str):
        if not self.active:
            return
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(f"{prefix}/{name}", value)
        self.writer.flush()

    def epoch_end(self, record: dict):
        """Appends `record` (must hold "epoch") to metrics.jsonl, replacing lines of that epoch or later (a resumed
        run may redo an epoch end that a kill interrupted)."""
        if not self.active:
            return
        lines = []
        if tf.io.gfile.exists(self.metrics_path):
            with tf.io.gfile.GFile(self.metrics_path) as f:
                lines = [line for line in f.read().splitlines()
                         if line.strip() and json.loads(line)["epoch"] < record["epoch"]]
        lines.append(json.dumps(record, sort_keys=True))
        with tf.io.gfile.GFile(self.metrics_path + ".tmp", "w") as f:
            f.write("".join(line + "\n" for line in lines))
        tf.io.gfile.rename(self.metrics_path + ".tmp", self.metrics_path, overwrite=True)
        self.scalars(record["step"], {k: v for k, v in record.items() if k.startswith("dev_")}, prefix="dev")
        if self.bar is not None:
            dev = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith("dev_"))
            print(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, "
                  f"frame accuracy {record['train_frame_accuracy']:.4f}" + (f"; {dev}" if dev else ""))
