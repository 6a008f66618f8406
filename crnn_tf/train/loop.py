"""The training loop: one replica step for every tf.distribute strategy.

A step, in each replica (`strategy.run`):
  1. all-reduce the replica's frame weight: the global number of labelled frames W of the global batch;
  2. loss = Σ weight · CE(logits, label) / W — `tf.nn.compute_average_loss` with the global batch measured in
     frames, so chunks with more labelled frames count more and the replica losses sum to the global mean;
  3. gradients, all-reduced by SUM here (not by the optimizer), so the global norm is that of the true global
     gradient: clip to `clip_norm` (the paper's gradient down-scaling), then apply only if loss and norm are
     finite (the optimizer is told not to all-reduce again, see `make_optimizer`);
  4. advance the step counter, a plain `tf.Variable` (under async PS, Keras' `optimizer.iterations` undercounts).

Synchronous strategies (default, mirrored, multi_worker) feed global batches through
`experimental_distribute_dataset`; every epoch's data order is a function of `seed + epoch`, so a checkpoint's
`(epoch, step_in_epoch)` is the exact data position and a restart skips the batches already trained.
`parameter_server` schedules the same step on workers through a `ClusterCoordinator` (asynchronous SGD); each worker
reads its own shard of the data, repeated, and the chief schedules `steps_per_epoch` steps per epoch (there, the
data position after a restart is approximate: async SGD is not reproducible anyway).
"""
import hashlib
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from crnn_tf.data import pipelines
from crnn_tf.data.tfrecords import MANIFEST_NAME, read_manifest
from crnn_tf.train import checkpoints, strategies
from crnn_tf.train.checkpoints import EpochStats
from crnn_tf.train.config import TrainConfig
from crnn_tf.train.metrics import NonFiniteLossError, Reporter
from crnn_tf.train.schedules import StepDecay, exponential_decay

SUM = tf.distribute.ReduceOp.SUM
# Errors by which TF reports a lost peer (dead worker or PS) in cluster training.
_CLUSTER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                   tf.errors.AbortedError)
_LOSS_SCALE_GROWTH_STEPS = 2000


class WorkerFailureError(RuntimeError):
    """A peer of a cluster run died; restart every task with the same command to resume."""


