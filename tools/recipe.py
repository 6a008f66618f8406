r"""crnn-recipe: the whole hybrid chain, on synthetic speech, real recordings or both, ending in a paper-style table.

    data (synthetic corpus: espeak-ng, flite, festival, foreign-accented espeak-ng; test voices unseen; FSDD by
    speaker; any Kaldi data dirs)
    → lang, monophone GMM-HMM alignment (bootstrapped on the synthetic timings, or a flat start), digit-loop HCLG
    → features + labels as TFRecords → train FFNN, LSTMP and CLSTM (same budget, augmented on the fly)
    → export SavedModels → start the TF-Serving-compatible server → decode dev and every test set through it (gRPC)
    → WER/CER with error counts and bootstrap intervals, next to the GMM-HMM that labelled the frames → report/
      (each test set's hypotheses in decode/<net>/<set>/hyp.txt)

Stages (Kaldi-style `--stage`/`--stop_stage` select a range; a finished stage is also skipped on a re-run, its
marker being `<work_dir>/done/<stage>`):

    0 data   1 hmm   2 features   3 train   4 export   5 decode   6 report

Real speech: the Free Spoken Digit Dataset is read from a checkout (`--fsdd`), split by speaker. Its recordings have
no phone timings: with synthetic speech beside them, the GMM-HMM is bootstrapped on the synthetic timings, aligns
the real recordings, and is retrained on the union; without, it starts flat.

Examples:
    crnn-recipe --work_dir=exp/demo --report_dir=report                     # synthetic only (make demo)
    crnn-recipe --work_dir=exp/fsdd --fsdd=free-spoken-digit-dataset --fsdd_test_speakers=jackson \
        --fsdd_train_speakers=nicolas,theo                                    # Kaldi's published split
    crnn-recipe --work_dir=exp/synth_on_fsdd --fsdd=... --fsdd_test_speakers=all --fsdd_train_speakers=none
    crnn-recipe ... --extra_train=data/mine/train --test_sets=mine=data/mine/test --stage=5
    crnn-recipe ... --augment_noise_prob=0.5 --augment_noise_colours=white,pink,babble   # babble: the synthesised
                                                                  # training speech, 5 talkers at once
    crnn-recipe ... --fsdd=... --augment_noise_prob=0.5 --augment_noise_colours=recorded   # the real recordings'
                                                                  # own quiet stretches (room, microphone)
    crnn-recipe --work_dir=exp/demo_tri1 --senones=tri1 --num_leaves=300 --tot_gauss=1500   # CD-DNN-HMM
    crnn-recipe --work_dir=exp/demo_dropout --dropout=0.2     # every net with dropout 0.2 (beside SpecAugment)
    crnn-recipe ... --chunk_length=40 --chunk_overlap=10   # recurrent nets on 40-frame BPTT chunks (paper: 15, 5)

Senones: monophone states by default; with --senones=tri1 a decision tree is built on the monophone alignment
(`crnn_tf.hmm.triphone`), the nets learn its tied triphone states and decode with its graph, and the report has both
GMM-HMMs (triphone and monophone) beside the nets.
"""
import concurrent.futures
import json
import os
import pathlib
import time

from absl import app, flags, logging

from crnn_tf.features.config import FeatureConfig
from tools import common_flags

FLAGS = flags.FLAGS
STAGES = ("data", "hmm", "features", "train", "export", "decode", "report")
# SpecAugment on by default: it took the FSDD held-out-speaker WER from 3.4 % to 0.8 % (docs/real_speech.md).
RECIPE_AUGMENT = {"time_masks": 2, "time_mask_frames": 5, "freq_masks": 2, "freq_mask_bands": 4}


