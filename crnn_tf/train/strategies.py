"""tf.distribute strategies for `--strategy`, the cluster roles of TF_CONFIG, and CPU logical devices.

* default: one device (the first GPU if any, else the CPU).
* mirrored: synchronous data parallelism over the local GPUs (or, with `cpu_devices`, logical CPU devices).
* multi_worker: synchronous `MultiWorkerMirroredStrategy` over the TF_CONFIG cluster's `worker` tasks (worker 0,
  or a `chief` task, is the chief). Every worker runs the same training command.
* parameter_server: asynchronous SGD with `ParameterServerStrategy`: the `chief` runs the training loop and
  dispatches steps to `worker` tasks through a `ClusterCoordinator`; `ps` tasks hold the (unsharded) variables.
  `ps` and `worker` tasks only run a TF server (`run_server`).

TF's gRPC servers bind the wildcard address: give TF_CONFIG loopback or private addresses only.
"""
import json
import os

import tensorflow as tf
from absl import logging

from crnn_tf.train.config import STRATEGIES


def configure_cpu_devices(count: int) -> None:
    """Splits the (first) physical CPU into `count` logical devices, so MirroredStrategy can run on a CPU host.

    Must run before TensorFlow initialises its devices (before any op or strategy is created).

    Raises:
      RuntimeError: TensorFlow is already initialised with a different device layout.
    """
    if count < 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        raise RuntimeError(f"cannot split the CPU into {count} logical devices: TensorFlow is already initialised "
                           "(configure devices first thing, before any TF op)") from error


def tf_config() -> dict:
    """The parsed TF_CONFIG environment variable ({} when unset)."""
    text = os.environ.get("TF_CONFIG", "")
    return json.loads(text) if text else {}


def task_role() -> tuple[str | None, int]:
    """`(task type, task index)` from TF_CONFIG, or `(None, 0)` for a single process."""
    task = tf_config().get("task", {})
    return task.get("type"), int(task.get("index", 0))


def is_chief() -> bool:
    """True for the process that writes the model dir: the `chief` task, else worker 0, else a single process."""
    task_type, index = task_role()
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and index == 0 and "chief" not in tf_config().get("cluster", {})


def run_server() -> None:
    """Runs this process's TF server forever: the job of `ps` and `worker` tasks under parameter_server."""
    task_type, index = task_role()
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    logging.info("parameter_server: %s %d serving at %s", task_type, index,
                 resolver.cluster_spec().task_address(task_type, index))
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=task_type, task_index=index,
                                  protocol=resolver.rpc_layer or "grpc", start=True)
    server.join()


def _require_tf_config(name: str, needed: tuple[str, ...]) -> None:
    cluster = tf_config().get("cluster", {})
    missing = [job for job in needed if not cluster.get(job)]
    if missing:
        raise ValueError(f"--strategy={name} needs TF_CONFIG with {', '.join(needed)} tasks (missing: {missing}); "
                         "see docs/training.md")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute.Strategy` for `--strategy=name` (TF_CONFIG for the cluster ones).

    Under parameter_server this must run in the chief; ps/worker tasks call `run_server` instead.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r}; expected one of {STRATEGIES}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        # On CPUs, NCCL is absent: reduce through the host.
        cross_device = None if gpus else tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=cross_device)
    if name == "multi_worker":
        _require_tf_config(name, ("worker",))
        # MWMS checks peers' health in the background; a dead worker aborts the collectives with an error instead of
        # hanging, which the trainer turns into a loud failure (the job resumes from the last checkpoint).
        return tf.distribute.MultiWorkerMirroredStrategy()
    _require_tf_config(name, ("chief", "worker", "ps"))
    task_type, _ = task_role()
    if task_type != "chief":
        raise ValueError(f"parameter_server: only the chief runs the training loop (this task is {task_type}); "
                         "ps and worker tasks run strategies.run_server()")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    # No variable partitioner: Keras 3 cannot take gradients through ShardedVariable.
    return tf.distribute.ParameterServerStrategy(resolver)
