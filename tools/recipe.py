"""crnn-recipe: the whole hybrid chain on a corpus the project synthesises, ending in a paper-style table.

    corpus (espeak-ng + flite, test voices unseen) → lang, G, monophone GMM-HMM alignment, HCLG
    → features + labels as TFRecords → train FFNN, LSTMP and CLSTM (same budget) → export SavedModels
    → start the TF-Serving-compatible server → decode dev and test through it (gRPC) → WER/CER → report/

A stage that already finished is skipped on a re-run (its marker is `<work_dir>/done/<stage>`), so an interrupted
run picks up where it stopped. Flags scale it up (more utterances, epochs, wider nets).

Example:
    crnn-recipe --work_dir=exp/demo --report_dir=report
    crnn-recipe --work_dir=exp/big --num_utterances=6000 --epochs=10 --nets=ffnn=4xReLU1024,lstmp=...
"""
import concurrent.futures
import json
import os
import pathlib
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "exp/demo", "Where every stage writes (corpus/, hmm/, data/, models/, export/).")
flags.DEFINE_string("report_dir", "report", "Where the table and the charts go.")
flags.DEFINE_integer("num_utterances", 1500, "Corpus size over train/dev/test (10% dev, 10% test by default).")
flags.DEFINE_enum("task", "digits", ["digits", "commands"], "Corpus task.")
flags.DEFINE_integer("sample_rate", 8000, "8000 (telephone band, the paper's domain) or 16000.")
flags.DEFINE_integer("seed", 0, "Seeds the corpus, initialisation and data order.")
flags.DEFINE_integer("gmm_iters", 12, "EM iterations of the monophone GMM-HMM.")
flags.DEFINE_integer("max_gauss", 600, "Gaussians after mixture growth.")
flags.DEFINE_list("nets", [
    "FFNN=3xReLU512",
    "LSTMP=Lstm384P128+2xReLU512",
    "CLSTM=CLstm48P32+Pool3+Lstm384P128+2xReLU512",
], "NAME=SPEC pairs: the networks to train and compare (scaled-down zoo specs with the paper's structure).")
flags.DEFINE_integer("epochs", 4, "Training epochs, the same budget for every net.")
flags.DEFINE_enum("optimizer", "adam", ["sgd", "adam"], "sgd = the paper's momentum SGD; adam converges faster "
                  "at demo scale.")
flags.DEFINE_float("lr_initial", 2e-3, "Initial learning rate (exponential decay to lr_final).")
flags.DEFINE_float("lr_final", 2e-4, "Final learning rate.")
flags.DEFINE_list("acoustic_scales", ["0.067", "0.083", "0.1", "0.125", "0.15", "0.2", "0.25"],
                  "Decoder acoustic scales tried on dev (Kaldi's score.sh sweeps the LM weight, its inverse); test is "
                  "decoded with the one best on dev.")
flags.DEFINE_float("prior_scale", 1.0, "Weight of the log prior subtracted from the log posteriors.")
flags.DEFINE_integer("decode_workers", 2, "Concurrent recognition requests to the server.")


def _stage(name):
    """Decorator: run the stage unless `<work_dir>/done/<name>` exists; write it (with the result) when done."""
    def wrap(fn):
        def run(work, *args):
            marker = work / "done" / name
            if marker.exists():
                logging.info("stage %s: already done, skipped", name)
                return json.loads(marker.read_text())
            start = time.time()
            print(f"== stage {name}", flush=True)
            result = fn(work, *args)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps(result, indent=1))
            print(f"   {name} done in {time.time() - start:.0f} s", flush=True)
            return result
        return run
    return wrap


@_stage("corpus")
def make_corpus_stage(work):
    from crnn_tf.corpus import make_corpus

    info = make_corpus(str(work / "corpus"), num_utterances=FLAGS.num_utterances, task=FLAGS.task,
                       sample_rate=FLAGS.sample_rate, seed=FLAGS.seed)
    return {"counts": info["counts"], "utterances_per_second": info["utterances_per_second"]}


