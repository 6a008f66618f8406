"""`TrainConfig`: every setting of a training run, saved as `model_dir/train_config.json`.

The export and decoding stages rebuild the network from this file alone (`model_spec` plus the input geometry), so
it is written before the first step and never changes afterwards except for `steps_per_epoch`/`total_steps`, which
are filled in once (by counting the training pipeline) and then frozen so a resumed run keeps the same
learning-rate schedule.
"""
import dataclasses
import json
import os

import tensorflow as tf

from crnn_tf.data.augment import AugmentConfig
from crnn_tf.data.pipelines import check_chunking
from crnn_tf.models import check_dropout, check_fraction

CONFIG_NAME = "train_config.json"
CONFIG_VERSION = 1

STRATEGIES = ("default", "mirrored", "multi_worker", "parameter_server")
OPTIMIZERS = ("sgd", "adam")
NAN_POLICIES = ("stop", "skip")

# Settings a resumed run must share with the run that wrote the model dir: they fix the graph, the data, its order
# and batching (the checkpoint's data position counts batches of one seeded order), or the meaning of the optimizer
# slots. Everything else (epochs excepted, see `check_resumable`) may change on resume. Dropout fixes the graph too:
# its layers have no weights, but checkpoints number a model's layers by position.
_STRUCTURAL = ("model_spec", "dropout", "num_bands", "num_streams", "num_targets", "context", "feature_dim",
               "label_delay", "chunk_length", "chunk_overlap", "mask_overlap", "window", "chunks_per_replica",
               "batch_size", "seed", "optimizer", "train_manifest_hash", "augment")


def check_label_smoothing(value) -> float:
    """`value` as a float if it is a label smoothing weight, in [0, 1).

    Raises:
      ValueError: negative, 1 or more, NaN or not a number; the message names `label_smoothing`.
    """
    return check_fraction(value, "label_smoothing")


