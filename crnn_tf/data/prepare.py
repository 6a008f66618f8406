"""Kaldi data dir (+ alignments) → sharded TFRecords, prior counts, CMVN stats and `manifest.json`.

Two passes, both resumable:

1. *static*: per utterance, static fbank (from audio, or Kaldi's feats.scp) into `static/feats.{ark,scp}` (Kaldi
   readable), CMVN stats per utterance / speaker (`cmvn.{ark,scp}`, Kaldi layout) / global (`cmvn_global.npy`), length
   checks against the alignment. Bad utterances are skipped with a reason. `static/status.json` marks it done.
2. *shards*: CMVN + deltas on the full utterance, then trimming to the alignment, written as
   `shard-NNNNN-of-MMMMM.tfrecord`; a finished shard has a `.json` side file and is kept on a rerun.

Example:
>>> manifest = prepare_data_dir("data/train", "prepared/train", alignments="exp/mono_ali",
...                             transition_model="exp/mono_ali/final.mdl")  # doctest: +SKIP
"""
import hashlib
import json
import logging
import os

import numpy as np
import tensorflow as tf

from crnn_tf.data import kaldi_io, tfrecords
from crnn_tf.data.audio import AudioDecodeError
from crnn_tf.data.datadir import DataDir
from crnn_tf.features import FeatureConfig, cmvn_stats, fbank, normalize_and_add_deltas, sum_stats

log = logging.getLogger(__name__)

STATIC_DIR = "static"


