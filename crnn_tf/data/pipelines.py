"""tf.data input pipelines over prepared TFRecords (local disk or any tf.io.gfile filesystem).

* `recurrent_dataset`: truncated-BPTT chunks. An utterance of T frames is extended by `label_delay` copies of its
  last frame (the scoring convention in docs/architecture.md) and cut into chunks of `chunk_length` frames starting
  every `chunk_length - chunk_overlap` frames. The target at extended frame t is the label of frame t - label_delay;
  frames with t < label_delay, and padding past the extended end, have weight 0. With `mask_overlap` the first
  `chunk_overlap` frames of every chunk but an utterance's first have weight 0 too (they only warm up the zero initial
  state), so each labelled frame carries weight 1 exactly once per epoch. Batching works like Kaldi's multi-stream
  training: utterances are grouped `chunks_per_replica` at a time by chunk count (bucketed ~15 % apart; shorter ones
  padded with weight-0 chunks), and batch r of a group holds chunk r of each utterance, so every batch draws its
  chunks from distinct utterances. Only the flush at the end of an epoch gives smaller batches (dropped with
  `drop_remainder`). Whole batches are then shuffled.
* `feedforward_dataset`: frame-level training for DNNs whose context splicing is inside the model. Each utterance is
  tiled by `window` frames; every window is fed with `context` real (or, at the utterance edges, replicated) frames on
  each side, whose weight is 0, so a length-preserving splice of ±`context` frames sees exactly Kaldi's context and
  every frame is trained once. Windows are shuffled across utterances before batching.
* `eval_dataset`: whole utterances, padded, in manifest order, with lengths and utterance ids.

Elements of the training pipelines are `(features [B, L, D] float32, labels [B, L] int32, weights [B, L] float32)`;
padded positions repeat the nearest valid frame (never zeros, so splicing/normalisation layers see real data) and
always have weight 0. Everything is deterministic given `seed`.

Example:
>>> manifest = read_manifest("prepared/train")  # doctest: +SKIP
>>> for features, labels, weights in recurrent_dataset(manifest).take(1):  # doctest: +SKIP
...     print(features.shape)  # (20, 15, 93)
"""
import tensorflow as tf

from crnn_tf.data.tfrecords import Manifest, parse_example, read_manifest
from crnn_tf.features import compute_features

AUTOTUNE = tf.data.AUTOTUNE


def _as_manifest(manifest) -> Manifest:
    return manifest if isinstance(manifest, Manifest) else read_manifest(manifest)


def _options(deterministic: bool = True) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    return options


def utterance_dataset(manifest, *, shuffle: bool = False, seed: int = 0, input_context=None, repeat: bool = False,
                      shuffle_buffer: int = 256, require_labels: bool = False) -> tf.data.Dataset:
    """Parsed utterances `{utt_id, spk_id, features [T, D], labels [T] int32, num_frames}`.

    In audio mode the features are computed here (fbank → CMVN → deltas, core TF ops) and trimmed to `num_frames`.

    Args:
      manifest: `Manifest` or its path/directory.
      shuffle: shuffle shard order and utterances (buffer `shuffle_buffer`). Default False.
      seed: shuffle seed. Default 0.
      input_context: `tf.distribute.InputContext`; the data is split by `input_pipeline_id` (by shard when there are
        enough shards, else by record). Default None.
      repeat: repeat forever (reshuffled every epoch). Default False.
      require_labels: raise if the manifest has no alignments. Default False.
    """
    manifest = _as_manifest(manifest)
    if require_labels and manifest.num_targets == 0:
        raise ValueError(f"{manifest.directory}: prepared without alignments; training pipelines need labels")
    paths = manifest.shard_paths
    if not paths:
        raise ValueError(f"{manifest.directory}: the manifest lists no shards")
    files = tf.data.Dataset.from_tensor_slices(paths)
    shard_records = False
    if input_context is not None and input_context.num_input_pipelines > 1:
        if len(paths) >= input_context.num_input_pipelines:
            files = files.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        else:
            shard_records = True
    if shuffle:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        files = files.repeat()
    records = files.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(paths)), block_length=16,
                               num_parallel_calls=AUTOTUNE, deterministic=True)
    if shard_records:
        records = records.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle:
        records = records.shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)

    config, mode, dim = manifest.feature_config, manifest.mode, manifest.feature_dim
    global_stats = manifest.global_cmvn_stats if config.cmvn == "global" else None

    def parse(serialized):
        ex = parse_example(serialized, mode, dim)
        if mode == "audio":
            waveform = ex.pop("waveform")
            stats = global_stats
            if config.cmvn == "speaker":
                stats = tf.reshape(tf.cast(ex["cmvn_stats"], tf.float64), [1, 2, config.num_bands + 1])
            feats, _ = compute_features(waveform[None], tf.shape(waveform)[:1], config, cmvn_stats=stats)
            ex["features"] = feats[0, : ex["num_frames"]]
        ex.pop("cmvn_stats", None)
        return ex

    return records.map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)


