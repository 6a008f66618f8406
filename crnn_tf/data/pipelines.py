"""tf.data input pipelines over prepared TFRecords (local disk or any tf.io.gfile filesystem).

* `recurrent_dataset`: truncated-BPTT chunks. An utterance of T frames is extended by `label_delay` copies of its
  last frame (the scoring convention in docs/architecture.md) and cut into chunks of `chunk_length` frames starting
  every `chunk_length - chunk_overlap` frames. The target at extended frame t is the label of frame t - label_delay;
  frames with t < label_delay, and padding past the extended end, have weight 0. With `mask_overlap` the first
  `chunk_overlap` frames of every chunk but an utterance's first have weight 0 too (they only warm up the zero initial
  state), so each labelled frame carries weight 1 exactly once per epoch. Every chunk starts from zero state, so
  the chunks of an utterance need not share a batch slot or follow each other. Batching: the chunk stream (utterances
  in shuffled order, each utterance's chunks contiguous) is cut into windows of `batches_per_window` ×
  `chunks_per_replica` chunks, and each window is dealt column by column into `batches_per_window` full batches
  (chunk j of the window goes to batch j mod K, K = batches the window makes), so an utterance's run of ≤ K
  consecutive chunks lands in K different batches, like Kaldi's multi-stream training with refilled streams. The
  batches of a window are then permuted (seeded), and batches shuffled across windows. A finite stream's last,
  smaller window is merged into the one before it, so it is dealt into ≥ K batches too.
  Trade-off: every batch is full except the last one of a finite epoch (no padding chunks, no per-length groups), and
  a batch holds two chunks of one utterance only when that utterance has more than K chunks in its window, i.e. is
  longer than ~K × (chunk_length − chunk_overlap) frames (~1280 frames with the defaults), or when the whole epoch
  makes fewer batches than an utterance has chunks (then unavoidable with full batches). Consecutive batches of a
  window share utterances (neighbouring chunks), hence the permutation and the cross-window shuffle; a window holds
  K × B chunks (~14 MB at B = 20, D = 93). Measured with 20 chunks a batch on 60 utterances of 20–400 frames: 72 of
  73 batches full (all but the flush), none with a repeated utterance (the former grouping by chunk count made 289
  batches, none full); on 600 such utterances 651 of 652 full, none repeated.
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
import math

import numpy as np
import tensorflow as tf

from crnn_tf.data.augment import (BABBLE_SECONDS, AugmentConfig, babble_bank, perturb_waveform, perturbed_speaker_stats,
                                  quiet_bank, spec_augment, edge_trim_range, silence_trim_range, stretch_labels,
                                  utterance_seed, vtlp_mel_weights)
from crnn_tf.data.tfrecords import Manifest, parse_example, read_manifest
from crnn_tf.features import cmvn_stats, fbank, normalize_and_add_deltas

AUTOTUNE = tf.data.AUTOTUNE


def _as_manifest(manifest) -> Manifest:
    return manifest if isinstance(manifest, Manifest) else read_manifest(manifest)


def _options(deterministic: bool = True) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    return options


def noise_sources(manifest, samples: int | None, seed: int, kind: str = "babble") -> dict:
    """`{utt_id: float32 samples}`: a seeded random choice of the manifest's utterances, about `samples` samples in
    all by the manifest's mean duration (every utterance when it holds fewer, or when `samples` is None), read from
    its TFRecords: the audio that babble and recorded noise are made of.

    The records are read in manifest order up to the last chosen one; only the chosen ones are parsed.

    Args:
      manifest: `Manifest` or its path/directory; audio mode (ValueError otherwise).
      samples: how much audio to choose, in samples; None: all of it.
      seed: seeds the choice.
      kind: the noise made of it, for the error message. Default "babble".
    """
    manifest = _as_manifest(manifest)
    if manifest.mode != "audio":
        raise ValueError(f"{manifest.directory}: {kind} noise is made from the training set's own audio, and this is "
                         f"{manifest.mode!r} data with no audio; prepare it with crnn-prepare-data --mode=audio")
    total = manifest.num_utterances
    mean = max(manifest.num_frames / max(total, 1) * manifest.feature_config.frame_shift, 1.0)
    count = total if samples is None else min(total, math.ceil(samples / mean))
    records = tf.data.TFRecordDataset(manifest.shard_paths)
    if count < total:  # all of them need no choice and no per-record filter
        chosen = np.sort(np.random.default_rng([seed % 2 ** 63, 1]).choice(total, count, replace=False))
        wanted = tf.constant(chosen, tf.int64)
        records = records.take(int(chosen[-1]) + 1 if count else 0).enumerate()
        records = records.filter(lambda index, _: tf.reduce_any(tf.equal(index, wanted))).map(lambda _, r: r)
    return {ex["utt_id"].numpy().decode(): ex["waveform"].numpy()
            for ex in (parse_example(record, "audio") for record in records)}


def _babble_track(manifest: Manifest, augment: AugmentConfig, seed: int) -> tf.Tensor:
    """The epoch's babble track (`crnn_tf.data.augment.babble_bank`) from the manifest's own utterances."""
    length = int(BABBLE_SECONDS * manifest.feature_config.sample_rate)
    waveforms = list(noise_sources(manifest, augment.babble_talkers * length, seed).values())
    if not waveforms:
        raise ValueError(f"{manifest.directory}: babble noise needs training audio, and the manifest has none")
    return tf.constant(babble_bank(waveforms, augment.babble_talkers, length, [seed % 2 ** 63, 2])[0])


def _recorded_track(manifest: Manifest, seed: int) -> tf.Tensor:
    """The epoch's track of the manifest's quiet stretches (`crnn_tf.data.augment.quiet_bank`), from every
    utterance in a seeded order."""
    waveforms = list(noise_sources(manifest, None, seed, kind="recorded").values())
    try:
        track, _ = quiet_bank(waveforms, int(0.025 * manifest.feature_config.sample_rate), [seed % 2 ** 63, 3])
    except ValueError as error:
        raise ValueError(f"{manifest.directory}: {error}") from None
    return tf.constant(track)


def utterance_dataset(manifest, *, shuffle: bool = False, seed: int = 0, input_context=None, repeat: bool = False,
                      shuffle_buffer: int = 256, require_labels: bool = False,
                      augment: AugmentConfig | None = None) -> tf.data.Dataset:
    """Parsed utterances `{utt_id, spk_id, features [T, D], labels [T] int32, num_frames}`.

    In audio mode the features are computed here (fbank → CMVN → deltas, core TF ops) and trimmed to `num_frames`;
    waveform augmentation happens before that (a speed change re-times the labels and `num_frames`).

    Args:
      manifest: `Manifest` or its path/directory.
      shuffle: shuffle shard order and utterances (buffer `shuffle_buffer`). Default False.
      seed: shuffle seed. Default 0.
      input_context: `tf.distribute.InputContext`; the data is split by `input_pipeline_id` (by shard when there are
        enough shards, else by record). Default None.
      repeat: repeat forever (reshuffled every epoch). Default False.
      require_labels: raise if the manifest has no alignments. Default False.
      augment: `AugmentConfig` (see `crnn_tf.data.augment`); its random choices derive from `seed` and the
        utterance id. Babble noise is cut from a track of the manifest's own utterances chosen by `seed`
        (`noise_sources`), recorded noise from a track of all their quiet stretches. Default None (no
        augmentation).
    """
    manifest = _as_manifest(manifest)
    if require_labels and manifest.num_targets == 0:
        raise ValueError(f"{manifest.directory}: prepared without alignments; training pipelines need labels")
    augment = augment or AugmentConfig()
    # Built once per pipeline (per epoch: the seed changes), so each epoch's babble is new.
    babble = _babble_track(manifest, augment, seed) if augment.uses_babble else None
    recorded = _recorded_track(manifest, seed) if augment.uses_recorded else None
    if augment.needs_audio and manifest.mode != "audio":
        raise ValueError(f"{manifest.directory}: waveform and front-end augmentation (speed, gain, reverb, "
                         f"telephone, noise, VTLP, edge and silence trimming) needs data prepared with mode='audio' "
                         f"(crnn-prepare-data --mode=audio); this is {manifest.mode!r} data")
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
        utt_seed = utterance_seed(seed, ex["utt_id"])
        if mode == "audio":
            waveform = ex.pop("waveform")
            stats = global_stats
            if config.cmvn == "speaker":
                stats = tf.reshape(tf.cast(ex["cmvn_stats"], tf.float64), [1, 2, config.num_bands + 1])
            clean = waveform
            if augment.changes_waveform:
                waveform, factor = perturb_waveform(waveform, augment, utt_seed, config.sample_rate, babble,
                                                    recorded)
            mel_weights = None
            if augment.warps_frequency:
                mel_weights, _ = vtlp_mel_weights(augment, config,
                                                  tf.random.experimental.stateless_fold_in(utt_seed, 2))
            static, frames = fbank(waveform[None], tf.shape(waveform)[:1], config, mel_weights=mel_weights)
            if augment.needs_audio and config.cmvn == "speaker":
                clean_static, clean_frames = fbank(clean[None], tf.shape(clean)[:1], config)
                stats = perturbed_speaker_stats(stats[0], cmvn_stats(clean_static[0, :clean_frames[0]]),
                                                cmvn_stats(static[0, :frames[0]]))[None]
            feats = normalize_and_add_deltas(static, frames, config, stats=stats)
            if augment.changes_waveform and augment.speed_factors:
                sped = tf.not_equal(factor, 1.0)
                ex["num_frames"] = tf.where(sped, frames[0], ex["num_frames"])
                ex["labels"] = tf.cond(
                    sped, lambda: stretch_labels(ex["labels"], factor, frames[0], config.frame_shift,
                                                 config.frame_length / 2 if config.snip_edges else 0.0),
                    lambda: ex["labels"])
            ex["features"] = feats[0, : ex["num_frames"]]
            if augment.trims_edges:
                if not config.use_energy:
                    raise ValueError("edge and silence trimming find speech from the frame energies: they need "
                                     "use_energy=True")
                energy = static[0, : ex["num_frames"], 0]
                cuts = []
                if augment.silence_trim_prob > 0:
                    cuts.append(silence_trim_range(energy, augment, tf.random.experimental.stateless_fold_in(
                        utt_seed, 4)))
                    energy = energy[cuts[-1][0]:cuts[-1][1]]
                if augment.edge_trim_frames > 0:
                    cuts.append(edge_trim_range(energy, augment.edge_trim_frames,
                                                tf.random.experimental.stateless_fold_in(utt_seed, 3)))
                start, end = 0, ex["num_frames"]
                for cut_start, cut_end in cuts:  # each cut is relative to the frames the previous one kept
                    start, end = start + cut_start, start + cut_end
                ex["features"], ex["labels"] = ex["features"][start:end], ex["labels"][start:end]
                ex["num_frames"] = tf.cast(end - start, ex["num_frames"].dtype)
        ex.pop("cmvn_stats", None)
        if augment.masks_features:
            ex["features"] = spec_augment(ex["features"], augment, config.num_streams,
                                          tf.random.experimental.stateless_fold_in(utt_seed, 1))
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


def check_chunking(chunk_length: int, chunk_overlap: int, label_delay: int) -> None:
    """Raises ValueError unless 0 ≤ chunk_overlap < chunk_length and label_delay ≥ 0 (`recurrent_chunks`'s geometry)."""
    if not 0 <= chunk_overlap < chunk_length:
        raise ValueError(f"need 0 ≤ chunk_overlap < chunk_length, got {chunk_overlap}, {chunk_length}")
    if label_delay < 0:
        raise ValueError(f"label_delay must be ≥ 0, got {label_delay}")


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
    check_chunking(chunk_length, chunk_overlap, label_delay)
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


def _deal(count, batch_size):
    """Slot order of a window of `count` chunks: batch b of the window is chunks `order[b·B : (b+1)·B]`.

    The window makes K = ⌈count / B⌉ batches, all full but the last. Chunk j goes to the j-th cell of the K × B grid
    read column by column (column r = row r of every batch; the last batch's missing rows skipped), so any run of
    ≤ K − 1 consecutive chunks (≤ K when count is a multiple of B) lands in distinct batches. Graph-safe.

    Returns:
      int32 `[count]`, a permutation of `range(count)`.
    """
    batches = -(-count // batch_size)
    last_rows = count - (batches - 1) * batch_size
    batch = tf.tile(tf.range(batches), [batch_size])  # column-major cell order: row r outer, batch b inner
    row = tf.repeat(tf.range(batch_size), batches)
    valid = (batch < batches - 1) | (row < last_rows)
    chunk = tf.cumsum(tf.cast(valid, tf.int32), exclusive=True)
    # Batch-major positions of the valid cells are exactly 0 … count − 1.
    position = tf.boolean_mask(batch * batch_size + row, valid)
    return tf.scatter_nd(position[:, None], tf.boolean_mask(chunk, valid), [count])


def _merge_last_window(windows: tf.data.Dataset, window_size: int) -> tf.data.Dataset:
    """Appends the smaller last window of a finite window stream to the one before it (so it is never tiny)."""
    empty = tuple(tf.zeros([0] + [d or 0 for d in spec.shape[1:]], spec.dtype) for spec in windows.element_spec)

    def step(held, new):  # emits the previous window, one step late; the partial (last) window is merged in
        count = tf.shape(new[0])[0]
        partial = (count > 0) & (count < window_size)
        joined = tf.cond(tf.shape(held[0])[0] > 0, lambda: tuple(tf.concat([h, n], 0) for h, n in zip(held, new)),
                         lambda: new)
        state = tf.cond(partial, lambda: joined, lambda: new)
        out = tf.cond(partial, lambda: tuple(h[:0] for h in held), lambda: held)
        return state, out

    # The empty end marker flushes what is held.
    windows = windows.concatenate(tf.data.Dataset.from_tensors(empty)).scan(empty, step)
    return windows.filter(lambda *window: tf.shape(window[0])[0] > 0)


def recurrent_dataset(manifest, *, chunk_length: int = 15, chunk_overlap: int = 5, label_delay: int = 5,
                      chunks_per_replica: int = 20, mask_overlap: bool = True, shuffle: bool = True, seed: int = 0,
                      input_context=None, repeat: bool = False, drop_remainder: bool = False,
                      batches_per_window: int = 128, augment: AugmentConfig | None = None) -> tf.data.Dataset:
    """Truncated-BPTT batches for recurrent models (paper: 15-frame chunks, overlap 5, delay 5, 20 per GPU).

    Args:
      manifest: `Manifest` or path.
      chunk_length, chunk_overlap, label_delay, mask_overlap: see `recurrent_chunks` (defaults 15, 5, 5, True).
      chunks_per_replica: batch size (chunks of different utterances, see the module docstring). Default 20.
      shuffle, seed, input_context, repeat: see `utterance_dataset` (defaults True, 0, None, False).
      drop_remainder: drop the one smaller end-of-epoch batch (static batch shape; with `repeat=True` there is
        none). Default False (every frame is seen).
      batches_per_window: K, batches dealt from one window of K × `chunks_per_replica` consecutive chunks; utterances
        of up to K chunks never repeat within a batch. Memory: ~2 windows of chunks. Default 128.
      augment: see `utterance_dataset`. Default None.

    Returns:
      Dataset of `(features [B, chunk_length, D], labels [B, chunk_length] int32, weights [B, chunk_length])`.
    """
    if chunks_per_replica < 1 or batches_per_window < 1:
        raise ValueError(f"need chunks_per_replica ≥ 1 and batches_per_window ≥ 1, got {chunks_per_replica}, "
                         f"{batches_per_window}")
    utterances = utterance_dataset(manifest, shuffle=shuffle, seed=seed, input_context=input_context, repeat=repeat,
                                   require_labels=True, augment=augment)
    chunks = utterances.map(
        lambda ex: recurrent_chunks(ex["features"], ex["labels"], chunk_length, chunk_overlap, label_delay,
                                    mask_overlap),
        num_parallel_calls=AUTOTUNE, deterministic=True)
    size = chunks_per_replica
    windows = chunks.rebatch(batches_per_window * size)
    if not repeat:
        windows = _merge_last_window(windows, batches_per_window * size)
    windows = windows.enumerate()

    def deal(index, window):
        count = tf.shape(window[0])[0]
        order = _deal(count, size)
        full = count // size
        permutation = tf.range(full)
        if shuffle:
            permutation = tf.random.experimental.stateless_shuffle(
                permutation, seed=tf.stack([tf.cast(seed, tf.int64), index]))
        # Full batches (permuted), then the window's smaller last batch, if any (only the last window has one, and
        # with `repeat=False` it takes in the stream's last partial window: K to 2K − 1 batches, so no tiny window).
        head = tf.reshape(tf.gather(tf.reshape(order[:full * size], [full, size]), permutation), [-1])
        order = tf.concat([head, order[full * size:]], 0)
        return tuple(tf.gather(x, order) for x in window), full, count - full * size

    def to_batches(window, full, rest):
        full_batches = tf.data.Dataset.from_tensor_slices(
            tuple(tf.reshape(x[:full * size], tf.concat([[full, size], tf.shape(x)[1:]], 0)) for x in window))
        last = tf.data.Dataset.from_tensors(tuple(x[full * size:] for x in window)).take(tf.cast(rest > 0, tf.int64))
        return full_batches.concatenate(last)

    batches = windows.map(deal, num_parallel_calls=AUTOTUNE, deterministic=True).flat_map(to_batches)
    if drop_remainder:
        batches = batches.filter(lambda f, l, w: tf.shape(f)[0] == size)
    if shuffle:  # mix windows; the window permutation already separates neighbouring chunks of an utterance
        batches = batches.shuffle(64, seed=seed + 2, reshuffle_each_iteration=True)
    return batches.prefetch(AUTOTUNE).with_options(_options())


def feedforward_dataset(manifest, *, window: int = 16, context: int = 5, batch_size: int = 32,
                        shuffle: bool = True, seed: int = 0, input_context=None, repeat: bool = False,
                        shuffle_buffer: int = 4096, drop_remainder: bool = False,
                        augment: AugmentConfig | None = None) -> tf.data.Dataset:
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
      augment: see `utterance_dataset`. Default None.

    Returns:
      Dataset of `(features [B, window + 2 context, D], labels [B, …] int32, weights [B, …] float32)`.
    """
    utterances = utterance_dataset(manifest, shuffle=shuffle, seed=seed, input_context=input_context, repeat=repeat,
                                   require_labels=True, augment=augment)
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


__all__ = ["noise_sources", "eval_dataset", "feedforward_dataset", "feedforward_windows", "recurrent_chunks",
           "recurrent_dataset", "utterance_dataset"]
