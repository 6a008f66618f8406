"""The model dir: its files, checkpoints with the data position, the best-by-dev model, and `load_trained_model`.

Layout (the export stage codes against it)::

    model_dir/train_config.json     TrainConfig (model_spec, geometry, label_delay, chunking, manifest hashes, ...)
    model_dir/feature_config.json   FeatureConfig of the training data (what the features must be at inference)
    model_dir/prior_counts.npy      float64 [num_targets] pdf counts over the training alignments
    model_dir/cmvn_global.npy       float64 [2, num_bands + 1] CMVN stats of the training data (cmvn="global" only)
    model_dir/checkpoints/          tf.train.Checkpoint (model, optimizer, counters, dropout seeds), the last
                                    `keep_checkpoints`
    model_dir/best/                 tf.train.Checkpoint of the best model by dev frame accuracy (+ best.json)
    model_dir/metrics.jsonl         one JSON line per epoch
    model_dir/tensorboard/          TensorBoard scalars

A checkpoint holds the counters `step` (finished steps), `epoch` (finished epochs), `step_in_epoch` (finished steps
of the current epoch: the data iterator position, since every epoch's data order is a pure function of the seed
and the epoch) and the running epoch statistics, so a run killed at any moment restarts exactly where its last
checkpoint was taken. TF writes checkpoints atomically: a kill during a save leaves the previous one valid.
"""
import dataclasses
import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from absl import logging

from crnn_tf.train.config import TrainConfig

CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
BEST_INFO = "best.json"
FEATURE_CONFIG_NAME = "feature_config.json"
PRIOR_COUNTS_NAME = "prior_counts.npy"
GLOBAL_CMVN_NAME = "cmvn_global.npy"


def write_side_files(model_dir: str, feature_config, prior_counts: np.ndarray,
                     global_cmvn_stats: np.ndarray | None = None) -> None:
    """Writes `feature_config.json`, `prior_counts.npy` and, for global CMVN, `cmvn_global.npy` next to the weights.

    Raises:
      ValueError: the feature config normalises with global statistics but none are given.
    """
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(os.path.join(model_dir, FEATURE_CONFIG_NAME), "w") as f:
        f.write(feature_config.to_json())
    with tf.io.gfile.GFile(os.path.join(model_dir, PRIOR_COUNTS_NAME), "wb") as f:
        np.save(f, np.asarray(prior_counts, np.float64))
    if feature_config.cmvn == "global":
        if global_cmvn_stats is None:
            raise ValueError(f"{model_dir}: the features use global CMVN but the training data has no global stats")
        with tf.io.gfile.GFile(os.path.join(model_dir, GLOBAL_CMVN_NAME), "wb") as f:
            np.save(f, np.asarray(global_cmvn_stats, np.float64))


def read_global_cmvn_stats(model_dir: str) -> np.ndarray | None:
    """The training data's global CMVN stats saved in a model dir, or None when it has none."""
    path = os.path.join(model_dir, GLOBAL_CMVN_NAME)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as f:
        return np.load(f)


@dataclasses.dataclass(frozen=True)
class EpochStats:
    """Running totals of the current epoch; `TrainState.epoch_stats` holds them, so a restart keeps them.

    Attributes:
      loss_sum: training loss summed over frames (each step's mean loss times its frames).
      frames: frames trained on.
      correct_frames: frames whose most likely senone was the target.
      skipped_batches: batches skipped for a non-finite loss.
      seconds: seconds spent in training steps.

    Example:
      >>> total = EpochStats(loss_sum=6.0, frames=4.0, correct_frames=3.0) + EpochStats(seconds=2.0)
      >>> total.mean_loss, total.frame_accuracy, total.frames_per_second
      (1.5, 0.75, 2.0)
      >>> EpochStats.from_array(total.to_array()) == total
      True
    """

    loss_sum: float = 0.0
    frames: float = 0.0
    correct_frames: float = 0.0
    skipped_batches: float = 0.0
    seconds: float = 0.0

    def __add__(self, other: "EpochStats") -> "EpochStats":
        return EpochStats(*(a + b for a, b in zip(self.to_array(), other.to_array())))

    def to_array(self) -> np.ndarray:
        """float64 [5] in field order: the layout of the checkpoint variable."""
        return np.array(dataclasses.astuple(self), np.float64)

    @classmethod
    def from_array(cls, values) -> "EpochStats":
        """The inverse of `to_array`.

        Raises:
          ValueError: `values` is not one number per field.
        """
        values = np.asarray(values, np.float64)
        names = [field.name for field in dataclasses.fields(cls)]
        if values.shape != (len(names),):
            raise ValueError(f"epoch statistics are {len(names)} numbers ({', '.join(names)}), got shape "
                             f"{values.shape}")
        return cls(*(float(v) for v in values))

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.frames, 1.0)

    @property
    def frame_accuracy(self) -> float:
        return self.correct_frames / max(self.frames, 1.0)

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


