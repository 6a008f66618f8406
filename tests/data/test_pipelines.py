"""tf.data pipelines: chunking properties (hypothesis), epoch coverage, determinism, sharding, evaluation."""
import collections
import os

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from crnn_tf.data.pipelines import (eval_dataset, feedforward_dataset, feedforward_windows, recurrent_chunks,
                                    recurrent_dataset)
from crnn_tf.data.tfrecords import Manifest, features_example, write_manifest
from crnn_tf.features import FeatureConfig

DIM = 3


def _utterance(frames):
    """Frame t has feature value t (all dims) and label t, so positions are recoverable from the output."""
    return np.repeat(np.arange(frames, dtype=np.float32)[:, None], DIM, 1), np.arange(frames, dtype=np.int32)


@settings(max_examples=40, deadline=None)
@given(frames=st.integers(1, 60), length=st.integers(2, 20), overlap_fraction=st.floats(0, 0.95),
       delay=st.integers(0, 8), mask_overlap=st.booleans())
def test_recurrent_chunks_properties(frames, length, overlap_fraction, delay, mask_overlap):
    overlap = int(overlap_fraction * length)
    f, l, w = (t.numpy() for t in recurrent_chunks(*_utterance(frames), length, overlap, delay, mask_overlap))
    step = length - overlap
    positions = np.arange(f.shape[0])[:, None] * step + np.arange(length)[None, :]
    np.testing.assert_array_equal(f[..., 0], np.clip(positions, 0, frames - 1))  # padding replicates the edge
    weighted = w > 0
    # Label delay: the target at position t is the label of frame t - delay, exactly.
    np.testing.assert_array_equal(l[weighted], positions[weighted] - delay)
    # No padding or pre-delay frame in the loss.
    assert not np.any(weighted & ((positions < delay) | (positions - delay >= frames)))
    counts = np.bincount(l[weighted], minlength=frames)
    if mask_overlap:
        assert counts.tolist() == [1] * frames  # every labelled frame exactly once
    else:  # overlapped frames count once per chunk that contains them
        covering = [np.sum((positions[:, 0] <= j + delay) & (j + delay < positions[:, 0] + length))
                    for j in range(frames)]
        assert counts.tolist() == covering


@settings(max_examples=30, deadline=None)
@given(frames=st.integers(1, 50), window=st.integers(1, 12), context=st.integers(0, 5))
def test_feedforward_windows_properties(frames, window, context):
    f, l, w = (t.numpy() for t in feedforward_windows(*_utterance(frames), window, context))
    positions = np.arange(f.shape[0])[:, None] * window - context + np.arange(window + 2 * context)[None, :]
    np.testing.assert_array_equal(f[..., 0], np.clip(positions, 0, frames - 1))  # Kaldi splice edge replication
    weighted = w > 0
    np.testing.assert_array_equal(l[weighted], positions[weighted])
    assert np.bincount(l[weighted], minlength=frames).tolist() == [1] * frames
    inner = np.zeros(window + 2 * context, bool)
    inner[context:context + window] = True
    assert not np.any(weighted & ~inner[None, :])  # context frames never carry weight


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """30 utterances of 5–60 frames in 4 shards; label = 1000 * utterance + frame."""
    root = str(tmp_path_factory.mktemp("tfr"))
    rng = np.random.default_rng(0)
    shards, total = [], 0
    for s in range(4):
        path = os.path.join(root, f"s{s}.tfrecord")
        utts = range(s, 30, 4)
        frames_in_shard = 0
        with tf.io.TFRecordWriter(path) as writer:
            for u in utts:
                frames = int(rng.integers(5, 61))
                feats = rng.normal(size=(frames, DIM)).astype(np.float32)
                writer.write(features_example(f"u{u:02d}", feats, 1000 * u + np.arange(frames)))
                frames_in_shard += frames
        shards.append({"path": f"s{s}.tfrecord", "num_utterances": len(utts), "num_frames": frames_in_shard,
                       "sha256": ""})
        total += frames_in_shard
    m = Manifest(directory=root, mode="features", feature_dim=DIM, num_targets=30_000, num_utterances=30,
                 num_frames=total, feature_config=FeatureConfig(num_mel_bins=2, use_energy=True, delta_order=0),
                 shards=shards)
    write_manifest(m)
    return m


def _weighted_labels(dataset):
    labels = []
    for f, l, w in dataset:
        assert f.shape[1:] == (15, DIM) and l.dtype == tf.int32
        labels += l.numpy()[w.numpy() > 0].tolist()
    return labels


def test_recurrent_epoch_counts_every_frame_once(manifest):
    labels = _weighted_labels(recurrent_dataset(manifest.directory, seed=3))
    assert len(labels) == manifest.num_frames == len(set(labels))


def test_recurrent_batches_mix_utterances_and_are_deterministic(manifest):
    batches = list(recurrent_dataset(manifest, chunks_per_replica=4, seed=7))
    first = [batch[1].numpy() for batch in batches]
    again = [batch[1].numpy() for batch in recurrent_dataset(manifest, chunks_per_replica=4, seed=7)]
    other = [batch[1].numpy() for batch in recurrent_dataset(manifest, chunks_per_replica=4, seed=8)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again)) and len(first) == len(again)
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, other))
    # Every batch holds chunks of different utterances (label // 1000 = utterance); smaller batches only come from
    # the end-of-epoch flush, at most one group per chunk-count bucket (here 1–7 chunks).
    owners = [[int(r.max()) // 1000 for r in b[1].numpy()] for b in batches]
    assert all(len(set(o)) == len(o) for o in owners)
    assert len({frozenset(o) for o in owners if len(o) < 4}) <= 7 < sum(len(o) == 4 for o in owners)


def test_input_context_shards_partition_the_data(manifest):
    parts = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=2)
        parts.append(set(_weighted_labels(recurrent_dataset(manifest, input_context=context))))
    assert parts[0] and parts[1] and not parts[0] & parts[1]
    assert len(parts[0] | parts[1]) == manifest.num_frames


def test_feedforward_dataset_counts_every_frame_once(manifest):
    seen = collections.Counter()
    for f, l, w in feedforward_dataset(manifest, window=4, context=2, batch_size=16):
        assert f.shape[1] == 8
        seen.update(l.numpy()[w.numpy() > 0].tolist())
    assert len(seen) == manifest.num_frames and set(seen.values()) == {1}


def test_eval_dataset_whole_utterances(manifest):
    batches = list(eval_dataset(manifest, batch_size=8, label_delay=2))
    ids = [u.decode() for b in batches for u in b["utt_id"].numpy()]
    assert len(ids) == 30
    for b in batches:
        for i, length in enumerate(b["lengths"].numpy()):
            labels, weights = b["labels"][i].numpy(), b["weights"][i].numpy()
            assert weights[:2].sum() == 0 and weights[2:length].all() and not weights[length:].any()
            frames = length - 2
            assert (labels[2:length] % 1000).tolist() == list(range(frames))
            np.testing.assert_array_equal(b["features"][i, length - 2:length].numpy(),
                                          np.repeat(b["features"][i, frames - 1:frames].numpy(), 2, 0))