@dataclasses.dataclass
class TrainConfig:
    """Settings of one training run (JSON-serialisable).

    Args:
      model_spec: zoo spec, e.g. "CLstm384P256+Pool3+Lstm2000P750+3xReLU2000" (see `crnn_tf.models.spec`).
      train_data: training manifest (file or directory). dev_data: dev manifest, "" for none. Default "".
      model_dir: output directory (see docs/training.md for its layout). Default "".
      strategy: "default" | "mirrored" | "multi_worker" | "parameter_server". Default "default".
      cpu_devices: split the CPU into this many logical devices before TF starts (0 = leave it alone); lets
        `mirrored` run on a CPU-only host. Default 0.
      num_bands, num_streams, feature_dim, num_targets: input/output geometry; taken from the manifest. Defaults
        31, 3, 93, 5529.
      context: splice half-width of feed-forward-first nets (ReLU/Maxout/Conv first). Default 5.
      dropout: fraction of every hidden block's outputs zeroed in training, in [0, 1); 0 disables it. Not on the
        features or the logits, nor on the recurrent state; the identity at inference and in the export (see
        `crnn_tf.models.from_spec`). Default 0.0.
      label_smoothing: weight ε of the uniform distribution mixed into every frame's one-hot target, in [0, 1): the
        loss is (1 - ε)·CE(label) + ε·mean over senones of -log p (see `frame_cross_entropy`). A regulariser
        against over-confident frames, where the targets are a GMM's forced alignment; 0 disables it. The dev
        figures stay plain cross-entropy. Default 0.0.
      chunk_length, chunk_overlap, label_delay, mask_overlap: truncated-BPTT chunking of recurrent nets (paper:
        15, 5, 5). Defaults 15, 5, 5, True.
      chunks_per_replica: chunks (recurrent) per replica batch; the global batch is this × replicas. Default 20.
      window, batch_size: feed-forward nets: trained frames per window and windows per replica batch. Defaults
        16, 32.
      optimizer: "sgd" (momentum, as in the paper) or "adam". Default "sgd".
      momentum: SGD momentum. Default 0.9.
      lr_initial, lr_final: the learning rate decays exponentially from `lr_initial` at step 0 to `lr_final` at the
        last step. Defaults 0.05, 0.0005 (SGD on the frame-averaged loss).
      clip_norm: clip the (global, all-reduced) gradient to this global norm — the paper's gradient down-scaling;
        0 disables it. Default 5.0.
      epochs: passes over the training data. Default 10. steps: if > 0, train this many steps instead (crossing
        epochs as needed). Default 0.
      checkpoint_every: also checkpoint every this many steps (epoch ends always checkpoint). Default 500.
      keep_checkpoints: how many step checkpoints to keep. Default 3.
      log_every: steps between TensorBoard scalar points. Default 50.
      dev_batch_size: utterances per dev batch. Default 8.
      mixed_precision: float16 compute with dynamic loss scaling (meant for GPUs). Default False.
      augment: on-the-fly data augmentation (`crnn_tf.data.augment.AugmentConfig`; a dict is converted). Waveform
        perturbations need audio-mode training data. Default none.
      seed: seeds initialisation, data order and augmentation. Default 0.
      deterministic: `tf.config.experimental.enable_op_determinism()` (bit-exact reruns on the same machine, slower).
        Default False.
      on_nan: "stop" (raise, naming step and batch) or "skip" (drop the update of a non-finite batch). Default "stop".
      progress: show a progress bar. Default True.
      steps_per_epoch, total_steps: filled in by the trainer (0 = not yet counted).
      train_manifest_hash, dev_manifest_hash: SHA-256 of the manifests, filled in by the trainer.
    """

    model_spec: str
    train_data: str
    dev_data: str = ""
    model_dir: str = ""
    strategy: str = "default"
    cpu_devices: int = 0
    num_bands: int = 31
    num_streams: int = 3
    feature_dim: int = 93
    num_targets: int = 5529
    context: int = 5
    dropout: float = 0.0
    label_smoothing: float = 0.0
    chunk_length: int = 15
    chunk_overlap: int = 5
    label_delay: int = 5
    mask_overlap: bool = True
    chunks_per_replica: int = 20
    window: int = 16
    batch_size: int = 32
    optimizer: str = "sgd"
    momentum: float = 0.9
    lr_initial: float = 0.05
    lr_final: float = 0.0005
    clip_norm: float = 5.0
    epochs: int = 10
    steps: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 50
    dev_batch_size: int = 8
    mixed_precision: bool = False
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    seed: int = 0
    deterministic: bool = False
    on_nan: str = "stop"
    progress: bool = True
    steps_per_epoch: int = 0
    total_steps: int = 0
    train_manifest_hash: str = ""
    dev_manifest_hash: str = ""

    def __post_init__(self):
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig.from_dict(self.augment)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r}; expected one of {STRATEGIES}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}; expected one of {OPTIMIZERS}")
        if self.on_nan not in NAN_POLICIES:
            raise ValueError(f"on_nan={self.on_nan!r}; expected one of {NAN_POLICIES}")
        check_dropout(self.dropout)
        check_label_smoothing(self.label_smoothing)
        if not 0 < self.lr_final <= self.lr_initial:
            raise ValueError(f"need 0 < lr_final ≤ lr_initial, got {self.lr_final}, {self.lr_initial}")
        if self.epochs < 1 and self.steps < 1:
            raise ValueError("set epochs ≥ 1 or steps ≥ 1")
        for name in ("chunks_per_replica", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every",
                     "dev_batch_size", "chunk_length", "window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        check_chunking(self.chunk_length, self.chunk_overlap, self.label_delay)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {"version": CONFIG_VERSION, **dataclasses.asdict(self), "augment": self.augment.to_dict()}

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Inverse of `to_dict`; raises ValueError on unknown keys (a config from a newer version)."""
        values = dict(values)
        version = values.pop("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ValueError(f"train config version {version} is not supported (expected {CONFIG_VERSION})")
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown train config keys: {sorted(unknown)}")
        return cls(**values)

    def save(self, model_dir: str | None = None) -> str:
        """Writes `train_config.json` into `model_dir` (default `self.model_dir`) atomically; returns its path."""
        path = os.path.join(model_dir or self.model_dir, CONFIG_NAME)
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path + ".tmp", "w") as f:
            f.write(json.dumps(self.to_dict(), indent=2, sort_keys=True))
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
        return path

    @classmethod
    def load(cls, model_dir: str) -> "TrainConfig":
        """Reads `model_dir/train_config.json`.

        Raises:
          FileNotFoundError: there is none. ValueError: naming the file, when it is not JSON or holds settings this
            version does not know (a model dir written by another version of crnn_tf) or refuses.
        """
        path = os.path.join(model_dir, CONFIG_NAME)
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"no {CONFIG_NAME} in {model_dir}: not a crnn-train model dir")
        with tf.io.gfile.GFile(path) as f:
            text = f.read()
        try:
            return cls.from_dict(json.loads(text))
        except ValueError as error:  # json.JSONDecodeError is one too
            raise ValueError(f"{path}: {error}") from error

    def check_resumable(self, saved: "TrainConfig") -> None:
        """Raises ValueError if this run cannot continue `saved` (the config found in the model dir).

        A changed number of epochs/steps is refused too: the learning-rate schedule spans the whole run.
        """
        changed = [name for name in _STRUCTURAL + ("epochs", "steps")
                   if getattr(self, name) != getattr(saved, name)]
        if changed:
            details = ", ".join(f"{n}: {getattr(saved, n)!r} → {getattr(self, n)!r}" for n in changed)
            raise ValueError(f"{self.model_dir} holds a run with different settings ({details}); "
                             "use a new --model_dir or the original flags")

    @property
    def is_recurrent(self) -> bool:
        """True when the net's first block is recurrent (trained on chunks), False for feed-forward-first nets."""
        from crnn_tf.models.spec import FEED_FORWARD_KINDS, parse_spec

        return parse_spec(self.model_spec)[0].kind not in FEED_FORWARD_KINDS

    @property
    def output_delay(self) -> int:
        """Frames by which the net's outputs lag its labels: `label_delay` for recurrent nets (trained on delayed
        chunks), 0 for feed-forward nets (trained on centred context windows). Evaluation and export undo this."""
        return self.label_delay if self.is_recurrent else 0
