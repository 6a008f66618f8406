"""EpochStats: field-wise sums, the metrics it derives, and its round trip through a checkpoint's TrainState."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from crnn_tf.train.checkpoints import EpochStats, TrainState


def test_sums_field_by_field():
    total = EpochStats()
    for step in [EpochStats(loss_sum=2.0, frames=10.0, correct_frames=4.0, seconds=0.5),
                 EpochStats(skipped_batches=1.0, seconds=0.25),
                 EpochStats(loss_sum=1.0, frames=30.0, correct_frames=26.0, seconds=0.25)]:
        total += step
    assert total == EpochStats(loss_sum=3.0, frames=40.0, correct_frames=30.0, skipped_batches=1.0, seconds=1.0)
    assert (total.mean_loss, total.frame_accuracy, total.frames_per_second) == (0.075, 0.75, 40.0)


def test_an_empty_epoch_has_zero_metrics_not_a_division_error():
    empty = EpochStats()
    assert (empty.mean_loss, empty.frame_accuracy, empty.frames_per_second) == (0.0, 0.0, 0.0)


def test_checkpoint_variable_holds_every_field_in_order(tmp_path):
    stats = EpochStats(loss_sum=12.5, frames=100.0, correct_frames=61.0, skipped_batches=2.0, seconds=3.25)
    state = TrainState()
    assert state.epoch_stats.shape == (len(dataclasses.fields(EpochStats)),)
    state.epoch_stats.assign(stats.to_array())
    path = tf.train.Checkpoint(**state.trackables()).save(str(tmp_path / "ckpt"))
    restored = TrainState()
    tf.train.Checkpoint(**restored.trackables()).restore(path).assert_consumed()
    assert EpochStats.from_array(restored.epoch_stats.numpy()) == stats
    np.testing.assert_array_equal(stats.to_array(), [12.5, 100.0, 61.0, 2.0, 3.25])


@pytest.mark.parametrize("shape", [(4,), (6,), (5, 1)], ids=["too_few", "too_many", "not_a_vector"])
def test_from_array_rejects_a_wrong_layout(shape):
    with pytest.raises(ValueError, match="5 numbers"):
        EpochStats.from_array(np.zeros(shape))