def define_flags():
    """Defines the command-line flags (in run(), so that importing this module defines none)."""
    flags.DEFINE_string("work_dir", "exp/demo", "Where every stage writes (corpus/, fsdd/, data/, hmm/, prepared/, "
                        "models/, export/).")
    flags.DEFINE_string("report_dir", "report", "Where the table and the charts go.")
    flags.DEFINE_integer("num_utterances", 1500, "Synthetic corpus size over train/dev/test (10% dev, 10% test); 0 for "
                         "no synthetic speech.")
    flags.DEFINE_enum("task", "digits", ["digits", "commands"], "Synthetic corpus task (FSDD needs digits).")
    flags.DEFINE_list("synthesizers", ["espeak", "flite"], "Synthesisers of the synthetic corpus (espeak and "
                      "flite required; festival adds three training voices, espeak_foreign 14 foreign-accented ones).")
    flags.DEFINE_bool("telephone", True, "Band-pass the synthetic corpus to 300-3400 Hz (a telephone channel; only "
                      "at 8 kHz).")
    flags.DEFINE_integer("seed", 0, "Seeds the corpus, initialisation, data order and augmentation.")
    flags.DEFINE_string("fsdd", None, "A checkout of the Free Spoken Digit Dataset (read in place, never copied).")
    flags.DEFINE_list("fsdd_test_speakers", ["jackson"], "FSDD test speakers; 'all' for every speaker.")
    flags.DEFINE_list("fsdd_train_speakers", [], "FSDD training speakers (default: all but the test speakers); 'none' "
                      "to train on no FSDD audio.")
    flags.DEFINE_string("fsdd_dev_takes", "0-4", "Takes of the FSDD training speakers held out as dev.")
    flags.DEFINE_list("extra_train", [], "More Kaldi data dirs to train on (words must be in the lexicon).")
    flags.DEFINE_list("test_sets", [], "More test sets, NAME=DIR (Kaldi data dirs with text).")
    flags.DEFINE_integer("gmm_iters", 12, "EM iterations of the monophone GMM-HMM.")
    flags.DEFINE_integer("max_gauss", 600, "Gaussians after mixture growth.")
    flags.DEFINE_enum("senones", "mono", ["mono", "tri1"], "The nets' targets and the decoding graph: monophone "
                      "states, or the tied triphone states of a decision tree built on the monophone alignment (tri1; "
                      "the monophone GMM-HMM is then decoded beside the triphone one).")
    common_flags.define_triphone_flags(num_leaves=300, tot_gauss=1500, tri_iters=12)  # as many as --gmm_iters
    flags.DEFINE_list("nets", [
        "FFNN=3xReLU512",
        "LSTMP=Lstm384P128+2xReLU512",
        "CLSTM=CLstm48P32+Pool3+Lstm384P128+2xReLU512",
    ], "NAME=SPEC pairs: the networks to train and compare (scaled-down zoo specs with the paper's structure).")
    flags.DEFINE_list("net_seeds", [], "NAME=SEED pairs: a net's own seed for initialisation, data order and "
                      "augmentation (default --seed), so that one spec trained twice gives two nets to --combine.")
    flags.DEFINE_list("combine", [], "NAME=NET+NET… system combinations (Kaldi's nnet combination at the frame level): "
                      "the mean of the listed nets' log-likelihoods, decoded and tuned on dev like any net.")
    flags.DEFINE_integer("epochs", 4, "Training epochs, the same budget for every net.")
    flags.DEFINE_enum("optimizer", "adam", ["sgd", "adam"], "sgd = the paper's momentum SGD; adam converges faster "
                      "at demo scale.")
    flags.DEFINE_float("lr_initial", 2e-3, "Initial learning rate (exponential decay to lr_final).")
    flags.DEFINE_float("lr_final", 2e-4, "Final learning rate.")
    flags.DEFINE_float("dropout", 0.0, "Dropout rate of every net, in [0, 1): the fraction of each hidden block's "
                       "outputs zeroed in training (after every ReLU, Maxout, Conv/CLstm and Lstm block; not the "
                       "features, the logits or the recurrent state), as crnn-train --dropout; 0 = none. A regulariser "
                       "beside SpecAugment (--augment_*), in training only: the exports score without it.")
    common_flags.validate_dropout_flag()
    flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing ε of every net's frame targets, in [0, 1), as "
                       "crnn-train --label_smoothing: (1 - ε) on the aligned senone, ε spread over all; 0 = none.")
    common_flags.validate_label_smoothing_flag()
    flags.DEFINE_integer("chunk_length", 15, "Truncated-BPTT chunk length of the recurrent nets, in frames (paper: "
                         "15); as crnn-train --chunk_length. Longer chunks let the LSTMs learn from more history.")
    flags.DEFINE_integer("chunk_overlap", 5, "Frames each chunk re-reads from the one before it to warm up the "
                         "state, unlabelled (paper: 5); as crnn-train --chunk_overlap.")
    flags.DEFINE_integer("label_delay", 5, "Frames by which the recurrent nets' targets lag their inputs (paper: 5): "
                         "how far ahead a unidirectional LSTM sees; as crnn-train --label_delay.")
    # The feature options; --sample_rate is the synthetic corpus's rate too (8000, FSDD's, or 16000). Speaker CMVN with
    # variances: per-utterance CMVN hurts on short, trimmed recordings, and the served waveform signature takes each
    # request's speaker stats.
    common_flags.define_feature_flags(FeatureConfig(cmvn="speaker", norm_vars=True))
    common_flags.define_augment_flags(None)
    flags.DEFINE_list("acoustic_scales", ["0.02", "0.03", "0.04", "0.05", "0.067", "0.083", "0.1", "0.125", "0.15",
                                          "0.2"],
                      "Decoder acoustic scales tried on dev (Kaldi's score.sh sweeps the LM weight, its inverse); "
                      "every test set is decoded with the one best on dev.")
    flags.DEFINE_list("word_insertion_penalties", ["0", "0.5", "1", "2"],
                      "Word insertion penalties tried on dev with every acoustic scale (as Kaldi's score.sh does).")
    flags.DEFINE_float("prior_scale", 1.0, "Weight of the log prior subtracted from the log posteriors.")
    flags.DEFINE_integer("decode_workers", 2, "Concurrent recognition requests to the server.")
    flags.DEFINE_integer("stage", 0, "First stage to run (0 data … 6 report); earlier stages must have finished.")
    flags.DEFINE_integer("stop_stage", 6, "Last stage to run.")
    for name, value in RECIPE_AUGMENT.items():
        FLAGS.set_default(common_flags.AUGMENT_PREFIX + name, value)