@_stage("hmm")
def hmm_stage(work):
    from crnn_tf.hmm.align import TrainConfig, align_data_dir, align_with_model

    corpus = work / "corpus"
    config = TrainConfig(num_iters=FLAGS.gmm_iters, max_gauss=FLAGS.max_gauss,
                         realign_iters=tuple(i for i in TrainConfig().realign_iters if i < FLAGS.gmm_iters),
                         gauss_increase_iters=max(1, FLAGS.gmm_iters - 3))
    out = align_data_dir(str(corpus / "train"), str(corpus / "dict"), str(work / "hmm"), config)
    dev = align_with_model(str(corpus / "dev"), out["lang"], out["model"], str(work / "hmm" / "dev_ali"))
    return {"model": out["model"], "graph": out["graph"], "lang": out["lang"], "pdf_ali": out["pdf_ali"],
            "dev_pdf_ali": dev["pdf_ali"], "prior_counts": out["prior_counts"], "num_pdfs": out["num_pdfs"],
            "phone_agreement": out["phone_agreement"], "seconds": out["seconds"]}


@_stage("features")
def features_stage(work, hmm):
    from crnn_tf.data.prepare import prepare_data_dir
    from crnn_tf.features import FeatureConfig

    config = FeatureConfig(sample_rate=FLAGS.sample_rate)
    manifests = {}
    for split, ali in (("train", hmm["pdf_ali"]), ("dev", hmm["dev_pdf_ali"])):
        manifest = prepare_data_dir(str(work / "corpus" / split), str(work / "data" / split), alignments=ali,
                                    config=config, num_targets=hmm["num_pdfs"], progress=False)
        manifests[split] = {"path": manifest.directory, "frames": manifest.num_frames,
                            "skipped": len(manifest.skipped)}
    return manifests


def train_stage(work, name, spec, features):
    @_stage(f"train_{name}")
    def train_one(work):
        from crnn_tf.train.config import TrainConfig
        from crnn_tf.train.loop import train

        config = TrainConfig(model_spec=spec, train_data=features["train"]["path"],
                             dev_data=features["dev"]["path"], model_dir=str(work / "models" / name),
                             epochs=FLAGS.epochs, optimizer=FLAGS.optimizer, lr_initial=FLAGS.lr_initial,
                             lr_final=FLAGS.lr_final, seed=FLAGS.seed, progress=False)
        return train(config)
    return train_one(work)


def export_stage(work, name, hmm):
    @_stage(f"export_{name}")
    def export_one(work):
        from crnn_tf.export import export_trained

        path = export_trained(str(work / "models" / name), str(work / "export"), name, version=1,
                              prior_scale=FLAGS.prior_scale)
        return {"path": str(path)}
    return export_one(work)


def _references(data_dir):
    refs = {}
    with open(os.path.join(data_dir, "text")) as f:
        for line in f:
            utt, *words = line.split()
            refs[utt] = words
    return refs


def _wav_paths(data_dir):
    with open(os.path.join(data_dir, "wav.scp")) as f:
        return dict(line.split(maxsplit=1) for line in f if line.strip())