class _PreReducedGradients:
    """Optimizer mixin: the train step hands in gradients that are already all-reduced (and clipped).

    Keras 3's TF optimizer sums gradients over replicas inside `apply`; the train step needs the global gradient
    before that (to clip by its global norm and to skip non-finite updates consistently on every replica), so the
    optimizer's own reduction is switched off.
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


class _SGD(_PreReducedGradients, keras.optimizers.SGD):
    pass


class _Adam(_PreReducedGradients, keras.optimizers.Adam):
    pass


def make_optimizer(config: TrainConfig, learning_rate):
    """The run's optimizer (create it in the strategy's scope).

    Args:
      config: `TrainConfig` (optimizer, momentum).
      learning_rate: float or zero-argument callable (`StepDecay`).
    """
    if keras.backend.backend() != "tensorflow" or not hasattr(keras.optimizers.SGD, "_all_reduce_sum_gradients"):
        raise RuntimeError("crnn_tf.train needs Keras 3 on the TensorFlow backend (KERAS_BACKEND=tensorflow) with "
                           "TFOptimizer._all_reduce_sum_gradients (keras 3.15)")
    if config.optimizer == "sgd":
        return _SGD(learning_rate, momentum=config.momentum)
    return _Adam(learning_rate)


def frame_cross_entropy(labels, logits, label_smoothing: float = 0.0):
    """Per-frame cross-entropy `[...]` of `logits [..., K]` against integer `labels [...]`, with label smoothing.

    The target is (1 - ε)·one-hot(label) + ε/K everywhere, so the loss is (1 - ε)·(-log p_label) + ε·mean_k(-log p_k).
    With ε = 0 it is exactly `tf.nn.sparse_softmax_cross_entropy_with_logits`.

    Example:
    >>> logits = tf.constant([[2.0, 0.0, 0.0]])
    >>> round(float(frame_cross_entropy(tf.constant([0]), logits)[0]), 4)
    0.2395
    >>> round(float(frame_cross_entropy(tf.constant([0]), logits, 0.3)[0]), 4)
    0.6395
    """
    if not label_smoothing:
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    log_probs = tf.nn.log_softmax(logits)
    picked = tf.gather(log_probs, labels, batch_dims=len(labels.shape))
    return -(1.0 - label_smoothing) * picked - label_smoothing * tf.reduce_mean(log_probs, -1)


def manifest_hash(path: str) -> str:
    """SHA-256 of a manifest.json (given it or its directory)."""
    manifest = read_manifest(path)
    with tf.io.gfile.GFile(os.path.join(manifest.directory, MANIFEST_NAME), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def train_dataset(config: TrainConfig, manifest, *, epoch: int, batch_size: int, input_context=None,
                  repeat: bool = False) -> tf.data.Dataset:
    """The training pipeline of one epoch: chunks (recurrent nets) or context windows (feed-forward nets).

    Args:
      config: `TrainConfig`. manifest: training `Manifest`.
      epoch: seeds the order (`config.seed + epoch`), so each epoch is reproducible on its own.
      batch_size: chunks/windows per batch (the global batch for synchronous strategies).
      input_context, repeat: passed to the pipeline. Defaults None, False.
    """
    common = dict(shuffle=True, seed=config.seed + epoch, input_context=input_context, repeat=repeat,
                  augment=config.augment)
    if config.is_recurrent:
        return pipelines.recurrent_dataset(
            manifest, chunk_length=config.chunk_length, chunk_overlap=config.chunk_overlap,
            label_delay=config.label_delay, chunks_per_replica=batch_size, mask_overlap=config.mask_overlap,
            **common)
    return pipelines.feedforward_dataset(manifest, window=config.window, context=config.context,
                                         batch_size=batch_size, **common)


def count_batches(dataset: tf.data.Dataset) -> int:
    """Number of elements of a finite dataset (one pass)."""
    return int(dataset.reduce(np.int64(0), lambda count, _: count + 1))


def _pad_batch(batch_size: int):
    """Pads a short last batch with weight-0 rows to `batch_size`: every replica then gets a full, static batch."""

    def pad(features, labels, weights):
        missing = batch_size - tf.shape(features)[0]

        def extend(x):
            return tf.concat([x, tf.zeros(tf.concat([[missing], tf.shape(x)[1:]], 0), x.dtype)], 0)

        return tuple(tf.ensure_shape(extend(x), [batch_size] + x.shape[1:]) for x in (features, labels, weights))

    return pad


def eval_sums_fn(model):
    """A tf.function `(features, lengths, labels, weights) → [Σ CE·w, Σ w, Σ correct·w, Σ majority·w]` for one
    `eval_dataset` batch; build it once per model (one trace serves every batch shape).

    Padding past an utterance's end repeats its last frame (as in training) and has weight 0.
    """
    spec = [tf.TensorSpec([None, None, model.input_shape[-1]], tf.float32), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([], tf.int32)]

    @tf.function(input_signature=spec)
    def batch_sums(features, lengths, labels, weights, majority_label):
        positions = tf.minimum(tf.range(tf.shape(features)[1])[None, :], lengths[:, None] - 1)
        logits = tf.cast(model(tf.gather(features, positions, batch_dims=1), training=False), tf.float32)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
        majority = tf.cast(tf.equal(labels, majority_label), tf.float32)
        return tf.stack([tf.reduce_sum(ce * weights), tf.reduce_sum(weights), tf.reduce_sum(correct * weights),
                         tf.reduce_sum(majority * weights)])

    return batch_sums


def evaluate(model, dataset: tf.data.Dataset, *, majority_label: int | None = None, sums_fn=None) -> dict:
    """Frame accuracy and cross-entropy of `model` on an `eval_dataset` (whole utterances).

    Args:
      model: features → logits.
      dataset: `crnn_tf.data.pipelines.eval_dataset` (with the run's `output_delay`).
      majority_label: if given, also report the frame rate of this label ("majority-class rate"). Default None.
      sums_fn: `eval_sums_fn(model)`, to reuse its trace across calls. Default: built here.

    Returns:
      `{"loss", "frame_accuracy", "frames"[, "majority_rate"]}`.
    """
    sums_fn = sums_fn or eval_sums_fn(model)
    totals = np.zeros(4)
    for batch in dataset:
        totals += sums_fn(batch["features"], batch["lengths"], batch["labels"], batch["weights"],
                          tf.constant(-1 if majority_label is None else majority_label, tf.int32)).numpy()
    frames = max(totals[1], 1.0)
    out = {"loss": totals[0] / frames, "frame_accuracy": totals[2] / frames, "frames": float(totals[1])}
    if majority_label is not None:
        out["majority_rate"] = totals[3] / frames
    return out


class Trainer:
    """Trains `config.model_spec` on `config.train_data` into `config.model_dir` (see the module docstring).

    Args:
      config: `TrainConfig`. Geometry (feature_dim, num_targets, num_bands, num_streams) is taken from the
        training manifest; step counts are counted on first use and then frozen in `train_config.json`.
    """

    def __init__(self, config: TrainConfig):
        if not config.model_dir:
            raise ValueError("TrainConfig.model_dir is empty")
        if config.cpu_devices:
            strategies.configure_cpu_devices(config.cpu_devices)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(config.seed)
        if config.mixed_precision and not tf.config.list_physical_devices("GPU"):
            logging.warning("--mixed_precision without a GPU: float16 on a CPU is slow")
        self.strategy = strategies.make_strategy(config.strategy)
        self.async_ps = config.strategy == "parameter_server"
        self.chief = strategies.is_chief()
        self.manifest = read_manifest(config.train_data)
        self.dev_manifest = read_manifest(config.dev_data) if config.dev_data else None
        self.config = self._complete_config(config)
        config = self.config
        self.prior_counts = self._prior_counts()
        self.global_batch = (config.chunks_per_replica if config.is_recurrent else config.batch_size) \
            * self.strategy.num_replicas_in_sync
        if self.chief:
            config.save()
            checkpoints.write_side_files(config.model_dir, self.manifest.feature_config, self.prior_counts,
                                         self.manifest.global_cmvn_stats)

        with self.strategy.scope():
            self.model = checkpoints.build_model(config, mixed_precision=config.mixed_precision)
            self.state = checkpoints.TrainState()
            self.optimizer = make_optimizer(config, StepDecay(self.state.step, config.lr_initial, config.lr_final,
                                                              config.total_steps))
            self.optimizer.build(self.model.trainable_variables)
            if config.mixed_precision:
                self.loss_scale = tf.Variable(2.0 ** 15, trainable=False, name="loss_scale",
                                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="good_steps",
                                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.checkpointer = checkpoints.Checkpointer(config.model_dir, self.model, self.optimizer, self.state,
                                                     keep=config.keep_checkpoints, chief=self.chief)
        self.reporter = Reporter(config.model_dir, config.steps_per_epoch, log_every=config.log_every,
                                 progress=config.progress, active=self.chief)
        self._last_checkpoint = None
        self._eval_sums = eval_sums_fn(self.model)

    # ----------------------------------------------------------------------------------------------- setup
    def _complete_config(self, config: TrainConfig) -> TrainConfig:
        """Fills geometry and hashes from the manifests; adopts (after checking) a model dir's saved config."""
        fc = self.manifest.feature_config
        if self.manifest.num_targets < 1:
            raise ValueError(f"{config.train_data}: prepared without alignments; training needs labels")
        if self.manifest.feature_dim != fc.feature_dim:
            raise ValueError(f"{config.train_data}: feature_dim {self.manifest.feature_dim} ≠ the feature config's "
                             f"{fc.feature_dim}")
        config = config.replace(num_bands=fc.num_bands, num_streams=fc.num_streams,
                                feature_dim=self.manifest.feature_dim, num_targets=self.manifest.num_targets,
                                train_manifest_hash=manifest_hash(config.train_data),
                                dev_manifest_hash=manifest_hash(config.dev_data) if config.dev_data else "")
        if self.dev_manifest is not None and self.dev_manifest.feature_dim != config.feature_dim:
            raise ValueError(f"dev data has feature_dim {self.dev_manifest.feature_dim}, train data "
                             f"{config.feature_dim}")
        saved_path = os.path.join(config.model_dir, "train_config.json")
        if tf.io.gfile.exists(saved_path):
            saved = TrainConfig.load(config.model_dir)
            config.check_resumable(saved)
            return config.replace(steps_per_epoch=saved.steps_per_epoch, total_steps=saved.total_steps)
        # Synchronous strategies step over global batches, parameter_server over one replica batch per step.
        batch = (config.chunks_per_replica if config.is_recurrent else config.batch_size) \
            * self.strategy.num_replicas_in_sync
        steps_per_epoch = count_batches(train_dataset(config, self.manifest, epoch=0, batch_size=batch))
        total = config.steps if config.steps > 0 else config.epochs * steps_per_epoch
        logging.info("%d steps per epoch of %d %s; %d steps in all", steps_per_epoch, batch,
                     "chunks" if config.is_recurrent else "windows", total)
        return config.replace(steps_per_epoch=steps_per_epoch, total_steps=total)

    def _prior_counts(self) -> np.ndarray:
        counts = self.manifest.prior_counts
        if counts is None:  # older manifests: count the training labels
            counts = np.zeros(self.config.num_targets)
            for ex in pipelines.utterance_dataset(self.manifest):
                counts += np.bincount(ex["labels"].numpy(), minlength=self.config.num_targets)
        return counts

    # -------------------------------------------------------------------------------------------- the step
    def _replica_step(self, features, labels, weights):
        config, model = self.config, self.model
        variables = model.trainable_variables
        ctx = tf.distribute.get_replica_context()
        step = self.state.step.read_value()
        frames = ctx.all_reduce(SUM, tf.reduce_sum(weights))
        with tf.GradientTape() as tape:
            logits = tf.cast(model(features, training=True), tf.float32)
            per_frame = frame_cross_entropy(labels, logits, config.label_smoothing)
            loss = tf.reduce_sum(per_frame * weights) / tf.maximum(frames, 1.0)
            scaled_loss = loss * self.loss_scale if config.mixed_precision else loss
        grads = ctx.all_reduce(SUM, tape.gradient(scaled_loss, variables))
        if config.mixed_precision:
            grads = [g / self.loss_scale for g in grads]
        loss = ctx.all_reduce(SUM, loss)
        grad_norm = tf.linalg.global_norm(grads)
        finite = tf.math.is_finite(loss) & tf.math.is_finite(grad_norm)
        if config.clip_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, config.clip_norm, use_norm=grad_norm)
        self._apply_if(finite, grads, variables)
        if config.mixed_precision:
            self._update_loss_scale(finite)
        self.state.step.assign_add(1)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
        correct = ctx.all_reduce(SUM, tf.reduce_sum(correct * weights))
        return {"loss": loss, "frames": frames, "correct": correct, "grad_norm": grad_norm, "finite": finite,
                "step": step}

    def _apply_if(self, finite, grads, variables):
        """Applies `grads` when `finite`, identically on every replica."""

        def apply():
            self.optimizer.apply(grads, variables)
            return tf.constant(True)

        if tf.__internal__.distribute.strategy_supports_no_merge_call():
            tf.cond(finite, apply, lambda: tf.constant(False))
            return

        # The optimizer's update uses merge_call, which cannot sit in a replica-context cond: branch in
        # cross-replica context (the pattern of keras' LossScaleOptimizer). `finite` is equal on all replicas.
        def cross_replica(distribution, finite, grads):
            def apply_all():
                distribution.extended.call_for_each_replica(lambda g: self.optimizer.apply(g, variables),
                                                            args=(grads,))
                return tf.constant(True)

            return tf.cond(distribution.experimental_local_results(finite)[0], apply_all,
                           lambda: tf.constant(False))

        ctx = tf.distribute.get_replica_context()
        ctx.merge_call(cross_replica, args=(finite, grads))

    def _update_loss_scale(self, finite):
        """Dynamic loss scaling: halve on overflow, double after `_LOSS_SCALE_GROWTH_STEPS` finite steps."""
        good = tf.where(finite, self.good_steps + 1, 0)
        grow = good >= _LOSS_SCALE_GROWTH_STEPS
        self.loss_scale.assign(tf.where(finite, tf.where(grow, self.loss_scale * 2.0, self.loss_scale),
                                        self.loss_scale / 2.0))
        self.good_steps.assign(tf.where(grow, tf.zeros_like(good), good))

    def _local(self, results) -> dict:
        """Per-replica step results (equal on every replica) → Python numbers."""
        return {k: np.asarray(self.strategy.experimental_local_results(v)[0]).item() for k, v in results.items()}

    # -------------------------------------------------------------------------------------------- the loop
    def run(self) -> dict:
        """Trains to `total_steps` (resuming from the model dir's latest checkpoint); returns the last epoch's
        metrics record (or {} when the run had already finished)."""
        self._last_checkpoint = self.checkpointer.restore_latest()
        try:
            if int(self.state.step.numpy()) >= self.config.total_steps:
                finished_epochs, num_epochs = self._epoch_bounds()
                if finished_epochs < num_epochs:
                    # Killed after the last step's checkpoint, before the last epoch's end: do that end now (dev
                    # evaluation, best/, metrics line), or the run would lack its last epoch's bookkeeping.
                    return self._end_epoch(num_epochs - 1, EpochStats.from_array(self.state.epoch_stats.numpy()))
                logging.info("%s: already trained %d steps", self.config.model_dir, self.config.total_steps)
                return {}
            return self._run_async() if self.async_ps else self._run_sync()
        except _CLUSTER_ERRORS as error:
            if self.config.strategy in ("multi_worker", "parameter_server"):
                raise WorkerFailureError(
                    f"{self.config.strategy}: lost a peer near step {int(self.state.step.numpy())} "
                    f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). Training stopped; "
                    f"restart every task with the same command to resume from {self._last_checkpoint or 'scratch'}"
                ) from error
            raise
        finally:
            self.checkpointer.close()

    def _epoch_bounds(self):
        config = self.config
        num_epochs = math.ceil(config.total_steps / config.steps_per_epoch)
        return int(self.state.epoch.numpy()), num_epochs

    def step_function(self):
        """The synchronous strategies' `tf.function`: one distributed batch → per-replica step results."""
        return tf.function(lambda batch: self.strategy.run(self._replica_step, args=batch))

    def distributed_batches(self, epoch: int, skip: int = 0):
        """The global batches of `epoch` after the first `skip`, padded to full size and distributed."""
        options = tf.data.Options()
        # Every worker builds the same global batches and keeps its replicas' slices of each.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = train_dataset(self.config, self.manifest, epoch=epoch, batch_size=self.global_batch)
        if self.config.augment.speed_factors:
            # Speed perturbation makes each epoch's length vary a little; every epoch takes exactly the counted
            # number of steps (the learning-rate schedule and resume positions are in steps).
            dataset = dataset.repeat().take(self.config.steps_per_epoch)
        dataset = dataset.skip(skip).map(_pad_batch(self.global_batch)).with_options(options)
        return self.strategy.experimental_distribute_dataset(dataset)

    def _run_sync(self) -> dict:
        config = self.config
        step_fn = self.step_function()
        record = {}
        start_epoch, num_epochs = self._epoch_bounds()
        for epoch in range(start_epoch, num_epochs):
            done_in_epoch = int(self.state.step_in_epoch.numpy())
            stats = EpochStats.from_array(self.state.epoch_stats.numpy())
            self.reporter.start_epoch(epoch, done_in_epoch)
            for batch in self.distributed_batches(epoch, done_in_epoch):
                started = time.perf_counter()
                values = self._local(step_fn(batch))
                stats += self._account(values, epoch, done_in_epoch, time.perf_counter() - started)
                done_in_epoch += 1
                self._after_step(values, epoch, done_in_epoch, stats)
                if values["step"] + 1 >= config.total_steps:
                    break
            record = self._end_epoch(epoch, stats)
            if int(self.state.step.numpy()) >= config.total_steps:
                break
        return record

    def _run_async(self) -> dict:
        config, strategy = self.config, self.strategy
        coordinator = tf.distribute.experimental.coordinator.ClusterCoordinator(strategy)
        num_workers = len(strategies.tf_config()["cluster"]["worker"])
        with strategy.scope():
            # Hands each worker's dataset function a distinct shard index (the coordinator gives it none).
            shard_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="shard_counter")

        def dataset_fn():
            index = (shard_counter.assign_add(1) - 1) % num_workers
            context = tf.distribute.InputContext(num_input_pipelines=num_workers, input_pipeline_id=index)
            return train_dataset(config, self.manifest, epoch=0, batch_size=config.chunks_per_replica
                                 if config.is_recurrent else config.batch_size, input_context=context, repeat=True)

        iterator = iter(coordinator.create_per_worker_dataset(dataset_fn))

        @tf.function
        def worker_step(iterator):
            return strategy.run(self._replica_step, args=next(iterator))

        record = {}
        start_epoch, num_epochs = self._epoch_bounds()
        for epoch in range(start_epoch, num_epochs):
            scheduled = int(self.state.step_in_epoch.numpy())
            stats = EpochStats.from_array(self.state.epoch_stats.numpy())
            self.reporter.start_epoch(epoch, scheduled)
            end = min(config.steps_per_epoch, scheduled + config.total_steps - int(self.state.step.numpy()))
            while scheduled < end:
                # Schedule up to the next checkpoint, then wait for the workers: a checkpoint only ever holds
                # finished steps.
                batch = min(end - scheduled, config.checkpoint_every - scheduled % config.checkpoint_every)
                started = time.perf_counter()
                pending = [coordinator.schedule(worker_step, args=(iterator,)) for _ in range(batch)]
                coordinator.join()
                seconds = (time.perf_counter() - started) / batch
                for remote in pending:
                    values = self._local(remote.fetch())
                    stats += self._account(values, epoch, scheduled, seconds)
                    scheduled += 1
                    self._after_step(values, epoch, scheduled, stats, save=False)
                self._save(stats, epoch, scheduled)
            record = self._end_epoch(epoch, stats)
        return record

    def _account(self, values: dict, epoch: int, index: int, seconds: float) -> EpochStats:
        """Checks a step's results (NaN policy); returns its contribution to the epoch statistics."""
        if not values["finite"]:
            overflow = self.config.mixed_precision and math.isfinite(values["loss"])
            if not overflow and self.config.on_nan == "stop":
                raise NonFiniteLossError(
                    f"non-finite training loss at step {values['step']} (epoch {epoch + 1}, batch {index + 1} of "
                    f"the epoch's seeded order, seed {self.config.seed + epoch}): loss={values['loss']}, "
                    f"grad_norm={values['grad_norm']}; the update was not applied. Last checkpoint: "
                    f"{self._last_checkpoint or 'none'}. Use --on_nan=skip to skip such batches")
            if not overflow:
                logging.warning("step %d: non-finite loss %s, batch %d of epoch %d skipped", values["step"],
                                values["loss"], index + 1, epoch + 1)
            return EpochStats(skipped_batches=1.0, seconds=seconds)
        return EpochStats(loss_sum=values["loss"] * values["frames"], frames=values["frames"],
                          correct_frames=values["correct"], seconds=seconds)

    def _after_step(self, values: dict, epoch: int, done_in_epoch: int, stats: EpochStats, save: bool = True):
        config = self.config
        step = values["step"] + 1
        lr = float(exponential_decay(values["step"], config.lr_initial, config.lr_final, config.total_steps))
        if values["finite"]:
            self.reporter.step(step, done_in_epoch, values, lr)
        if save and step % config.checkpoint_every == 0:
            self._save(stats, epoch, done_in_epoch)

    def _save(self, stats: EpochStats, epoch: int, done_in_epoch: int):
        self.state.step_in_epoch.assign(done_in_epoch)
        self.state.epoch.assign(epoch)
        self.state.epoch_stats.assign(stats.to_array())
        self._last_checkpoint = self.checkpointer.save()

    def _end_epoch(self, epoch: int, stats: EpochStats) -> dict:
        """Dev evaluation, best model, epoch-end checkpoint and metrics.jsonl line."""
        config = self.config
        step = int(self.state.step.numpy())
        record = {"epoch": epoch + 1, "step": step, "train_loss": stats.mean_loss,
                  "train_frame_accuracy": stats.frame_accuracy, "train_frames": stats.frames,
                  "skipped_batches": int(stats.skipped_batches), "train_seconds": stats.seconds,
                  "frames_per_second": stats.frames_per_second,
                  "learning_rate": float(exponential_decay(step, config.lr_initial, config.lr_final,
                                                           config.total_steps)),
                  "time": time.time()}
        if self.dev_manifest is not None:
            dev = evaluate(self.model, pipelines.eval_dataset(self.dev_manifest, config.dev_batch_size,
                                                              label_delay=config.output_delay),
                           majority_label=int(np.argmax(self.prior_counts)), sums_fn=self._eval_sums)
            record.update({f"dev_{k}": v for k, v in dev.items()})
            if dev["frame_accuracy"] > self.state.best_accuracy.numpy():
                self.state.best_accuracy.assign(dev["frame_accuracy"])
                self.checkpointer.save_best({"epoch": epoch + 1, "step": step,
                                             "dev_frame_accuracy": dev["frame_accuracy"], "dev_loss": dev["loss"]})
        # The metrics line (like best/) is written before the checkpoint that marks the epoch ended: a kill in
        # between only makes the resumed run redo this epoch end, which replaces the line.
        self.reporter.epoch_end(record)
        self.state.step_in_epoch.assign(0)
        self.state.epoch.assign(epoch + 1)
        self.state.epoch_stats.assign(EpochStats().to_array())
        self._last_checkpoint = self.checkpointer.save()
        logging.info("epoch %d: %s", epoch + 1, {k: round(v, 4) if isinstance(v, float) else v
                                                 for k, v in record.items()})
        return record


def train(config: TrainConfig) -> dict:
    """Runs (or resumes) a training run; returns the last epoch's metrics record. See `Trainer`."""
    return Trainer(config).run()