class Recipe:
    """The stages over one work dir; each stage's result is JSON kept in `work/done/<stage>` (resume marker)."""

    def __init__(self, work: pathlib.Path, first_stage: int = 0, last_stage: int = len(STAGES) - 1):
        self.work = work
        self.first_stage, self.last_stage = first_stage, last_stage

    def run_stage(self, name: str, fn, *args):
        """Runs `fn(*args)` unless its marker exists; refuses a stage outside the selected range that never ran."""
        marker = self.work / "done" / name
        if marker.exists():
            logging.info("stage %s: already done, skipped", name)
            return json.loads(marker.read_text())
        index = STAGES.index(name.split("_", 1)[0])
        if not self.first_stage <= index <= self.last_stage:
            raise app.UsageError(f"stage {name} ({index}) has not run yet and lies outside --stage={self.first_stage}"
                                 f" … --stop_stage={self.last_stage}")
        start = time.time()
        print(f"== stage {name}", flush=True)
        result = fn(*args)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(result, indent=1))
        print(f"   {name} done in {time.time() - start:.0f} s", flush=True)
        return result

    def wanted(self, name: str) -> bool:
        return STAGES.index(name) <= self.last_stage


def data_stage(work: pathlib.Path) -> dict:
    """Synthetic corpus, FSDD split and extra dirs → `data/{train,dev}` (combined) and the test sets."""
    from crnn_tf.corpus import make_corpus
    from crnn_tf.corpus.lexicon import TASKS
    from crnn_tf.corpus.make import write_dict
    from crnn_tf.data.datadir import combine_data_dirs

    train, dev, tests, info, vocabularies = [], [], {}, {}, {}
    synthetic_train = None
    sample_rate = common_flags.feature_config_from_flags().sample_rate
    if FLAGS.num_utterances > 0:
        corpus = make_corpus(str(work / "corpus"), num_utterances=FLAGS.num_utterances, task=FLAGS.task,
                             sample_rate=sample_rate, seed=FLAGS.seed, synthesizers=FLAGS.synthesizers,
                             telephone=FLAGS.telephone and sample_rate == 8000)
        synthetic_train = str(work / "corpus" / "train")
        train.append(synthetic_train)
        dev.append(str(work / "corpus" / "dev"))
        tests["synthetic"] = str(work / "corpus" / "test")
        info["synthetic"] = {"counts": corpus["counts"], "utterances_per_second": corpus["utterances_per_second"]}
    if FLAGS.fsdd:
        from crnn_tf.corpus.fsdd import DIGIT_WORDS, prepare_fsdd, scan_recordings

        if FLAGS.task != "digits" or common_flags.feature_config_from_flags().sample_rate != 8000:
            raise app.UsageError("FSDD holds 8 kHz digits: use --task=digits --sample_rate=8000")
        speakers = sorted({r.speaker for r in scan_recordings(FLAGS.fsdd)})
        test_speakers = speakers if FLAGS.fsdd_test_speakers == ["all"] else FLAGS.fsdd_test_speakers
        train_speakers = FLAGS.fsdd_train_speakers or None
        if FLAGS.fsdd_train_speakers == ["none"]:
            train_speakers = []
        fsdd = prepare_fsdd(FLAGS.fsdd, str(work / "fsdd"), test_speakers=test_speakers,
                            train_speakers=train_speakers, dev_takes=FLAGS.fsdd_dev_takes)
        train += [fsdd["splits"]["train"]] if "train" in fsdd["splits"] else []
        dev += [fsdd["splits"]["dev"]] if "dev" in fsdd["splits"] else []
        tests["fsdd"] = fsdd["splits"]["test"]
        info["fsdd"] = {"counts": fsdd["counts"], "speakers": fsdd["speakers"]}
        # FSDD's task is the ten digits ZERO-NINE: its sets are decoded with a loop over those, never "OH".
        vocabularies.update({"fsdd": list(DIGIT_WORDS), "dev_fsdd": list(DIGIT_WORDS)})
    train += [os.path.abspath(d) for d in FLAGS.extra_train]
    for item in FLAGS.test_sets:
        name, sep, path = item.partition("=")
        if not sep or not name or not path or name in tests:
            raise app.UsageError(f"--test_sets entry {item!r} is not NAME=DIR with a new NAME")
        tests[name] = os.path.abspath(path)
    # Decoder settings are tuned on the dev set of each test set's own domain (held-out synthetic voices for the
    # synthetic test, held-out takes of the training speakers for FSDD), on all dev data for the others.
    devs = {"synthetic": dev[0]} if FLAGS.num_utterances > 0 else {}
    if FLAGS.fsdd and "dev" in fsdd["splits"]:
        devs["fsdd"] = fsdd["splits"]["dev"]
    if not train or not dev:
        raise app.UsageError("no training or no dev data: give --num_utterances > 0, or --fsdd with training "
                             "speakers and --fsdd_dev_takes")
    write_dict(str(work / "dict"), TASKS[FLAGS.task])
    train_dir = combine_data_dirs(train, str(work / "data" / "train"))
    dev_dir = combine_data_dirs(dev, str(work / "data" / "dev"))
    devs = devs or {"all": dev_dir.path}
    fallback = "all" if len(devs) > 1 else next(iter(devs))
    tuning = {name: name if name in devs else fallback for name in tests}
    return {"train": train_dir.path, "dev": dev_dir.path, "synthetic_train": synthetic_train, "tests": tests,
            "devs": devs, "tuning": tuning, "vocabularies": vocabularies,
            "dict": str(work / "dict"), "sources": {"train": train, "dev": dev}, "info": info,
            "counts": {"train": len(train_dir.utterances), "dev": len(dev_dir.utterances)}}