class TrainState:
    """Counters saved with every checkpoint (variables, created in the strategy's scope by the caller).

    Attributes:
      step: finished optimizer steps (also drives the learning-rate schedule).
      epoch: finished epochs.
      step_in_epoch: finished steps of the current epoch (the data position).
      epoch_stats: float64 [5]: the current epoch's `EpochStats` (`to_array` / `from_array`), so epoch metrics
        survive a restart.
      best_accuracy: best dev frame accuracy so far (-1 before the first evaluation).
    """

    def __init__(self):
        def counter(name, dtype=tf.int64, shape=()):
            # ONLY_FIRST_REPLICA: replicas assign identical values; one write is enough.
            return tf.Variable(tf.zeros(shape, dtype), trainable=False, name=name,
                               aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

        self.step = counter("step")
        self.epoch = counter("epoch")
        self.step_in_epoch = counter("step_in_epoch")
        self.epoch_stats = counter("epoch_stats", tf.float64, [len(dataclasses.fields(EpochStats))])
        self.best_accuracy = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_accuracy")

    def trackables(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "epoch_stats": self.epoch_stats, "best_accuracy": self.best_accuracy}


class Checkpointer:
    """Saves and restores `model_dir/checkpoints` (and `best/`) for every strategy.

    Under multi_worker every worker must take part in a save; only the chief's files are kept (the others write
    into a temporary directory, the documented MultiWorkerMirroredStrategy pattern).

    Args:
      model_dir: the run's directory.
      model, optimizer: the Keras objects.
      state: `TrainState`.
      keep: checkpoints to keep. Default 3.
      chief: whether this process writes the model dir. Default True.
    """

    def __init__(self, model_dir: str, model, optimizer, state: TrainState, *, keep: int = 3, chief: bool = True):
        self.model_dir, self.model, self.chief = model_dir, model, chief
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, **state.trackables(),
                                              **_seed_states(model))
        directory = os.path.join(model_dir, CHECKPOINT_DIR)
        self._scratch = None
        if not chief:
            self._scratch = tempfile.mkdtemp(prefix="crnn_train_worker_")
            directory = self._scratch
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)
        self.state = state

    def restore_latest(self) -> str | None:
        """Restores the chief's latest checkpoint (every worker reads the same one); returns its path or None."""
        path = tf.train.latest_checkpoint(os.path.join(self.model_dir, CHECKPOINT_DIR))
        if path:
            self.checkpoint.restore(path).assert_existing_objects_matched()
            logging.info("resumed from %s (step %d)", path, int(self.state.step.numpy()))
        return path

    def save(self) -> str:
        """Saves a checkpoint numbered by the step counter; returns its path (a scratch path on non-chiefs)."""
        return self.manager.save(checkpoint_number=int(self.state.step.numpy()))

    def save_best(self, info: dict) -> None:
        """Writes the model alone to `best/` with `best.json` (chief only)."""
        if not self.chief:
            return
        directory = os.path.join(self.model_dir, BEST_DIR)
        tf.io.gfile.makedirs(directory)
        path = tf.train.Checkpoint(model=self.model).write(os.path.join(directory, "model"))
        with tf.io.gfile.GFile(os.path.join(directory, BEST_INFO), "w") as f:
            f.write(json.dumps({**info, "checkpoint": os.path.basename(path)}, indent=2))

    def close(self) -> None:
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _seed_states(model) -> dict:
    """`{"seed_states": [...]}`: the seed-generator states of the model's random layers (Dropout), which a Keras
    model's own checkpoint leaves out; saved with it, a resumed run draws the dropout masks an uninterrupted one would.
    `{}` for a model without any, whose checkpoints keep their layout."""
    states = [layer.seed_generator.state for layer in model.layers if hasattr(layer, "seed_generator")]
    return {"seed_states": states} if states else {}


def build_model(config: TrainConfig, *, mixed_precision: bool = False):
    """The (untrained) Keras model a `TrainConfig` describes.

    Args:
      config: the run's `TrainConfig`.
      mixed_precision: build with the "mixed_float16" dtype policy (float16 compute, float32 variables); the global
        policy is restored afterwards, so nothing else in the process changes. Default False (float32).
    """
    import keras

    from crnn_tf.models import from_spec

    previous = keras.mixed_precision.global_policy()
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        return from_spec(config.model_spec, num_bands=config.num_bands, num_streams=config.num_streams,
                         num_targets=config.num_targets, context=config.context, dropout=config.dropout)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def checkpoint_path(model_dir: str, which: str = "best") -> str:
    """Path prefix of the `best` or `latest` checkpoint of a model dir (`best` falls back to `latest` when the run
    had no dev data).

    Raises:
      FileNotFoundError: no such checkpoint.
    """
    if which not in ("best", "latest"):
        raise ValueError(f"which={which!r}; expected 'best' or 'latest'")
    if which == "best":
        info_path = os.path.join(model_dir, BEST_DIR, BEST_INFO)
        if tf.io.gfile.exists(info_path):
            with tf.io.gfile.GFile(info_path) as f:
                return os.path.join(model_dir, BEST_DIR, json.load(f)["checkpoint"])
        logging.warning("%s has no best/ (trained without dev data?): using the latest checkpoint", model_dir)
    path = tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_DIR))
    if not path:
        raise FileNotFoundError(f"no checkpoint in {model_dir}/{CHECKPOINT_DIR}")
    return path


def load_trained_model(model_dir: str, which: str = "best"):
    """Rebuilds a trained model from its model dir.

    Args:
      model_dir: a `crnn-train` model dir.
      which: "best" (best dev frame accuracy; falls back to "latest" without dev data) or "latest". Default "best".

    Returns:
      `(model, config)`: a `keras.Model` (features [batch, time, feature_dim] → logits [batch, time,
      num_targets]) with the trained weights, and the run's `TrainConfig`.
    """
    config = TrainConfig.load(model_dir)
    model = build_model(config)
    # read(), not restore(): best/ is written without a save counter; the optimizer in step checkpoints is ignored.
    tf.train.Checkpoint(model=model).read(checkpoint_path(model_dir, which)).expect_partial() \
        .assert_existing_objects_matched()
    return model, config
