"""In-process training runs: model dir contract, dev accuracy, best/latest loading, resume, NaN handling, fit."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from crnn_tf.data.pipelines import eval_dataset
from crnn_tf.train import NonFiniteLossError, TrainConfig, evaluate, load_trained_model, train
from tests.train.conftest import CLSTM_SPEC, TRAIN_FLAGS


def _config(corpus, model_dir, **changes):
    values = dict(model_spec=CLSTM_SPEC, train_data=corpus["train"], dev_data=corpus["dev"],
                  model_dir=str(model_dir), epochs=2, checkpoint_every=10, **TRAIN_FLAGS)
    values.update(changes)
    return TrainConfig(**values)


def test_clstm_trains_and_writes_the_model_dir(corpus, tmp_path):
    config = _config(corpus, tmp_path / "clstm", epochs=3)
    record = train(config)
    model_dir = config.model_dir
    for name in ("train_config.json", "feature_config.json", "prior_counts.npy", "metrics.jsonl",
                 "checkpoints/checkpoint", "best/best.json"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    assert os.listdir(os.path.join(model_dir, "tensorboard"))
    lines = [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl"))]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert lines[-1]["step"] == 75 and lines[-1]["skipped_batches"] == 0
    # Learnable synthetic labels: well above the majority-class rate, and improving.
    assert record["dev_frame_accuracy"] > record["dev_majority_rate"] + 0.2
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    saved = TrainConfig.load(model_dir)
    assert (saved.num_targets, saved.feature_dim, saved.num_bands, saved.steps_per_epoch) == (6, 24, 8, 25)
    assert len(saved.train_manifest_hash) == 64
    np.testing.assert_allclose(np.load(os.path.join(model_dir, "prior_counts.npy")),
                               np.load(os.path.join(corpus["train"], "prior_counts.npy")))

    best_info = json.load(open(os.path.join(model_dir, "best", "best.json")))
    model, loaded_config = load_trained_model(model_dir, "best")
    dev = evaluate(model, eval_dataset(corpus["dev"], label_delay=loaded_config.label_delay))
    assert dev["frame_accuracy"] == pytest.approx(best_info["dev_frame_accuracy"], abs=1e-6)
    latest, _ = load_trained_model(model_dir, "latest")
    assert latest.count_params() == model.count_params()

    # A finished run is not retrained; a run with other structural flags is refused.
    assert train(config) == {}
    with pytest.raises(ValueError, match="model_spec"):
        train(config.replace(model_spec="Lstm16P8+ReLU16"))


def test_feedforward_net_uses_context_windows(corpus, tmp_path):
    config = _config(corpus, tmp_path / "dnn", model_spec="2xReLU32", context=2, window=8, batch_size=16,
                     epochs=1, label_delay=5, lr_initial=0.05, lr_final=0.01)
    record = train(config)
    assert TrainConfig.load(config.model_dir).steps_per_epoch == -(-40 * 7 // 16)  # 7 windows per utterance
    # Feed-forward nets train on centred windows: dev labels must not be delayed even though label_delay=5.
    assert record["dev_frame_accuracy"] > record["dev_majority_rate"] + 0.1


def test_nan_loss_stops_naming_the_step(corpus, tmp_path):
    config = _config(corpus, tmp_path / "nan_stop", train_data=corpus["nan"], epochs=1, dev_data="")
    with pytest.raises(NonFiniteLossError, match=r"step \d+ \(epoch 1, batch \d+"):
        train(config)


def test_nan_loss_skip_policy_finishes_with_finite_weights(corpus, tmp_path):
    config = _config(corpus, tmp_path / "nan_skip", train_data=corpus["nan"], epochs=1, on_nan="skip")
    record = train(config)
    assert record["skipped_batches"] >= 1
    model, _ = load_trained_model(config.model_dir, "latest")
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_keras_fit_example_runs(corpus, tmp_path):
    from tools.train_keras_fit import fit

    output = str(tmp_path / "fit" / "model.keras")
    model, history = fit(CLSTM_SPEC, corpus["train"], dev_data=corpus["dev"], output=output, epochs=2,
                         chunks_per_replica=8, label_delay=2, learning_rate=0.1)
    assert os.path.exists(output)
    accuracy = history.history["val_frame_accuracy"]
    assert accuracy[-1] > 0.45 and history.history["loss"][-1] < history.history["loss"][0]


def _weights(model):
    return [v.numpy().copy() for v in model.trainable_variables]


def test_gradient_is_clipped_to_its_global_norm(corpus, tmp_path):
    """Plain SGD at a constant rate: one step moves the weights by exactly lr · min(‖g‖, clip_norm)."""
    from crnn_tf.train.loop import Trainer

    moved = {}
    for clip in (1e-3, 0.0):
        config = _config(corpus, tmp_path / f"clip{clip}", optimizer="sgd", momentum=0.0, lr_initial=0.1,
                         lr_final=0.1, clip_norm=clip, steps=1, epochs=1)
        trainer = Trainer(config)
        before = _weights(trainer.model)
        trainer.run()
        after = _weights(trainer.model)
        moved[clip] = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before))) / 0.1
    assert moved[1e-3] == pytest.approx(1e-3, rel=1e-3)
    assert moved[0.0] > 10 * 1e-3  # unclipped, the same step is far larger


def test_optimizer_reads_the_exponential_schedule_at_the_current_step(corpus, tmp_path):
    from crnn_tf.train.loop import Trainer

    config = _config(corpus, tmp_path / "lr", optimizer="sgd", lr_initial=0.2, lr_final=0.002, epochs=2)
    trainer = Trainer(config)
    total = trainer.config.total_steps
    assert total == 50
    for step in (0, 1, total - 1, total, total + 5):
        trainer.state.step.assign(step)
        want = 0.2 * (0.002 / 0.2) ** (min(step, total) / total)  # written out: lr0 · (lr1 / lr0) ^ (t / T)
        assert float(trainer.optimizer.learning_rate) == pytest.approx(want, rel=1e-5), step


def test_a_kill_after_the_last_steps_checkpoint_still_gets_the_last_epochs_bookkeeping(corpus, tmp_path,
                                                                                       monkeypatch):
    from crnn_tf.train.loop import Trainer

    config = _config(corpus, tmp_path / "killed", epochs=2, checkpoint_every=50)  # 25 steps an epoch
    real_end = Trainer._end_epoch

    def killed_at_the_last_epoch_end(self, epoch, stats):
        if epoch == 1:
            raise KeyboardInterrupt("killed")  # after step 50's checkpoint, before the epoch end
        return real_end(self, epoch, stats)

    monkeypatch.setattr(Trainer, "_end_epoch", killed_at_the_last_epoch_end)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    lines = [json.loads(line) for line in open(os.path.join(config.model_dir, "metrics.jsonl"))]
    assert [line["epoch"] for line in lines] == [1]
    monkeypatch.setattr(Trainer, "_end_epoch", real_end)
    record = train(config)  # the resumed run trains nothing, but ends the last epoch
    assert record["epoch"] == 2 and record["step"] == 50 and "dev_frame_accuracy" in record
    lines = [json.loads(line) for line in open(os.path.join(config.model_dir, "metrics.jsonl"))]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert train(config) == {}  # and now it is finished


def test_dropout_run_resumes_with_the_same_masks_and_exports_without_them(corpus, tmp_path, monkeypatch):
    """A run killed after a checkpoint resumes bit-identically with dropout too (the dropout seeds are in the
    checkpoint), and its export scores as the Keras model does at inference."""
    from crnn_tf.export import export_trained, read_metadata, score_utterance
    from crnn_tf.train.loop import Trainer

    flags = dict(epochs=1, checkpoint_every=10, dev_data="", dropout=0.3, deterministic=True)  # 25 steps
    reference = _config(corpus, tmp_path / "reference", **flags)
    train(reference)
    killed = _config(corpus, tmp_path / "killed", **flags)
    real_save = Trainer._save

    def killed_after_the_first_checkpoint(self, *args):
        real_save(self, *args)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(Trainer, "_save", killed_after_the_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(killed)
    monkeypatch.setattr(Trainer, "_save", real_save)
    assert train(killed)["step"] == 25
    expected, _ = load_trained_model(reference.model_dir, "latest")
    resumed, config = load_trained_model(killed.model_dir, "latest")
    assert resumed.dropout == config.dropout == 0.3
    for want, got in zip(expected.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(got, want)

    path = export_trained(killed.model_dir, str(tmp_path / "export"), "dropped", version=1, which="latest",
                          signatures=("serving_default",))
    meta = read_metadata(path)
    assert meta.dropout == 0.3 and meta.extra["train_config"]["dropout"] == 0.3
    features = next(iter(eval_dataset(corpus["dev"], 1)))["features"].numpy()
    loaded = tf.saved_model.load(str(path))
    got = loaded.signatures["serving_default"](features=tf.constant(features),
                                              lengths=tf.constant([features.shape[1]], tf.int32))
    want = score_utterance(resumed, features[0], label_delay=meta.label_delay)["log_posteriors"]
    np.testing.assert_allclose(got["log_posteriors"].numpy()[0], want, atol=1e-5)