def _gmm_config():
    from crnn_tf.hmm.align import GmmTrainConfig

    return GmmTrainConfig(num_iters=FLAGS.gmm_iters, max_gauss=FLAGS.max_gauss,
                          realign_iters=tuple(i for i in GmmTrainConfig().realign_iters if i < FLAGS.gmm_iters),
                          gauss_increase_iters=max(1, FLAGS.gmm_iters - 3))


def hmm_stage(work: pathlib.Path, data: dict) -> dict:
    """Monophone GMM-HMM on the training data, dev alignment, and the digit-loop decoding graph."""
    import dataclasses

    from crnn_tf.hmm import graph as hmm_graph
    from crnn_tf.hmm import lang as hmm_lang
    from crnn_tf.hmm.align import align_with_model, train_mono
    from crnn_tf.data.kaldi_io import read_text_table

    hmm = work / "hmm"
    lang = str(hmm / "lang")
    hmm_lang.prepare_lang(data["dict"], lang)
    config = _gmm_config()
    train_utts = set(read_text_table(os.path.join(data["train"], "text")))
    synthetic = data["synthetic_train"]
    bootstrap = None
    if synthetic and set(read_text_table(os.path.join(synthetic, "text"))) != train_utts:
        # Real recordings beside synthetic speech: a model bootstrapped on the synthetic timings aligns them, and
        # the union starts from timings + those alignments.
        boot = train_mono(synthetic, lang, str(hmm / "bootstrap"), config)
        bootstrap = align_with_model(data["train"], lang, boot.model, str(hmm / "bootstrap_ali"), config)
        result = train_mono(data["train"], lang, str(hmm / "mono"), config, init_alignment=bootstrap["pdf_ali"])
    elif synthetic:
        result = train_mono(data["train"], lang, str(hmm / "mono"), config)
    else:
        result = train_mono(data["train"], lang, str(hmm / "mono"), dataclasses.replace(config, init="flat"))
    # Every test set is decoded with a digit loop (any sequence of words, each equally likely), never with a
    # grammar learnt from the training texts: isolated words and strings of any length decode under one graph.
    hmm_lang.make_word_loop_grammar(lang)
    hmm_graph.make_hclg(lang, result.model, str(hmm / "graph"))
    mono = {"model": result.model, "graph": str(hmm / "graph"), "lang": lang, "num_pdfs": result.num_pdfs,
            "num_gauss": result.num_gauss, "loglik_per_frame": result.loglik_per_frame}
    system, tree = result, None
    if FLAGS.senones == "tri1":
        from crnn_tf.hmm import triphone

        system = triphone.train_triphone(data["train"], lang, str(hmm / "mono"), str(hmm / "tri1"),
                                         *common_flags.triphone_configs_from_flags())
        hmm_graph.make_hclg(lang, system.model, str(hmm / "tri1" / "graph"))  # the tree beside final.mdl
        written = json.loads((hmm / "tri1" / "train.json").read_text())
        tree = dict(written["tree"], edge_as_silence=written["tree_config"]["edge_as_silence"])
    dev = align_with_model(data["dev"], lang, system.model, str(hmm / "dev_ali"), config)
    graph = str(hmm / "graph") if system is result else str(hmm / "tri1" / "graph")
    return {"model": system.model, "graph": graph, "lang": lang, "pdf_ali": system.pdf_ali,
            "dev_pdf_ali": dev["pdf_ali"], "prior_counts": system.prior_counts, "num_pdfs": system.num_pdfs,
            "senones": FLAGS.senones, "num_gauss": system.num_gauss, "loglik_per_frame": system.loglik_per_frame,
            "tree": tree, "mono": mono, "phone_agreement": system.phone_agreement,
            "seconds": result.seconds + (system.seconds if system is not result else 0.0),
            "failed_utts": len(system.failed_utts), "dev_failed_utts": len(dev["failed_utts"]),
            "bootstrap_failed_utts": None if bootstrap is None else len(bootstrap["failed_utts"])}


def features_stage(work: pathlib.Path, data: dict, hmm: dict) -> dict:
    from crnn_tf.data.prepare import prepare_data_dir

    config = common_flags.feature_config_from_flags()
    mode = "audio" if common_flags.augment_from_flags().needs_audio else "features"
    train = prepare_data_dir(data["train"], str(work / "prepared" / "train"), alignments=hmm["pdf_ali"],
                             config=config, num_targets=hmm["num_pdfs"], mode=mode, progress=False)
    dev = prepare_data_dir(data["dev"], str(work / "prepared" / "dev"), alignments=hmm["dev_pdf_ali"], config=config,
                           num_targets=hmm["num_pdfs"], global_cmvn_stats=train.global_cmvn_stats, progress=False)
    return {split: {"path": m.directory, "frames": m.num_frames, "skipped": len(m.skipped), "mode": m.mode}
            for split, m in (("train", train), ("dev", dev))}


