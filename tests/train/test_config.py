"""TrainConfig serialisation/validation and the learning-rate schedule."""
import json
import math

import pytest
import tensorflow as tf

from crnn_tf.train.config import TrainConfig
from crnn_tf.train.schedules import StepDecay, exponential_decay


def test_config_roundtrip_and_save(tmp_path):
    config = TrainConfig("Lstm16P8", "data/train", model_dir=str(tmp_path), strategy="mirrored", epochs=3,
                         dropout=0.25)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    config.save()
    assert TrainConfig.load(str(tmp_path)) == config and TrainConfig.load(str(tmp_path)).dropout == 0.25
    older = {key: value for key, value in config.to_dict().items() if key != "dropout"}  # before dropout existed
    assert TrainConfig.from_dict(older).dropout == 0.0
    assert config.is_recurrent and not TrainConfig("2xReLU32", "x").is_recurrent
    assert config.output_delay == 5 and TrainConfig("2xReLU32", "x", label_delay=5).output_delay == 0


@pytest.mark.parametrize("changes, message", [
    ({"strategy": "horovod"}, "strategy"), ({"optimizer": "rmsprop"}, "optimizer"),
    ({"lr_final": 1.0, "lr_initial": 0.1}, "lr_final"), ({"chunks_per_replica": 0}, "chunks_per_replica"),
    ({"on_nan": "ignore"}, "on_nan"), ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"), ({"dropout": math.nan}, r"dropout must be in \[0, 1\)"),
    ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
    ({"label_smoothing": -0.1}, r"label_smoothing must be in \[0, 1\)"),
    ({"label_smoothing": math.nan}, r"label_smoothing must be in \[0, 1\)"),
    ({"chunk_length": 10, "chunk_overlap": 10}, r"need 0 ≤ chunk_overlap < chunk_length, got 10, 10"),
    ({"chunk_overlap": -1}, "chunk_overlap"), ({"label_delay": -1}, "label_delay must be ≥ 0, got -1"),
])
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig("Lstm16", "x", **changes)


def test_unknown_keys_and_resume_mismatch():
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"model_spec": "Lstm16", "train_data": "x", "learning_speed": 1})
    saved = TrainConfig("Lstm16", "x", model_dir="m")
    with pytest.raises(ValueError, match="model_spec"):
        saved.replace(model_spec="Lstm32").check_resumable(saved)
    saved.replace(log_every=7).check_resumable(saved)  # cosmetic changes are fine
    # Settings that move the data position a checkpoint records (batches of one seeded order) are refused too.
    for change in ({"seed": 1}, {"chunks_per_replica": 40}, {"batch_size": 64}, {"mask_overlap": False},
                   {"dropout": 0.1}):  # dropout layers move the positions by which checkpoints find the layers
        name = next(iter(change))
        with pytest.raises(ValueError, match=f"{name}: .* → "):
            saved.replace(**change).check_resumable(saved)


def test_loading_a_config_this_version_cannot_read_names_the_file(tmp_path):
    config = TrainConfig("Lstm16P8", "data/train", model_dir=str(tmp_path))
    path = config.save()
    written = json.loads(open(path).read())
    written["augment"]["retired_option"] = False  # an augmentation another version had
    open(path, "w").write(json.dumps(written))
    with pytest.raises(ValueError, match=r"train_config.json: unknown augmentation settings: \['retired_option'\]"):
        TrainConfig.load(str(tmp_path))
    open(path, "w").write("{not json")
    with pytest.raises(ValueError, match=r"train_config.json: Expecting property name"):
        TrainConfig.load(str(tmp_path))


def test_exponential_decay_endpoints_and_midpoint():
    assert math.isclose(float(exponential_decay(0, 0.1, 0.001, 100)), 0.1, rel_tol=1e-6)
    assert math.isclose(float(exponential_decay(50, 0.1, 0.001, 100)), 0.01, rel_tol=1e-5)
    assert math.isclose(float(exponential_decay(100, 0.1, 0.001, 100)), 0.001, rel_tol=1e-5)
    assert math.isclose(float(exponential_decay(500, 0.1, 0.001, 100)), 0.001, rel_tol=1e-5)
    step = tf.Variable(0, dtype=tf.int64)
    schedule = StepDecay(step, 1.0, 0.25, 10)
    step.assign_add(5)
    assert math.isclose(float(schedule()), 0.5, rel_tol=1e-6)