def _progress(iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a declared dependency; still never fail for want of a progress bar
        return iterable
    return tqdm(iterable, **kwargs)


def _write_json(path: str, values: dict) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(values, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def _read_json(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


class _Frontend:
    """Traced once per config: static fbank of one waveform, and CMVN + deltas of one utterance."""

    def __init__(self, config: FeatureConfig):
        self.config = config
        dim = config.num_bands
        self.fbank = tf.function(lambda wav: fbank(wav, config=config)[0],
                                 input_signature=[tf.TensorSpec([None], tf.float32)])
        self.finish = tf.function(
            lambda static, stats: normalize_and_add_deltas(static[None], tf.shape(static)[:1], config,
                                                           stats=stats)[0],
            input_signature=[tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([2, dim + 1], tf.float64)])


def _static_features(data: DataDir, utt: str, frontend: _Frontend, feats_table) -> np.ndarray:
    config = frontend.config
    if feats_table is not None:
        if utt not in feats_table:
            raise ValueError(f"{utt}: not in {data.feats_scp}")
        static = np.asarray(feats_table[utt], np.float32)
        if static.shape[1] != config.num_bands:
            raise ValueError(f"{utt}: feats.scp has {static.shape[1]} columns, FeatureConfig expects "
                             f"num_bands={config.num_bands}")
    else:
        waveform = data.load_audio(utt, config.sample_rate)
        if config.num_frames(waveform.size) == 0:
            raise ValueError(f"{utt}: audio of {waveform.size} samples is shorter than one frame")
        static = frontend.fbank(waveform).numpy()
    if not np.all(np.isfinite(static)):
        raise ValueError(f"{utt}: features contain NaN or infinity")
    return static


def _static_pass(data, out_dir, utts, alignments, frontend, fingerprint, use_feats_scp, max_mismatch, progress):
    """Pass 1; returns the status dict (kept utterances with frame counts, skipped with reasons)."""
    static_dir = os.path.join(out_dir, STATIC_DIR)
    status_path = os.path.join(static_dir, "status.json")
    status = _read_json(status_path)
    if status is not None and status["fingerprint"] == fingerprint:
        log.info("static features already computed in %s; reusing them", static_dir)
        return status
    os.makedirs(static_dir, exist_ok=True)
    feats_table = kaldi_io.read_matrix_table(data.feats_scp) if use_feats_scp else None
    kept, skipped, utt_stats = {}, [], {}
    wspec = f"ark,scp:{static_dir}/feats.ark,{static_dir}/feats.scp"
    with kaldi_io.kio.FloatMatrixWriter(wspec) as writer:
        for utt in _progress(utts, progress, desc="features", unit="utt"):
            try:
                static = _static_features(data, utt, frontend, feats_table)
                frames = static.shape[0]
                if alignments is not None:
                    if utt not in alignments:
                        raise ValueError(f"{utt}: no alignment")
                    labels = alignments[utt].size
                    if abs(frames - labels) > max_mismatch:
                        raise ValueError(f"{utt}: feature/label length mismatch: {frames} frames vs {labels} "
                                         f"labels (tolerance ±{max_mismatch})")
                    frames = min(frames, labels)
            except (AudioDecodeError, ValueError) as error:
                log.warning("skipping utterance: %s", error)
                skipped.append({"utt_id": utt, "reason": str(error)})
                continue
            writer[utt] = static
            kept[utt] = frames
            utt_stats[utt] = cmvn_stats(static).numpy()
    spk_stats = {}
    for utt, stats in utt_stats.items():
        spk_stats.setdefault(data.utt2spk[utt], []).append(stats)
    spk_stats = {spk: sum_stats(stats) for spk, stats in spk_stats.items()}
    kaldi_io.write_matrices(f"ark,scp:{out_dir}/cmvn.ark,{out_dir}/cmvn.scp", sorted(spk_stats.items()), double=True)
    if utt_stats:
        np.save(os.path.join(out_dir, "cmvn_global.npy"), sum_stats(utt_stats.values()))
    status = {"fingerprint": fingerprint, "kept": kept, "skipped": skipped}
    _write_json(status_path, status)
    return status


def _named_files(spec: str | None) -> list[str]:
    """The local files a path, rspecifier (`ark:x.ark`), directory of `ali.*.gz` or glob names."""
    if not spec:
        return []
    return kaldi_io.alignment_paths(spec.split(":", 1)[1] if ":" in spec.split("/")[0] else spec)


def _files_digest(paths: list[str]) -> str:
    """SHA-256 over the contents of those of `paths` that exist (with their names)."""
    digest = hashlib.sha256()
    for path in paths:
        if os.path.isfile(path):
            digest.update(path.encode() + b"\0")
            with open(path, "rb") as f:
                while chunk := f.read(1 << 22):
                    digest.update(chunk)
    return digest.hexdigest()


def _check_kaldi_cmvn(path: str, spk_stats: dict, utt2spk: dict, num_bands: int) -> None:
    """A cmvn.scp must cover every speaker, with stats of the features' dimension (Kaldi's [2, dim + 1])."""
    for utt, spk in utt2spk.items():
        if spk not in spk_stats:
            raise ValueError(f"{path}: no statistics for speaker {spk!r} of utterance {utt!r}")
        if spk_stats[spk].shape != (2, num_bands + 1):
            raise ValueError(f"{path}: statistics of speaker {spk!r} are {spk_stats[spk].shape[0]} x "
                             f"{spk_stats[spk].shape[1]}, the features have {num_bands} columns (expected 2 x "
                             f"{num_bands + 1})")


def _cmvn_for(config, utt, spk, spk_stats, global_stats, dim):
    if config.cmvn == "speaker":
        return spk_stats[spk]
    if config.cmvn == "global":
        return global_stats
    return np.zeros([2, dim + 1])  # unused by "utterance"/"none"


def prepare_data_dir(data_dir: str, output_dir: str, *, alignments: str | None = None,
                     transition_model: str | None = None, config: FeatureConfig | None = None,
                     mode: str = "features", num_targets: int | None = None, utterances_per_shard: int = 256,
                     use_feats_scp: bool = False, max_length_mismatch: int = 2,
                     global_cmvn_stats: np.ndarray | None = None, progress: bool = True,
                     allow_pipes: bool = False) -> tfrecords.Manifest:
    """Prepares a Kaldi data directory for training; see the module docstring for the passes.

    Args:
      data_dir: Kaldi data dir (wav.scp [+ segments], utt2spk, … or feats.scp).
      output_dir: local output directory (created; an existing one is resumed).
      alignments: pdf-id ark/scp, or transition-id `ali.*.gz` (file, glob or directory) with `transition_model`.
        Default None (no labels: e.g. test data).
      transition_model: Kaldi `final.mdl` mapping transition ids to pdf ids. Default None.
      config: `FeatureConfig`; default `FeatureConfig()`.
      mode: "features" (store final features) or "audio" (store PCM; pipelines compute features). Default "features".
      num_targets: number of pdfs; default the transition model's pdf count when `transition_model` is given (what
        the decoder will expect), else max pdf id + 1 (pass it: unseen high pdfs would shrink the output layer).
      utterances_per_shard: default 256.
      use_feats_scp: read static features from the dir's feats.scp (columns must equal `config.num_bands`) and, with
        cmvn="speaker", its cmvn.scp, instead of computing fbank from audio. Default False.
      max_length_mismatch: frames by which features and alignment may differ (trimmed); beyond it the utterance is
        skipped with its name and both lengths. Default 2.
      global_cmvn_stats: `[2, num_bands + 1]` stats that cmvn="global" normalises with, instead of this dir's own:
        pass the training data's (`Manifest.global_cmvn_stats`) when preparing dev or test data, so that they are
        normalised exactly as the model's training data and as its export will be. Default None (this dir's own).
      progress: show tqdm progress bars. Default True.
      allow_pipes: run wav.scp's `cmd |` entries (through /bin/sh). Default False: such an utterance is skipped
        with a reason saying how to allow it.

    Returns:
      The written `Manifest`.

    Raises:
      ValueError: when not one utterance could be prepared (a run that keeps nothing fails, naming the reasons).
    """
    config = config or FeatureConfig()
    if mode not in ("features", "audio"):
        raise ValueError(f"mode={mode!r}; expected 'features' or 'audio'")
    if mode == "audio" and use_feats_scp:
        raise ValueError("mode='audio' needs audio; it cannot be combined with use_feats_scp")
    data = DataDir.load(data_dir, allow_pipes=allow_pipes)
    if use_feats_scp and data.feats_scp is None:
        raise ValueError(f"{data_dir}: use_feats_scp=True but there is no feats.scp")
    utts = data.utterances
    labels = kaldi_io.read_alignments(alignments, transition_model) if alignments else None
    if labels is not None and num_targets is None and transition_model is not None:
        num_targets = int(kaldi_io.read_transition_id_to_pdf(transition_model).max()) + 1  # the model's pdf count
    if labels is not None and num_targets is None:
        num_targets = int(max((int(a.max()) for a in labels.values() if a.size), default=-1)) + 1
    os.makedirs(output_dir, exist_ok=True)
    # Contents, not paths: an alignment rewritten in place must not resume with the old labels.
    sources = [os.path.join(data_dir, n) for n in ("wav.scp", "segments", "utt2spk", "feats.scp", "cmvn.scp")]
    fingerprint = hashlib.sha256(json.dumps(
        [config.to_dict(), os.path.abspath(data_dir), alignments, transition_model, use_feats_scp,
         max_length_mismatch, utts, _files_digest(sources + _named_files(alignments) + _named_files(transition_model))],
        sort_keys=True).encode()).hexdigest()
    frontend = _Frontend(config)
    status = _static_pass(data, output_dir, utts, labels, frontend, fingerprint, use_feats_scp,
                          max_length_mismatch, progress)
    kept = status["kept"]
    if not kept:
        reasons = "; ".join(item["reason"] for item in status["skipped"][:3])
        raise ValueError(f"{data_dir}: none of its {len(utts)} utterances could be prepared (first reasons: "
                         f"{reasons or 'the data dir lists no utterances'})")

    spk_stats = kaldi_io.read_cmvn_stats(f"{output_dir}/cmvn.scp")
    if use_feats_scp and config.cmvn == "speaker" and data.cmvn_scp:
        spk_stats = kaldi_io.read_cmvn_stats(data.cmvn_scp)  # Kaldi's own stats, as apply-cmvn would use
        _check_kaldi_cmvn(data.cmvn_scp, spk_stats, {utt: data.utt2spk[utt] for utt in kept}, config.num_bands)
    global_path = os.path.join(output_dir, "cmvn_global.npy")
    if global_cmvn_stats is not None:
        global_cmvn_stats = np.asarray(global_cmvn_stats, np.float64)
        if global_cmvn_stats.shape != (2, config.num_bands + 1):
            raise ValueError(f"global_cmvn_stats has shape {global_cmvn_stats.shape}; expected "
                             f"{(2, config.num_bands + 1)} for {config.num_bands} bands")
        np.save(global_path, global_cmvn_stats)
    global_stats = np.load(global_path) if os.path.exists(global_path) else None
    stats_digest = "" if global_stats is None else hashlib.sha256(global_stats.tobytes()).hexdigest()
    static_table = kaldi_io.read_matrix_table(f"{output_dir}/{STATIC_DIR}/feats.scp") if kept else None

    order = [utt for utt in utts if utt in kept]
    num_shards = max(1, -(-len(order) // utterances_per_shard))
    shards = []
    for index in _progress(range(num_shards), progress, desc="shards", unit="shard"):
        members = order[index * utterances_per_shard:(index + 1) * utterances_per_shard]
        name = f"shard-{index:05d}-of-{num_shards:05d}.tfrecord"
        path = os.path.join(output_dir, name)
        shard_fingerprint = hashlib.sha256(
            f"{fingerprint}:{mode}:{utterances_per_shard}:{stats_digest}".encode()).hexdigest()
        info = _read_json(path + ".json")
        if (info is not None and info["fingerprint"] == shard_fingerprint and os.path.exists(path)
                and os.path.getsize(path) == info["size"]):
            shards.append({k: info[k] for k in ("path", "num_utterances", "num_frames", "sha256")})
            continue
        with tf.io.TFRecordWriter(path + ".tmp") as writer:
            for utt in members:
                spk, frames = data.utt2spk[utt], kept[utt]
                utt_labels = None if labels is None else labels[utt][:frames]
                stats = _cmvn_for(config, utt, spk, spk_stats, global_stats, config.num_bands)
                if mode == "features":
                    final = frontend.finish(np.asarray(static_table[utt], np.float32), stats).numpy()[:frames]
                    writer.write(tfrecords.features_example(utt, final, utt_labels, spk))
                else:
                    waveform = data.load_audio(utt, config.sample_rate)
                    writer.write(tfrecords.audio_example(utt, waveform, frames, utt_labels, spk,
                                                         stats if config.cmvn == "speaker" else None))
        os.replace(path + ".tmp", path)
        info = {"path": name, "num_utterances": len(members), "num_frames": int(sum(kept[u] for u in members)),
                "sha256": tfrecords.file_sha256(path), "size": os.path.getsize(path),
                "fingerprint": shard_fingerprint}
        _write_json(path + ".json", info)
        shards.append({k: info[k] for k in ("path", "num_utterances", "num_frames", "sha256")})

    prior_file = None
    if labels is not None:
        from crnn_tf.data.priors import count_pdfs

        counts = count_pdfs((labels[utt][:kept[utt]] for utt in order), num_targets)
        prior_file = "prior_counts.npy"
        np.save(os.path.join(output_dir, prior_file), counts)
    manifest = tfrecords.Manifest(
        directory=output_dir, mode=mode, feature_dim=config.feature_dim, num_targets=num_targets or 0,
        num_utterances=len(order), num_frames=int(sum(kept.values())), feature_config=config, shards=shards,
        prior_counts_file=prior_file,
        cmvn={"mode": config.cmvn, "speaker_stats": "cmvn.scp",
              "global_stats": "cmvn_global.npy" if global_stats is not None else None},
        skipped=status["skipped"],
        source={"data_dir": os.path.abspath(data_dir), "alignments": alignments, "transition_model": transition_model,
                "use_feats_scp": use_feats_scp})
    tfrecords.write_manifest(manifest)
    if status["skipped"]:
        log.warning("skipped %d of %d utterances (reasons in %s/manifest.json)", len(status["skipped"]),
                    len(utts), output_dir)
    return manifest
