"""crnn-serve: a TF-Serving-compatible scoring server (REST + gRPC) for crnn_tf exports (or any SavedModel).

Example:
  crnn-serve --model_base_path /srv/models/crnn --model_name crnn --rest_port 8501 --grpc_port 8500

Loads the newest version under --model_base_path, polls for new ones, batches concurrent requests, binds 127.0.0.1
unless --host says otherwise, and shuts down gracefully on SIGTERM/SIGINT within --shutdown_grace_seconds (stops
accepting, closes idle keep-alive connections, finishes in-flight requests). See docs/serving.md.
"""
import os
import signal
import threading
import time

from absl import app, flags, logging

from tools import common_flags

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (in run(), so that importing this module defines none)."""
    flags.DEFINE_string("model_base_path", None, "Directory holding the integer version directories.")
    flags.DEFINE_string("model_name", "crnn", "Served model name.")
    flags.DEFINE_string("host", "127.0.0.1", "Address to bind (0.0.0.0 exposes the server to the network).")
    flags.DEFINE_integer("rest_api_port", 8501, "REST port (0: pick a free one; -1: no REST).")
    flags.DEFINE_integer("port", 8500, "gRPC port (0: pick a free one; -1: no gRPC).")
    flags.DEFINE_float("file_system_poll_wait_seconds", 1.0, "Seconds between polls for new versions (0: never).")
    flags.DEFINE_integer("num_versions", 1, "How many of the newest versions to keep loaded.")
    flags.DEFINE_bool("enable_batching", True, "Batch concurrent requests.")
    flags.DEFINE_integer("max_batch_size", 16, "Most rows per batch.")
    flags.DEFINE_integer("batch_timeout_micros", 2000, "Longest a request waits for others to join its batch.")
    flags.DEFINE_integer("stream_batch_timeout_micros", 50000, "After a stream_step batch, the next one waits for the "
                         "streams it answered to send their next step (so that they stay in one batch) until none has "
                         "come for this long (0: no wait).")
    flags.DEFINE_integer("max_enqueued_batches", 256, "Most queued requests before RESOURCE_EXHAUSTED.")
    flags.DEFINE_integer("num_batch_threads", 2, "Threads running batches.")
    flags.DEFINE_integer("max_body_bytes", 64 << 20, "Largest REST body / gRPC message.")
    flags.DEFINE_integer("max_response_bytes", 64 << 20, "Largest REST response body (413 above).")
    flags.DEFINE_integer("rest_workers", 32, "REST connections served at once (more wait in a bounded queue).")
    flags.DEFINE_float("rest_header_timeout_seconds", 10.0, "A REST client slower than this over a request's line "
                       "and headers is disconnected.")
    common_flags.define_decoder_flags("HCLG graph dir: enables POST /v1/recognize (see serving.recognize).")
    flags.DEFINE_float("shutdown_grace_seconds", 10.0, "How long SIGTERM waits for in-flight requests.")
    flags.register_validator("model_base_path", lambda value: value is not None, "--model_base_path is required")
    # TF Serving's flag names above; these aliases are the names docs/serving.md uses.
    flags.DEFINE_alias("rest_port", "rest_api_port")
    flags.DEFINE_alias("grpc_port", "port")


class Server:
    """The REST and gRPC front ends over one `ScoringService`.

    Args:
      model_base_path, model_name: what to serve.
      host: bind address. Default "127.0.0.1".
      rest_port, grpc_port: ports; 0 picks a free one, -1 disables that front end. Defaults 8501, 8500.
      poll_seconds: version polling interval (0: never). Default 1.0.
      num_versions: newest versions kept loaded. Default 1.
      batching: dict of `serving.batching.Batcher` arguments, or None for no batching. Default {} (defaults).
      max_body_bytes: largest REST body / gRPC message. Default 64 MiB.
      recognizer: optional `serving.recognize.Recognizer` for the recognize routes. Default None.
      max_response_bytes: largest REST response body. Default 64 MiB.
      rest_workers: REST connections served at once. Default 32.
      rest_header_timeout: seconds a REST client may take over a request's line and headers. Default 10.
    """

    def __init__(self, model_base_path, model_name, host="127.0.0.1", rest_port=8501, grpc_port=8500,
                 poll_seconds=1.0, num_versions=1, batching=None, max_body_bytes=64 << 20, recognizer=None,
                 max_response_bytes=64 << 20, rest_workers=32, rest_header_timeout=10.0):
        from serving.batching import Batcher
        from serving.grpc_service import make_grpc_server
        from serving.model_manager import ModelManager
        from serving.rest import RestServer
        from serving.service import ScoringService

        self.manager = ModelManager(model_base_path, model_name, poll_seconds, num_versions).start()
        if not self.manager.ready:
            logging.warning("no servable version under %s yet; waiting for one", model_base_path)
        self.batcher = Batcher(**batching) if batching is not None else None
        self.service = ScoringService(self.manager, self.batcher)
        if recognizer is not None:
            recognizer.bind(self.service)
        self.rest = self.grpc = None
        self.rest_port = self.grpc_port = None
        if rest_port >= 0:
            self.rest = RestServer((host, rest_port), self.service, recognizer, max_body_bytes, rest_workers,
                                   max_response_bytes, rest_header_timeout)
            self.rest_port = self.rest.port
            self._rest_thread = threading.Thread(target=self.rest.serve_forever, name="rest", daemon=True)
            self._rest_thread.start()
        if grpc_port >= 0:
            address = f"[{host}]:{grpc_port}" if ":" in host else f"{host}:{grpc_port}"  # IPv6 in brackets
            self.grpc, self.grpc_port = make_grpc_server(self.service, address, max_body_bytes)
        logging.info("serving %s: REST %s:%s, gRPC %s:%s", model_name, host, self.rest_port, host, self.grpc_port)

    def stop(self, grace_seconds=10.0):
        """Graceful shutdown, done within `grace_seconds`.

        Both front ends stop taking requests at once: gRPC refuses new calls; REST closes its listening socket and
        its idle keep-alive connections, and answers a request already waiting on a connection with 503 and
        `Connection: close`. Requests in flight finish and are answered; whatever is still running at the deadline
        is cut off.
        """
        deadline = time.monotonic() + grace_seconds

        def remaining():
            return max(0.0, deadline - time.monotonic())

        done = self.grpc.stop(grace_seconds) if self.grpc is not None else None
        if self.rest is not None:
            self.rest.begin_shutdown()
            self.rest.wait_closed(remaining())
            self.rest.server_close()
        if done is not None:
            done.wait(remaining())
        if self.batcher is not None:
            self.batcher.close(timeout=remaining())
        self.manager.stop()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    recognizer = None
    if FLAGS.graph_dir:
        from serving.recognize import Recognizer

        recognizer = Recognizer(decoder=common_flags.decoder_from_flags())
    batching = None
    if FLAGS.enable_batching:
        batching = dict(max_batch_size=FLAGS.max_batch_size, batch_timeout_s=FLAGS.batch_timeout_micros / 1e6,
                        max_enqueued=FLAGS.max_enqueued_batches, num_threads=FLAGS.num_batch_threads,
                        stream_gather_timeout_s=FLAGS.stream_batch_timeout_micros / 1e6)
    server = Server(FLAGS.model_base_path, FLAGS.model_name, FLAGS.host, FLAGS.rest_api_port, FLAGS.port,
                    FLAGS.file_system_poll_wait_seconds, FLAGS.num_versions, batching, FLAGS.max_body_bytes,
                    recognizer, FLAGS.max_response_bytes, FLAGS.rest_workers, FLAGS.rest_header_timeout_seconds)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    # Machine-readable line for scripts and tests that start the server with port 0.
    print(f"crnn-serve ready rest_port={server.rest_port} grpc_port={server.grpc_port}", flush=True)
    while not stop.wait(0.5):  # a timed wait lets the signal handler run promptly
        pass
    logging.info("shutting down")
    server.stop(FLAGS.shutdown_grace_seconds)
    print("crnn-serve stopped", flush=True)


def prefer_onednn():
    """Turns on TensorFlow's oneDNN CPU kernels unless TF_ENABLE_ONEDNN_OPTS says otherwise.

    TensorFlow enables them by itself only on CPUs with AVX-512 VNNI/BF16/AMX; on AVX2-only CPUs its default Eigen
    GEMM runs the large products at about half oneDNN's speed (BENCHMARKS.md), and scoring is mostly large products.
    Must run before TensorFlow is imported; results differ from Eigen's only in float32 summation order (~1e-6).
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def run():
    """Console-script entry point (`crnn-serve`)."""
    prefer_onednn()
    define_flags()
    common_flags.run_tool(main, __name__)


if __name__ == "__main__":
    run()
