"""Recognition on top of the scoring service: audio/features → log-likelihoods (served) → HMM decoder → words.

Two ways in:
  - `crnn-recognize`: a client. Sends each audio file (the `waveform` signature) or feature matrix (`serving_default`)
    to a running crnn-serve / TF Serving over gRPC, decodes the returned log-likelihoods locally with
    `crnn_tf.hmm.decoder.HybridDecoder`, prints one JSON line per utterance.
  - `POST /v1/recognize` on crnn-serve started with `--graph_dir`: the same chain inside the server.

A model exported with speaker CMVN takes the speaker's Kaldi statistics with every waveform (`crnn-recognize
--cmvn_stats=spk.npy`, or `"cmvn_stats"` in the request body); `crnn_tf.features.speaker_cmvn_stats` computes them
from the speaker's recordings, as Kaldi's compute-cmvn-stats --spk2utt does.

Result (both): {"utt", "text", "words": [{"word", "start", "end"} (seconds)], "likelihood", "partial",
"num_frames", "model_version"}.

Example:
  crnn-recognize --server 127.0.0.1:8500 --model_name crnn --graph_dir exp/mono/graph a.wav b.wav
  crnn-recognize --server 127.0.0.1:8500 --graph_dir exp/mono/graph --feats_rspecifier ark:feats.ark
"""
import json
import sys
import threading

import numpy as np
from absl import app, flags

from tools import common_flags

from serving.errors import invalid

DEFAULT_FRAME_SHIFT_S = 0.01


def result_dict(decoded, frame_shift_s, version=None):
    """A `DecodeResult` → the JSON-ready result (word times in seconds; null when the decoder has no span)."""
    def seconds(frame):
        return None if frame < 0 else round(frame * frame_shift_s, 3)

    # end_frames are one past the word's last frame, so frame * shift is the word's end time.
    words = [{"word": word, "start": seconds(start), "end": seconds(end)}
             for word, start, end in zip(decoded.words, decoded.start_frames, decoded.end_frames)]
    return {"utt": decoded.utt, "text": " ".join(decoded.words), "words": words,
            "likelihood": decoded.likelihood, "partial": decoded.partial, "num_frames": decoded.num_frames,
            "model_version": version}


def frame_shift_seconds(metadata):
    """Frame shift from an export's metadata (10 ms when unknown)."""
    config = (metadata or {}).get("feature_config") or {}
    return config.get("frame_shift_ms", DEFAULT_FRAME_SHIFT_S * 1000) / 1000.0


class Recognizer:
    """In-server recognition: scores through a `ScoringService`, decodes with `HybridDecoder`.

    Args:
      graph_dir: HCLG graph dir (HCLG.fst, words.txt, final.mdl, optional lexicon.txt for word times).
      acoustic_scale: decoder acoustic scale. Default 0.1.
      beam: decoder beam. Default 13.0.
      decoder: an already-built decoder (anything with `decode(loglik [T, S], utt) -> DecodeResult`); overrides
        graph_dir. Default None.
    """

    def __init__(self, graph_dir=None, acoustic_scale=0.1, beam=13.0, decoder=None):
        if decoder is None:
            from crnn_tf.hmm.decoder import HybridDecoder

            # The served log_likelihoods already have the priors removed: the decoder takes them as they are.
            decoder = HybridDecoder(graph_dir, acoustic_scale=acoustic_scale, beam=beam)
        self.decoder = decoder
        self.service = None
        self._lock = threading.Lock()  # one LatticeFasterDecoder object: one decode at a time

    def bind(self, service):
        """Attaches the `ScoringService` to score with (the server does this)."""
        self.service = service

    def recognize_request(self, body, model_name, version=None):
        """Handles a recognize body: {"features": [T][dim]} or {"waveform": [samples]} (+ optional "utt")."""
        if not isinstance(body, dict) or ("features" in body) == ("waveform" in body):
            raise invalid("the body must be an object with exactly one of 'features' ([frames][dim]) or "
                          "'waveform' ([samples], int16 scale)")
        if "features" in body:
            features = np.asarray(body["features"], dtype=np.float32) if _numeric(body["features"]) else None
            if features is None or features.ndim != 2 or not features.shape[0]:
                raise invalid("'features' must be a non-empty [frames][dim] array of numbers")
            inputs, signature = {"features": features[None], "lengths": [features.shape[0]]}, "serving_default"
        else:
            waveform = np.asarray(body["waveform"], dtype=np.float32) if _numeric(body["waveform"]) else None
            if waveform is None or waveform.ndim != 1 or not waveform.size:
                raise invalid("'waveform' must be a non-empty [samples] array of numbers")
            inputs, signature = {"waveforms": waveform[None], "lengths": [waveform.size]}, "waveform"
            if "cmvn_stats" in body:  # speaker-CMVN exports: the speaker's Kaldi stats [2][num_bands + 1]
                stats = np.asarray(body["cmvn_stats"], np.float64) if _numeric(body["cmvn_stats"]) else None
                if stats is None or stats.ndim != 2 or stats.shape[0] != 2:
                    raise invalid("'cmvn_stats' must be the speaker's Kaldi CMVN stats, a [2][num_bands + 1] array")
                inputs["cmvn_stats"] = stats[None]
        servable, _, outputs = self.service.predict(model_name, version, signature, inputs,
                                                    output_filter=decoder_outputs(signature))
        loglik = valid_log_likelihoods(outputs)
        try:
            with self._lock:
                decoded = self.decoder.decode(loglik, utt=str(body.get("utt", "utt")))
        except ValueError as error:  # e.g. the model's senones do not match the graph's transition model
            raise invalid(str(error)) from None
        return result_dict(decoded, frame_shift_seconds(servable.metadata), servable.version)


