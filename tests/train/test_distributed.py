"""Multi-device and multi-process training (subprocesses: devices and clusters are per process).

Each test bounds its subprocesses with timeouts and kills every process group it started, pass or fail.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from crnn_tf.train import TrainConfig, load_trained_model, train
from tests.train.conftest import CLSTM_SPEC, REPO, TRAIN_FLAGS, flag_list, free_ports, subprocess_env, train_command


def _wait(proc, timeout, log_path):
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"timed out after {timeout} s; log:\n{open(log_path).read()[-3000:]}")
    assert proc.returncode == 0, open(log_path).read()[-3000:]


def _latest_step(model_dir) -> int:
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return int(path.rsplit("-", 1)[1]) if path else 0


def test_mirrored_over_two_cpu_devices_matches_one_device(corpus, tmp_path):
    result = subprocess.run([sys.executable, "-m", "tests.train.mirrored_check", corpus["train"], str(tmp_path), "8"],
                            cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    print("mirrored vs single device:", numbers)
    assert numbers["max_abs_diff"] < 1e-5 * max(1.0, numbers["max_abs_weight"])


def test_kill9_then_resume_equals_uninterrupted_run(corpus, tmp_path, processes):
    flags = dict(model_spec=CLSTM_SPEC, train_data=corpus["train"], epochs=2, checkpoint_every=3,
                 deterministic=True, **TRAIN_FLAGS)
    reference = TrainConfig(model_dir=str(tmp_path / "reference"), **flags)
    train(reference)

    killed_dir = str(tmp_path / "killed")
    log_path = str(tmp_path / "killed.log")
    proc = processes.start(train_command(model_dir=killed_dir, **flags), subprocess_env(), log_path)
    deadline = time.monotonic() + 90
    while _latest_step(killed_dir) < 6:
        assert proc.poll() is None, "training ended before it could be killed:\n" + open(log_path).read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint in time:\n" + open(log_path).read()[-3000:]
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _latest_step(killed_dir)
    assert proc.returncode == -signal.SIGKILL and killed_at < 50

    record = train(TrainConfig(model_dir=killed_dir, **flags))  # the restart
    assert record["step"] == 50
    expected, _ = load_trained_model(reference.model_dir, "latest")
    resumed, _ = load_trained_model(killed_dir, "latest")
    diff = max(float(np.abs(a - b).max()) for a, b in zip(expected.get_weights(), resumed.get_weights()))
    print(f"killed after checkpoint {killed_at}; max |resumed - uninterrupted| = {diff}")
    assert diff == 0.0
    metrics = [json.loads(line) for line in open(os.path.join(killed_dir, "metrics.jsonl"))]
    reference_metrics = [json.loads(line) for line in open(os.path.join(reference.model_dir, "metrics.jsonl"))]
    for got, want in zip(metrics, reference_metrics):  # epoch statistics survive the kill too
        assert got["train_frames"] == want["train_frames"]
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6)


def _cluster_env(cluster: dict, task_type: str, index: int) -> dict:
    return subprocess_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}}))


def _cluster_flags(corpus, model_dir, strategy, **extra):
    return dict(model_spec=CLSTM_SPEC, train_data=corpus["train"], dev_data=corpus["dev"], model_dir=model_dir,
                strategy=strategy, **dict(TRAIN_FLAGS, **extra))


def test_multi_worker_two_processes_fail_loudly_on_a_dead_worker_and_resume(corpus, tmp_path, processes):
    model_dir = str(tmp_path / "mw")
    flags = _cluster_flags(corpus, model_dir, "multi_worker", chunks_per_replica=4, epochs=2, checkpoint_every=5)

    def start_cluster(tag):
        cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
        return [processes.start(train_command(**flags), _cluster_env(cluster, "worker", i),
                                str(tmp_path / f"w{i}.{tag}.log")) for i in range(2)]

    # Kill worker 1 once a checkpoint exists: worker 0 must stop with WorkerFailureError, not hang.
    started = time.monotonic()
    chief, other = start_cluster("a")
    while _latest_step(model_dir) < 5:
        assert chief.poll() is None and time.monotonic() - started < 120, open(tmp_path / "w0.a.log").read()[-3000:]
        time.sleep(0.05)
    os.killpg(other.pid, signal.SIGKILL)
    killed = time.monotonic()
    chief.wait(timeout=90)
    log = open(tmp_path / "w0.a.log").read()
    assert chief.returncode != 0 and "WorkerFailureError" in log and "restart every task" in log, log[-3000:]
    print(f"multi_worker: dead worker detected after {time.monotonic() - killed:.1f} s")
    interrupted_at = _latest_step(model_dir)
    assert 5 <= interrupted_at < 50

    # Restart both: the run resumes from the last checkpoint and finishes.
    started = time.monotonic()
    for i, proc in enumerate(start_cluster("b")):
        _wait(proc, 120, str(tmp_path / f"w{i}.b.log"))
    print(f"multi_worker: resumed at step {interrupted_at}, finished in {time.monotonic() - started:.1f} s")
    assert f"resumed from {model_dir}/checkpoints/ckpt-{interrupted_at}" in open(tmp_path / "w0.b.log").read()
    assert _latest_step(model_dir) == 50
    model, config = load_trained_model(model_dir, "best")
    assert config.strategy == "multi_worker" and config.steps_per_epoch == 25  # global batch 2 × 4 chunks
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert not any(name.startswith("crnn_train_worker_") for name in os.listdir(model_dir))
    assert len(open(os.path.join(model_dir, "metrics.jsonl")).read().splitlines()) == 2


def test_parameter_server_one_ps_two_workers(corpus, tmp_path, processes):
    ports = free_ports(4)
    cluster = {"chief": [f"127.0.0.1:{ports[0]}"], "worker": [f"127.0.0.1:{p}" for p in ports[1:3]],
               "ps": [f"127.0.0.1:{ports[3]}"]}
    model_dir = str(tmp_path / "ps")
    flags = _cluster_flags(corpus, model_dir, "parameter_server", steps=20, checkpoint_every=10)
    started = time.monotonic()
    for task_type, index in (("ps", 0), ("worker", 0), ("worker", 1)):
        processes.start(train_command(**flags), _cluster_env(cluster, task_type, index),
                        str(tmp_path / f"{task_type}{index}.log"))
    chief_log = str(tmp_path / "chief.log")
    chief = processes.start(train_command(**flags), _cluster_env(cluster, "chief", 0), chief_log)
    _wait(chief, 150, chief_log)
    print(f"parameter_server: 1 ps + 2 workers + chief, 20 steps in {time.monotonic() - started:.1f} s")
    assert _latest_step(model_dir) == 20
    model, _ = load_trained_model(model_dir, "latest")
    assert all(np.isfinite(w).all() for w in model.get_weights())
    record = json.loads(open(chief_log).read().strip().splitlines()[-1])
    assert record["step"] == 20 and record["train_frames"] > 0


def test_cluster_strategy_without_tf_config_fails_clearly(corpus, tmp_path):
    result = subprocess.run(train_command(**_cluster_flags(corpus, str(tmp_path / "x"), "multi_worker", steps=1)),
                            cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "needs TF_CONFIG" in result.stderr
