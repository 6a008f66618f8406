"""Fixtures of the training tests: a tiny synthetic prepared corpus and subprocess helpers."""
import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.train.synthetic import write_corpus

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLSTM_SPEC = "CLstm8P4W3+Pool3+Lstm16P8+ReLU16"
# Small chunks so an epoch has 25 steps: 40 utterances × 5 chunks / 8.
TRAIN_FLAGS = {"chunks_per_replica": 8, "label_delay": 2, "lr_initial": 0.1, "lr_final": 0.01, "progress": False}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """`{"train", "dev", "nan"}` manifest dirs (40/10/40 utterances of 50 frames, 24 dims, 6 targets)."""
    root = tmp_path_factory.mktemp("corpus")
    return {"train": write_corpus(str(root / "train")), "dev": write_corpus(str(root / "dev"), num_utts=10, seed=1),
            "nan": write_corpus(str(root / "nan"), nan_utterance=7)}


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def subprocess_env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=REPO, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def flag_list(**flags) -> list[str]:
    return [f"--{k}={v}" for k, v in flags.items()]


def train_command(**flags) -> list[str]:
    return [sys.executable, "-m", "tools.train", *flag_list(**flags)]


class Processes:
    """Starts subprocesses in their own process groups and kills every one left at the end."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, env, log_path) -> subprocess.Popen:
        log = open(log_path, "w")
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def kill_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def processes():
    procs = Processes()
    yield procs
    procs.kill_all()