def _numeric(value):
    try:
        return np.asarray(value).dtype.kind in "iuf"
    except ValueError:
        return False


FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (in run(), so that importing this module defines none)."""
    common_flags.define_decoder_flags("HCLG graph dir for the decoder.")
    flags.DEFINE_string("server", "127.0.0.1:8500", "gRPC address of crnn-serve / TF Serving.")
    flags.DEFINE_string("model_name", "crnn", "Served model name.")
    flags.DEFINE_integer("model_version", None, "Model version (default: the newest).")
    flags.DEFINE_string("feats_rspecifier", None, "Kaldi rspecifier of feature matrices (instead of audio files).")
    flags.DEFINE_integer("sample_rate", 8000, "Sample rate audio files are resampled to (the model's).")
    flags.DEFINE_float("frame_shift_ms", 10.0, "Frame shift for word times.")
    flags.DEFINE_float("timeout", 60.0, "Per-request timeout in seconds.")
    flags.DEFINE_string("cmvn_stats", None, "For a speaker-CMVN model: the speaker's Kaldi CMVN stats (.npy, "
                        "[2, num_bands + 1]), sent with every audio file (all files are that speaker's).")


def decoder_outputs(signature):
    """The outputs the decoder reads from `signature` (an `output_filter`): the log-posteriors, which the
    signatures also return, would double the response."""
    return ["log_likelihoods", "num_frames"] if signature == "waveform" else ["log_likelihoods"]


def valid_log_likelihoods(outputs):
    """The first utterance's [frames, senones] log-likelihoods, cut to its valid frames (`waveform` pads)."""
    loglik = outputs["log_likelihoods"][0]
    if "num_frames" in outputs:
        loglik = loglik[:int(outputs["num_frames"][0])]
    return loglik


def score_remote(stub, model_name, version, signature, inputs, timeout, output_filter=()):
    """Calls Predict on a TF Serving endpoint; returns dict of numpy outputs (those in `output_filter`, or all)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    request.output_filter.extend(output_filter)
    response = stub.Predict(request, timeout=timeout)
    return {name: tf.make_ndarray(tensor) for name, tensor in response.outputs.items()}


def remote_log_likelihoods(stub, model_name, version, signature, inputs, timeout):
    """Scores one utterance on a TF Serving endpoint; returns its valid [frames, senones] log-likelihoods."""
    outputs = score_remote(stub, model_name, version, signature, inputs, timeout, decoder_outputs(signature))
    return valid_log_likelihoods(outputs)


def _utterances(paths):
    if FLAGS.feats_rspecifier:
        from crnn_tf.data.kaldi_io import read_matrices

        for utt, matrix in read_matrices(FLAGS.feats_rspecifier):
            yield utt, "serving_default", {"features": np.asarray(matrix, np.float32)[None],
                                          "lengths": np.array([len(matrix)], np.int32)}
        return
    from crnn_tf.data.audio import decode_audio

    stats = np.load(FLAGS.cmvn_stats).astype(np.float64)[None] if FLAGS.cmvn_stats else None
    for path in paths:
        try:
            samples, _ = decode_audio(path, FLAGS.sample_rate)
        except ValueError as error:  # AudioDecodeError names the file and the reason
            yield path, None, error
            continue
        samples = np.asarray(samples, np.float32).reshape(-1)
        inputs = {"waveforms": samples[None], "lengths": np.array([samples.size], np.int32)}
        if stats is not None:
            inputs["cmvn_stats"] = stats
        yield path, "waveform", inputs


def main(argv):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    if not FLAGS.graph_dir:
        raise app.UsageError("--graph_dir is required")
    if not FLAGS.feats_rspecifier and len(argv) < 2:
        raise app.UsageError("give audio files or --feats_rspecifier")
    decoder = common_flags.decoder_from_flags()
    channel = grpc.insecure_channel(FLAGS.server, options=[("grpc.max_receive_message_length", 256 << 20),
                                                           ("grpc.max_send_message_length", 256 << 20)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    failed = 0
    for utt, signature, inputs in _utterances(argv[1:]):
        try:
            if signature is None:
                raise inputs  # the input could not be read
            loglik = remote_log_likelihoods(stub, FLAGS.model_name, FLAGS.model_version, signature, inputs,
                                            FLAGS.timeout)
            decoded = decoder.decode(loglik, utt=utt)
        except (ValueError, grpc.RpcError) as error:  # one bad input must not stop the others
            failed += 1
            reason = error.details() if isinstance(error, grpc.RpcError) else str(error)
            print(json.dumps({"utt": utt, "error": reason}), flush=True)
            print(f"crnn-recognize: {utt}: {reason}", file=sys.stderr)
            continue
        print(json.dumps(result_dict(decoded, FLAGS.frame_shift_ms / 1000.0, FLAGS.model_version)), flush=True)
    if failed:
        print(f"crnn-recognize: {failed} input(s) failed", file=sys.stderr)
    return 1 if failed else 0


def run():
    """Console-script entry point (`crnn-recognize`)."""
    define_flags()
    common_flags.run_tool(main, __name__)


if __name__ == "__main__":
    sys.exit(run())
