"""Training: `TrainConfig`, the distributed training loop, checkpoints and the model dir (see docs/training.md).

Example:
>>> from crnn_tf.train import TrainConfig, train, load_trained_model  # doctest: +SKIP
>>> train(TrainConfig("CLstm384P256+Pool3+Lstm2000P750+3xReLU2000", "prepared/train", dev_data="prepared/dev",
...                   model_dir="exp/clstm"))  # doctest: +SKIP
>>> model, config = load_trained_model("exp/clstm")  # doctest: +SKIP
"""
from crnn_tf.train.checkpoints import load_trained_model
from crnn_tf.train.config import TrainConfig
from crnn_tf.train.loop import Trainer, WorkerFailureError, evaluate, train
from crnn_tf.train.metrics import NonFiniteLossError

__all__ = ["NonFiniteLossError", "TrainConfig", "Trainer", "WorkerFailureError", "evaluate", "load_trained_model",
           "train"]