def _cut(features, labels, starts, trained, delay):
    """Chunks of one utterance: positions `starts[:, None] + range(L)` of the delay-extended utterance.

    Args:
      features: `[T, D]`; labels: `[T]` int32.
      starts: int32 `[n]` first position of each chunk (may be negative: replicated first frame).
      trained: bool `[n, L]`, which positions may carry weight (before the validity mask).
      delay: label delay d (targets at position t are labels[t - d]).

    Returns:
      `(features [n, L, D], labels [n, L], weights [n, L])`.
    """
    frames = tf.shape(features)[0]
    positions = starts[:, None] + tf.range(tf.shape(trained)[1])[None, :]
    chunk_features = tf.gather(features, tf.clip_by_value(positions, 0, frames - 1))
    source = positions - delay
    valid = (source >= 0) & (source < frames)
    chunk_labels = tf.where(valid, tf.gather(labels, tf.clip_by_value(source, 0, frames - 1)), 0)
    weights = tf.cast(valid & trained, tf.float32)
    return chunk_features, chunk_labels, weights


def recurrent_chunks(features, labels, chunk_length: int = 15, chunk_overlap: int = 5, label_delay: int = 5,
                     mask_overlap: bool = True):
    """Cuts one utterance into truncated-BPTT chunks (graph-safe); see the module docstring.

    Args:
      features: `[T, D]` float32 (T ≥ 1); labels: `[T]` int32.
      chunk_length: default 15. chunk_overlap: default 5. label_delay: default 5.
      mask_overlap: weight 0 on re-seen overlap frames. Default True.

    Returns:
      `(features [n, chunk_length, D], labels [n, chunk_length], weights [n, chunk_length])`.
    """
    if not 0 <= chunk_overlap < chunk_length:
        raise ValueError(f"need 0 ≤ chunk_overlap < chunk_length, got {chunk_overlap}, {chunk_length}")
    if label_delay < 0:
        raise ValueError(f"label_delay must be ≥ 0, got {label_delay}")
    step = chunk_length - chunk_overlap
    extended = tf.shape(features)[0] + label_delay
    count = 1 + tf.maximum(0, -(-(extended - chunk_length) // step))
    starts = tf.range(count) * step
    trained = tf.ones([count, chunk_length], tf.bool)
    if mask_overlap:
        trained = (tf.range(count)[:, None] == 0) | (tf.range(chunk_length)[None, :] >= chunk_overlap)
    return _cut(features, labels, starts, trained, label_delay)


def feedforward_windows(features, labels, window: int = 16, context: int = 5):
    """Tiles one utterance into `window`-frame pieces with ±`context` frames of weight-0 context (graph-safe).

    Returns:
      `(features [n, window + 2 context, D], labels [n, …], weights [n, …])`.
    """
    if window < 1 or context < 0:
        raise ValueError(f"need window ≥ 1 and context ≥ 0, got {window}, {context}")
    count = -(-tf.shape(features)[0] // window)
    starts = tf.range(count) * window - context
    inner = tf.range(window + 2 * context)
    trained = tf.broadcast_to(((inner >= context) & (inner < context + window))[None], [count, window + 2 * context])
    return _cut(features, labels, starts, trained, 0)


# Chunk-count buckets: exact up to 16, then ~15 % apart, so padding to the bucket wastes at most ~15 % compute.
_BUCKETS = sorted(set(list(range(1, 17)) + [int(16 * 1.15 ** k) + 1 for k in range(1, 60)]))


def _pad_chunks(features, labels, weights):
    """Pads an utterance's chunks to its bucket size with weight-0 copies of its last chunk."""
    count = tf.shape(features)[0]
    buckets = tf.constant(_BUCKETS, tf.int32)
    target = tf.gather(buckets, tf.minimum(tf.searchsorted(buckets, [count])[0], len(_BUCKETS) - 1))
    extra = tf.maximum(target - count, 0)
    features = tf.concat([features, tf.repeat(features[-1:], extra, axis=0)], 0)
    labels = tf.concat([labels, tf.repeat(labels[-1:], extra, axis=0)], 0)
    weights = tf.concat([weights, tf.zeros([extra, tf.shape(weights)[1]])], 0)
    return features, labels, weights


def recurrent_dataset(manifest, *, chunk_length: int = 15, chunk_overlap: int = 5, label_delay: int = 5,
                      chunks_per_replica: int = 20, mask_overlap: bool = True, shuffle: bool = True, seed: int = 0,
                      input_context=None, repeat: bool = False, drop_remainder: bool = False) -> tf.data.Dataset:
    """Truncated-BPTT batches for recurrent models (paper: 15-frame chunks, overlap 5, delay 5, 20 per GPU).

    Args:
      manifest: `Manifest` or path.
      chunk_length, chunk_overlap, label_delay, mask_overlap: see `recurrent_chunks` (defaults 15, 5, 5, True).
      chunks_per_replica: per-replica batch size = utterances per group (each batch: distinct utterances). Default 20.
      shuffle, seed, input_context, repeat: see `utterance_dataset` (defaults True, 0, None, False).
      drop_remainder: drop the smaller end-of-epoch batches (static batch shape; with `repeat=True` there are
        none). Default False (every frame is seen).

    Returns:
      Dataset of `(features [B, chunk_length, D], labels [B, chunk_length] int32, weights [B, chunk_length])`.
    """
    utterances = utterance_dataset(manifest, shuffle=shuffle, seed=seed, input_context=input_context, repeat=repeat,
                                   require_labels=True)
    chunks = utterances.map(
        lambda ex: _pad_chunks(*recurrent_chunks(ex["features"], ex["labels"], chunk_length, chunk_overlap,
                                                 label_delay, mask_overlap)),
        num_parallel_calls=AUTOTUNE, deterministic=True)

    def to_batches(key, group):
        # [b, n, L, …] → n batches [b, L, …]: batch r holds chunk r of b different utterances.
        group = group.batch(chunks_per_replica)
        group = group.map(lambda f, l, w: (tf.transpose(f, [1, 0, 2, 3]), tf.transpose(l, [1, 0, 2]),
                                           tf.transpose(w, [1, 0, 2])))
        return group.unbatch()

    batches = chunks.group_by_window(lambda f, l, w: tf.cast(tf.shape(f)[0], tf.int64), to_batches,
                                     window_size=chunks_per_replica)
    if drop_remainder:
        batches = batches.filter(lambda f, l, w: tf.shape(f)[0] == chunks_per_replica)
    if shuffle:  # decorrelate consecutive steps, which otherwise see neighbouring chunks of the same utterances
        batches = batches.shuffle(64, seed=seed + 2, reshuffle_each_iteration=True)
    return batches.prefetch(AUTOTUNE).with_options(_options())


def feedforward_dataset(manifest, *, window: int = 16, context: int = 5, batch_size: int = 32,
                        shuffle: bool = True, seed: int = 0, input_context=None, repeat: bool = False,
                        shuffle_buffer: int = 4096, drop_remainder: bool = False) -> tf.data.Dataset:
    """Frame-shuffled batches for feed-forward models that splice ±`context` frames inside the model.

    Args:
      manifest: `Manifest` or path.
      window: trained frames per window (1 gives pure frame-level shuffling at 2·context+1 × the compute).
        Default 16.
      context: splice half-width of the model (paper: 5). Default 5.
      batch_size: windows per replica batch. Default 32.
      shuffle, seed, input_context, repeat: see `utterance_dataset`.
      shuffle_buffer: windows in the cross-utterance shuffle buffer. Default 4096.
      drop_remainder: default False.

    Returns:
      Dataset of `(features [B, window + 2 context, D], labels [B, …] int32, weights [B, …] float32)`.
    """
    utterances = utterance_dataset(manifest, shuffle=shuffle, seed=seed, input_context=input_context, repeat=repeat,
                                   require_labels=True)
    windows = utterances.map(lambda ex: feedforward_windows(ex["features"], ex["labels"], window, context),
                             num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
    if shuffle:
        windows = windows.shuffle(shuffle_buffer, seed=seed + 3, reshuffle_each_iteration=True)
    return windows.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE).with_options(_options())


def eval_dataset(manifest, batch_size: int = 8, *, label_delay: int = 0, input_context=None) -> tf.data.Dataset:
    """Whole utterances in manifest order, zero-padded to the longest in the batch.

    Args:
      manifest: `Manifest` or path.
      batch_size: utterances per batch. Default 8.
      label_delay: when > 0, each utterance is extended by `label_delay` copies of its last frame and its labels are
        delayed like `recurrent_dataset` (so an evaluation loss matches training). Default 0.
      input_context: optional `tf.distribute.InputContext` for sharding.

    Returns:
      Dataset of dicts: `utt_id [B]` string, `features [B, T, D]`, `lengths [B]` int32 (frames incl. the delay
      extension), `labels [B, T]` int32 (0 where padded or without alignments), `weights [B, T]` float32.
    """
    manifest = _as_manifest(manifest)
    has_labels = manifest.num_targets > 0

    def prepare(ex):
        features = ex["features"]
        frames = tf.shape(features)[0]
        labels = ex["labels"] if has_labels else tf.zeros([frames], tf.int32)
        f, l, w = _cut(features, labels, tf.zeros([1], tf.int32), tf.ones([1, frames + label_delay], tf.bool),
                       label_delay)
        if not has_labels:
            w = tf.zeros_like(w)
        return {"utt_id": ex["utt_id"], "features": f[0], "labels": l[0], "weights": w[0],
                "lengths": frames + label_delay}

    dataset = utterance_dataset(manifest, input_context=input_context).map(
        prepare, num_parallel_calls=AUTOTUNE, deterministic=True)
    return dataset.padded_batch(batch_size).prefetch(AUTOTUNE).with_options(_options())


__all__ = ["eval_dataset", "feedforward_dataset", "feedforward_windows", "recurrent_chunks", "recurrent_dataset",
           "utterance_dataset"]