def train_stage(work: pathlib.Path, name: str, spec: str, features: dict, seed: int) -> dict:
    from crnn_tf.train.config import TrainConfig
    from crnn_tf.train.loop import train

    config = TrainConfig(model_spec=spec, train_data=features["train"]["path"], dev_data=features["dev"]["path"],
                         model_dir=str(work / "models" / name), epochs=FLAGS.epochs, optimizer=FLAGS.optimizer,
                         lr_initial=FLAGS.lr_initial, lr_final=FLAGS.lr_final, dropout=FLAGS.dropout,
                         label_smoothing=FLAGS.label_smoothing, chunk_length=FLAGS.chunk_length,
                         chunk_overlap=FLAGS.chunk_overlap, label_delay=FLAGS.label_delay, seed=seed,
                         augment=common_flags.augment_from_flags(), progress=False)
    return train(config)


def export_stage(work: pathlib.Path, name: str) -> dict:
    from crnn_tf.export import export_trained

    path = export_trained(str(work / "models" / name), str(work / "export"), name, version=1,
                          prior_scale=FLAGS.prior_scale)
    return {"path": str(path)}


def _speaker_stats(data_dir: str, config) -> dict:
    """`{speaker: Kaldi CMVN stats}` over each speaker's utterances (what cmvn.scp holds), for speaker CMVN."""
    from crnn_tf.data.datadir import DataDir
    from crnn_tf.features import speaker_cmvn_stats

    data = DataDir.load(data_dir)
    return {spk: speaker_cmvn_stats([data.load_audio(u, config.sample_rate) for u in utts], config)
            for spk, utts in data.spk2utt.items()}


def decoding_graph(hmm: dict, penalty: float, words: list[str] | None = None) -> str:
    """The word-loop HCLG over `words` (default the whole lexicon) with `penalty` on every word (built once, beside
    the model's graph)."""
    import hashlib

    from crnn_tf.hmm.graph import make_word_loop_graph

    if penalty == 0 and words is None:
        return hmm["graph"]
    vocabulary = "all" if words is None else hashlib.sha1(" ".join(sorted(words)).encode()).hexdigest()[:10]
    root = pathlib.Path(hmm["graph"]).parent / "graphs" / f"{vocabulary}_wip{penalty:g}"
    return make_word_loop_graph(hmm["lang"], hmm["model"], str(root), words, word_insertion_penalty=penalty)