def decode_stage(work, name, hmm):
    """Serves the export, recognises dev and test audio through gRPC (waveform signature) and scores it."""
    @_stage(f"decode_{name}")
    def decode_one(work):
        import grpc
        import numpy as np
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        from crnn_tf.data.audio import decode_audio
        from crnn_tf.hmm.decoder import HybridDecoder
        from crnn_tf.hmm.scoring import score
        from serving.recognize import remote_log_likelihoods
        from serving.server import Server

        server = Server(str(work / "export" / name), name, rest_port=-1, grpc_port=0, poll_seconds=0)
        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        def recognise(path):
            samples, _ = decode_audio(path, FLAGS.sample_rate)
            samples = np.asarray(samples, np.float32).reshape(-1)
            loglik = remote_log_likelihoods(
                stub, name, None, "waveform",
                {"waveforms": samples[None], "lengths": np.array([samples.size], np.int32)}, timeout=120)
            return samples.size / FLAGS.sample_rate, loglik

        # Score every utterance once through the server; the decoder sweeps acoustic scales on the results.
        logliks, refs, audio_seconds, start = {}, {}, 0.0, time.time()
        try:
            for split in ("dev", "test"):
                data_dir = str(work / "corpus" / split)
                wavs = _wav_paths(data_dir)
                utts = sorted(wavs)
                with concurrent.futures.ThreadPoolExecutor(FLAGS.decode_workers) as pool:
                    scored = list(pool.map(lambda u: recognise(wavs[u].strip()), utts))
                audio_seconds += sum(seconds for seconds, _ in scored)
                logliks[split] = {utt: loglik for utt, (_, loglik) in zip(utts, scored)}
                refs[split] = _references(data_dir)
        finally:
            channel.close()
            server.stop()
        scoring_seconds = time.time() - start

        def decode_split(split, scale):
            decoder = HybridDecoder(hmm["graph"], acoustic_scale=scale)
            hyps = {utt: decoder.decode(loglik, utt=utt).words for utt, loglik in logliks[split].items()}
            return {"wer": score(refs[split], hyps, "WER").rate, "cer": score(refs[split], hyps, "CER").rate,
                    "utterances": len(refs[split]), "acoustic_scale": scale}

        sweep = [decode_split("dev", float(scale)) for scale in FLAGS.acoustic_scales]
        best = min(sweep, key=lambda r: (r["wer"], r["cer"]))
        results = {"dev": best, "test": decode_split("test", best["acoustic_scale"]),
                   "dev_sweep": {str(r["acoustic_scale"]): r["wer"] for r in sweep},
                   "scoring_real_time_factor": scoring_seconds / max(audio_seconds, 1e-9)}
        return results
    return decode_one(work)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from tools.report import read_metrics, write_report

    work = pathlib.Path(FLAGS.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    nets = dict(item.split("=", 1) for item in FLAGS.nets)
    start = time.time()
    corpus = make_corpus_stage(work)
    hmm = hmm_stage(work)
    features = features_stage(work, hmm)
    rows, curves = [], {}
    for name, spec in nets.items():
        train_stage(work, name, spec, features)
        export_stage(work, name, hmm)
        decoded = decode_stage(work, name, hmm)
        curves[name] = read_metrics(str(work / "models" / name / "metrics.jsonl"))
        rows.append({"net": name, "spec": spec, "params": _count_params(work, name),
                     "dev_frame_accuracy": max(r.get("dev_frame_accuracy", 0.0) for r in curves[name]),
                     "dev_wer": decoded["dev"]["wer"], "dev_cer": decoded["dev"]["cer"],
                     "test_wer": decoded["test"]["wer"], "test_cer": decoded["test"]["cer"],
                     "acoustic_scale": decoded["dev"]["acoustic_scale"],
                     "scoring_rtf": decoded["scoring_real_time_factor"]})
    notes = (f"Corpus: {corpus['counts']} utterances ({FLAGS.task}, {FLAGS.sample_rate} Hz), test voices unseen in "
             f"training. GMM-HMM phone agreement with the synthesiser's timings: "
             f"{100 * (hmm['phone_agreement'] or 0):.1f}%. {hmm['num_pdfs']} senones (monophone states). "
             f"Every net: {FLAGS.epochs} epochs, {FLAGS.optimizer}, lr {FLAGS.lr_initial} → {FLAGS.lr_final}. "
             f"Audio scored through the scoring server (gRPC, waveform signature), decoded with the acoustic scale best "
             f"on dev (tried {', '.join(FLAGS.acoustic_scales)}); test is decoded with that scale. "
             f"Total {time.time() - start:.0f} s.\n")
    table = write_report(FLAGS.report_dir, rows, curves, notes)
    print("\n" + table + "\n\n" + notes)
    print(f"report: {os.path.abspath(FLAGS.report_dir)}/results.md")


def _count_params(work, name):
    from crnn_tf.train.checkpoints import load_trained_model

    model, _ = load_trained_model(str(work / "models" / name))
    return model.count_params()


def run():
    app.run(main)


if __name__ == "__main__":
    run()