def _error_rates(data: dict, decode, hyp_dir: pathlib.Path) -> dict:
    """Tunes acoustic scale and word insertion penalty on each dev set, then decodes each test set with its own
    dev set's choice. `decode(set_names, scale, penalty)` returns (refs, hyps) over those sets. Each test set's
    hypotheses go to `hyp_dir/<set>/hyp.txt` (Kaldi `text` layout, one line per utterance).

    Returns:
      `{"dev_<name>" | test: {wer, errors, words, interval, cer, acoustic_scale, word_insertion_penalty,
      confusions (the ten most frequent errors: [reference word, hypothesis word, count]), …}}`.
    """
    from crnn_tf.hmm.error_rate import error_rate

    def result(names, scale, penalty, hyp_file=None):
        refs, hyps = decode(names, scale, penalty)
        if hyp_file is not None:
            hyp_file.parent.mkdir(parents=True, exist_ok=True)
            hyp_file.write_text("".join(f"{utt} {' '.join(hyps[utt])}\n" for utt in sorted(hyps)))
        wer, cer = error_rate(refs, hyps, "WER"), error_rate(refs, hyps, "CER")
        low, high = wer.interval()
        return {"wer": wer.rate, "errors": wer.errors, "words": wer.ref_len, "interval": [low, high],
                "cer": cer.rate, "cer_errors": cer.errors, "utterances": len(refs), "acoustic_scale": scale,
                "word_insertion_penalty": penalty, "summary": wer.summary(),
                "confusions": [list(c) for c in wer.confusions(top=10)]}

    out, chosen = {}, {}
    scales = [float(x) for x in FLAGS.acoustic_scales]
    for dev in sorted(set(data["tuning"].values()) | set(data["devs"])):
        names = [f"dev_{d}" for d in data["devs"]] if dev == "all" and "all" not in data["devs"] else [f"dev_{dev}"]
        best = None
        for penalty in (float(x) for x in FLAGS.word_insertion_penalties):
            sweep = [result(names, scale, penalty) for scale in scales]
            fewest = min(r["errors"] for r in sweep)
            tied = [r for r in sweep if r["errors"] == fewest]
            pick = tied[len(tied) // 2]  # the middle of a plateau of equally good scales, not its edge
            if best is None or pick["errors"] < best["errors"]:
                best = pick
        out[f"dev_{dev}"], chosen[dev] = best, (best["acoustic_scale"], best["word_insertion_penalty"])
    for test, dev in data["tuning"].items():
        out[test] = result([test], *chosen[dev], hyp_dir / test / "hyp.txt")
    return out


def _references(data_dir: str) -> dict:
    from crnn_tf.data.kaldi_io import read_text_table

    return {utt: text.split() for utt, text in read_text_table(os.path.join(data_dir, "text")).items()}


def decode_stage(work: pathlib.Path, name: str, hmm: dict, data: dict) -> dict:
    """Serves the export, scores dev and every test set through gRPC (waveform signature), decodes and scores."""
    import grpc
    import numpy as np
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from crnn_tf.data.datadir import DataDir
    from crnn_tf.export.saved_model import read_metadata
    from serving.recognize import remote_log_likelihoods
    from serving.server import Server

    sets = decoding_sets(data)
    version_dir = work / "export" / name / "1"
    config = FeatureConfig.from_dict(read_metadata(str(version_dir)).feature_config)
    server = Server(str(work / "export" / name), name, rest_port=-1, grpc_port=0, poll_seconds=0)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    logliks, audio_seconds, start = {}, 0.0, time.time()
    try:
        for set_name, data_dir in sets.items():
            recordings = DataDir.load(data_dir)
            stats = _speaker_stats(data_dir, config) if config.cmvn == "speaker" else {}

            def recognise(utt):
                samples = np.asarray(recordings.load_audio(utt, config.sample_rate), np.float32).reshape(-1)
                inputs = {"waveforms": samples[None], "lengths": np.array([samples.size], np.int32)}
                if stats:
                    inputs["cmvn_stats"] = stats[recordings.utt2spk[utt]][None]
                loglik = remote_log_likelihoods(stub, name, None, "waveform", inputs, timeout=120)
                return samples.size / config.sample_rate, loglik

            utts = recordings.utterances
            with concurrent.futures.ThreadPoolExecutor(FLAGS.decode_workers) as pool:
                scored = list(pool.map(recognise, utts))
            audio_seconds += sum(seconds for seconds, _ in scored)
            logliks[set_name] = {utt: loglik for utt, (_, loglik) in zip(utts, scored)}
    finally:
        channel.close()
        server.stop()
    scoring_seconds = time.time() - start

    _write_log_likelihoods(work / "decode" / name, logliks)
    results = _error_rates(data, _decoder_over(hmm, data, sets, logliks), work / "decode" / name)
    results["scoring_real_time_factor"] = scoring_seconds / max(audio_seconds, 1e-9)
    return results


def _write_log_likelihoods(decode_dir: pathlib.Path, logliks: dict) -> None:
    """Each set's log-likelihoods as `decode_dir/loglikes/<set>.ark` (what Kaldi's nnet-compute writes)."""
    from crnn_tf.data.kaldi_io import write_matrices

    (decode_dir / "loglikes").mkdir(parents=True, exist_ok=True)
    for set_name, by_utt in logliks.items():
        write_matrices(f"ark:{decode_dir / 'loglikes' / set_name}.ark", sorted(by_utt.items()))


def combine_log_likelihoods(members: dict) -> dict:
    """`{set: {utt: mean of the members' [frames, senones] log-likelihoods}}` from `{net: {set: {utt: matrix}}}`.

    The members must have scored the same utterances with the same frames and senones (the same alignments' nets).
    """
    import numpy as np

    names = sorted(members)
    first = members[names[0]]
    combined = {}
    for set_name, by_utt in first.items():
        combined[set_name] = {}
        for utt, matrix in by_utt.items():
            stack = []
            for name in names:
                other = members[name].get(set_name, {}).get(utt)
                if other is None:
                    raise ValueError(f"combination: {name} has no log-likelihoods for {set_name}/{utt}")
                if other.shape != matrix.shape:
                    raise ValueError(f"combination: {set_name}/{utt} is {matrix.shape} frames × senones in "
                                     f"{names[0]} but {other.shape} in {name}")
                stack.append(other)
            combined[set_name][utt] = np.mean(stack, axis=0)
    return combined


def combine_stage(work: pathlib.Path, name: str, members: list[str], hmm: dict, data: dict) -> dict:
    """Decodes the frame-level mean of the members' saved log-likelihoods, tuned on dev like a single net."""
    from crnn_tf.data.kaldi_io import read_matrices

    sets = decoding_sets(data)
    scored = {}
    for member in members:
        folder = work / "decode" / member / "loglikes"
        missing = [s for s in sets if not (folder / f"{s}.ark").exists()]
        if missing:
            raise app.UsageError(f"--combine {name}: {member} has no saved log-likelihoods for {missing} in {folder}; "
                                 f"decode it with this recipe version first")
        scored[member] = {s: dict(read_matrices(f"ark:{folder / s}.ark")) for s in sets}
    logliks = combine_log_likelihoods(scored)
    return _error_rates(data, _decoder_over(hmm, data, sets, logliks), work / "decode" / name)


def decoding_sets(data: dict) -> dict:
    """`{set name: data dir}`: every dev set as `dev_<name>`, then the test sets."""
    return {**{f"dev_{name}": path for name, path in data["devs"].items()}, **data["tests"]}


def _decoder_over(hmm: dict, data: dict, sets: dict, logliks: dict):
    """`decode(set_names, scale, penalty) -> (refs, hyps)` over already scored utterances, each set decoded with the
    word loop over its own task's vocabulary (`data["vocabularies"]`, default the whole lexicon)."""
    from crnn_tf.hmm.decoder import HybridDecoder

    references = {name: _references(path) for name, path in sets.items()}  # read once, not per setting tried
    vocabularies = data.get("vocabularies", {})
    decoders = {}  # one per graph: the sweep changes only the acoustic scale, which each decode call takes

    def decode(names, scale, penalty):
        refs, hyps = {}, {}
        for name in names:
            graph = decoding_graph(hmm, penalty, vocabularies.get(name))
            if graph not in decoders:
                decoders[graph] = HybridDecoder(graph)
            decoder = decoders[graph]
            refs.update(references[name])
            hyps.update({utt: decoder.decode(x, utt=utt, acoustic_scale=scale).words
                         for utt, x in logliks[name].items()})
        return refs, hyps
    return decode


def _gmm_description(system: dict, detailed: bool) -> str:
    """The report's spec of a GMM-HMM: 'monophone, 600 Gaussians' (the monophone-only recipe's, unchanged), or with
    `detailed` its pdf count, Gaussians and the training data's GMM log-likelihood per frame, for comparing systems."""
    kind = "triphone tree" if system.get("senones", "mono") == "tri1" else "monophone"
    if not detailed:
        return f"{kind}, {FLAGS.max_gauss} Gaussians"
    loglik = system.get("loglik_per_frame")
    return (f"{kind}, {system['num_pdfs']} pdfs, {system.get('num_gauss')} Gaussians"
            + ("" if loglik is None else f", train log-lik/frame {loglik:.2f}"))


def gmm_decode_stage(work: pathlib.Path, hmm: dict, data: dict, name: str = "GMM") -> dict:
    """A GMM-HMM (by default the one that labelled the frames) decoded with its graphs and the same tuning (the
    baseline); hypotheses go to decode/<name>."""
    from crnn_tf.hmm.align import read_gmm_model
    from crnn_tf.hmm.features import compute_mfcc

    _, gmm = read_gmm_model(hmm["model"])
    sets = decoding_sets(data)
    logliks = {name: {u: gmm.loglik(f) for u, f in compute_mfcc(path).items()} for name, path in sets.items()}
    return _error_rates(data, _decoder_over(hmm, data, sets, logliks), work / "decode" / name)


def _count_params(work: pathlib.Path, name: str) -> int:
    from crnn_tf.train.checkpoints import load_trained_model

    model, _ = load_trained_model(str(work / "models" / name))
    return model.count_params()


def _combinations(items: list[str], nets: dict) -> dict:
    """`{name: [member nets]}` from `--combine` items `NAME=NET+NET…`."""
    combinations = {}
    for item in items:
        name, _, members = item.partition("=")
        members = [m for m in members.split("+") if m]
        if not name or len(members) < 2:
            raise app.UsageError(f"--combine item {item!r}: expected NAME=NET+NET… with at least two nets")
        if name in nets or name == "GMM":
            raise app.UsageError(f"--combine name {name!r} is already a net's name")
        combinations[name] = members
    return combinations


def _net_seeds(items: list[str], nets: dict, default: int) -> dict:
    """`{net: seed}` for every net: `--net_seeds` items `NAME=SEED` override `default` (`--seed`)."""
    seeds = dict.fromkeys(nets, default)
    for item in items:
        name, _, seed = item.partition("=")
        if name not in nets:
            raise app.UsageError(f"--net_seeds item {item!r}: {name!r} is not one of the nets ({', '.join(nets)})")
        try:
            seeds[name] = int(seed)
        except ValueError:
            raise app.UsageError(f"--net_seeds item {item!r}: expected NAME=SEED with an integer seed") from None
    return seeds


def run_recipe(work: pathlib.Path, first_stage: int = 0, last_stage: int = len(STAGES) - 1) -> str | None:
    """Runs the selected stages over `work` (flags give the settings); returns the report table once written."""
    from tools.report import read_metrics, write_report

    recipe = Recipe(work, first_stage, last_stage)
    nets = dict(item.split("=", 1) for item in FLAGS.nets)
    combinations = _combinations(FLAGS.combine, nets)
    seeds = _net_seeds(FLAGS.net_seeds, nets, FLAGS.seed)
    start = time.time()
    data = recipe.run_stage("data", data_stage, work)
    if not recipe.wanted("hmm"):
        return None
    hmm = recipe.run_stage("hmm", hmm_stage, work, data)
    if not recipe.wanted("features"):
        return None
    features = recipe.run_stage("features", features_stage, work, data, hmm)
    sets = [*(f"dev_{name}" for name in sorted(set(data["tuning"].values()) | set(data["devs"]))), *data["tests"]]
    rows, curves = [], {}
    for name, spec in nets.items():
        if recipe.wanted("train"):
            recipe.run_stage(f"train_{name}", train_stage, work, name, spec, features, seeds[name])
        if recipe.wanted("export"):
            recipe.run_stage(f"export_{name}", export_stage, work, name)
        if recipe.wanted("decode"):
            decoded = recipe.run_stage(f"decode_{name}", decode_stage, work, name, hmm, data)
            curves[name] = read_metrics(str(work / "models" / name / "metrics.jsonl"))
            shown_spec = spec if seeds[name] == FLAGS.seed else f"{spec}, seed {seeds[name]}"
            rows.append({"net": name, "spec": shown_spec, "params": _count_params(work, name),
                         "dev_frame_accuracy": max(r.get("dev_frame_accuracy", 0.0) for r in curves[name]),
                         "results": {k: decoded[k] for k in sets},
                         "scoring_rtf": decoded["scoring_real_time_factor"]})
    if not recipe.wanted("decode"):
        return None
    for name, members in combinations.items():
        decoded = recipe.run_stage(f"decode_{name}", combine_stage, work, name, members, hmm, data)
        rows.append({"net": name, "spec": "mean log-likelihood of " + " + ".join(members),
                     "params": sum(_count_params(work, member) for member in members), "dev_frame_accuracy": None,
                     "results": {k: decoded[k] for k in sets}})
    gmm = recipe.run_stage("decode_GMM", gmm_decode_stage, work, hmm, data)
    context_dependent = hmm.get("senones", "mono") != "mono"
    rows.append({"net": "GMM-HMM", "spec": f"{_gmm_description(hmm, context_dependent)}, MFCC+Δ+ΔΔ", "params": None,
                 "dev_frame_accuracy": None, "results": {k: gmm[k] for k in sets}})
    if context_dependent:
        mono = recipe.run_stage("decode_GMMmono", gmm_decode_stage, work, hmm["mono"], data, "GMM-mono")
        rows.append({"net": "GMM-HMM mono", "spec": f"{_gmm_description(hmm['mono'], True)}, MFCC+Δ+ΔΔ",
                     "params": None, "dev_frame_accuracy": None, "results": {k: mono[k] for k in sets}})
    if not recipe.wanted("report"):
        return None
    augment, features = common_flags.augment_from_flags(), common_flags.feature_config_from_flags()
    notes = (f"Data: {json.dumps(data['info'])}; train {data['counts']['train']} utterances, dev "
             f"{data['counts']['dev']} (every test speaker unseen in training). {hmm['num_pdfs']} senones "
             f"({_senone_description(hmm)}); GMM-HMM phone agreement with the synthesiser's timings: "
             f"{100 * (hmm['phone_agreement'] or 0):.1f}%. Features: fbank + Δ + ΔΔ, {features.cmvn} CMVN"
             f"{' with variances' if features.norm_vars else ''}. Every net: {FLAGS.epochs} epochs, {FLAGS.optimizer}, "
             f"lr {FLAGS.lr_initial} → {FLAGS.lr_final}{f', dropout {FLAGS.dropout:g}' if FLAGS.dropout else ''}"
             f"{f', label smoothing {FLAGS.label_smoothing:g}' if FLAGS.label_smoothing else ''}; recurrent nets on "
             f"{FLAGS.chunk_length}-frame chunks (overlap {FLAGS.chunk_overlap}, labels delayed {FLAGS.label_delay}); "
             f"augmentation {json.dumps(augment.to_dict())}. Audio scored "
             f"through the scoring server (gRPC, waveform signature) and decoded with a digit loop; acoustic scale "
             f"(tried {', '.join(FLAGS.acoustic_scales)}) and word insertion penalty (tried "
             f"{', '.join(FLAGS.word_insertion_penalties)}) chosen on the dev set of each test set's domain "
             f"({json.dumps(data['tuning'])}), never on test. WER cells: rate, [errors / words], 95 % bootstrap "
             f"interval over utterances, @ acoustic scale / penalty. "
             f"Total {time.time() - start:.0f} s.\n")
    table = write_report(FLAGS.report_dir, rows, curves, list(sets), notes)
    print("\n" + table + "\n\n" + notes)
    print(f"report: {os.path.abspath(FLAGS.report_dir)}/results.md")
    return table


def _senone_description(hmm: dict) -> str:
    if hmm.get("senones", "mono") == "mono":
        return "monophone states"
    tree = hmm["tree"]
    edge = "; the utterance edge asked as silence" if tree.get("edge_as_silence") else ""
    return (f"tied triphone states of a decision tree: {tree['num_leaves_split']} leaves split, {tree['num_pdfs']} "
            f"after clustering, {tree['stop_reason']}{edge}; the monophone system had {hmm['mono']['num_pdfs']}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not 0 <= FLAGS.stage <= FLAGS.stop_stage < len(STAGES):
        raise app.UsageError(f"need 0 ≤ --stage ≤ --stop_stage ≤ {len(STAGES) - 1}")
    work = pathlib.Path(FLAGS.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    run_recipe(work, FLAGS.stage, FLAGS.stop_stage)


def run():
    define_flags()
    common_flags.run_tool(main, __name__)


if __name__ == "__main__":
    run()
