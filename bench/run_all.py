"""Runs every benchmark and writes BENCHMARKS.md: figures, peers measured in the same run, and the command for each.

Usage: python bench/run_all.py [--only lstmp_speed,serving_load] [--output BENCHMARKS.md]

Each benchmark is a script in bench/ that prints its own figures (ratios against peers it times itself), so a
figure in BENCHMARKS.md is reproduced by running the command printed above it. Benchmarks run one at a time: on a
2-core machine anything running beside them changes the numbers.
"""
import argparse
import datetime
import os
import pathlib
import platform
import re
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

# (script, arguments, what it measures[, extra environment]); default arguments keep the whole run within minutes.
# TensorFlow enables oneDNN by default only on CPUs with AVX-512 VNNI/BF16 or AMX; on an AVX2 CPU it uses Eigen's
# GEMM, which runs large products at about half oneDNN's speed, so the LSTMP figures are taken both ways.
BENCHMARKS = [
    ("lstmp_speed.py", [], "PeepholeLSTMP(1024, proj 512) vs keras.layers.LSTM(1024) vs torch LSTM(proj_size=512): "
                           "training frames/s, batch-16 inference frames/s, fraction of its floor (bench/floors.py)"),
    ("lstmp_speed.py", [], "the same with TensorFlow's oneDNN kernels switched on", {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    ("clstm_speed.py", [], "CLSTM folded (patches in the batch) vs an explicit per-patch loop; feature-major vs "
                           "batch-major inference loop"),
    ("pipeline_speed.py", [], "tf.data recurrent pipeline from TFRecords and on-the-fly fbank from audio, frames/s"),
    ("train_speed.py", [], "training frames/s of the paper's Lstm2000P750 and best CLSTM at paper scale"),
    ("serving_load.py", [], "SavedModel scoring RTF of float32, bfloat16 and int8 exports in process and through the "
                            "server (batch 1 and 16 concurrent clients), each as a fraction of its floor measured in "
                            "the run; serving throughput/latency; stream_step latency and per-stream cost of 1, 4, 16 "
                            "concurrent served streams"),
    ("decode_speed.py", [], "HMM decoder real-time factor"),
    ("tree_speed.py", [], "decision tree (acc-tree-stats + cluster-phones + build-tree) on 1,500 utterances, seconds "
                          "(goal < 60) and as a multiple of one monophone GMM statistics pass"),
]


def _is_log_noise(line):
    """Library log and warning lines (absl/glog `I1124 ...`, TF's C++ log, Python warnings): not figures."""
    return bool(re.match(r"^([IWEF]\d{4} |\d{4}-\d\d-\d\d .*\] |\s*warnings\.warn|.*Warning: |\s+result = _VF)",
                         line))


def machine_description():
    cpu = "unknown CPU"
    flags = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "unknown CPU":
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = [x for x in line.split(":", 1)[1].split() if x.startswith(("avx", "fma", "amx"))]
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores ({' '.join(sorted(flags))}), {memory:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated script names (without .py) to run")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    selected = {name.strip() for name in args.only.split(",") if name.strip()}
    sections = []
    failures = 0
    for script, script_args, what, *extra in BENCHMARKS:
        env_extra = extra[0] if extra else {}
        name = script[:-3]
        if selected and name not in selected:
            continue
        command = [*(f"{k}={v}" for k, v in env_extra.items()), "python", f"bench/{script}", *script_args]
        print(f"== {' '.join(command)}", flush=True)
        start = time.time()
        if not (HERE / script).exists():
            output, status = f"(bench/{script} is not written yet)", "missing"
        else:
            proc = subprocess.run([sys.executable, str(HERE / script), *script_args], cwd=ROOT,
                                  capture_output=True, text=True,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env_extra})
            lines = [line for line in (proc.stdout + proc.stderr).splitlines() if not _is_log_noise(line)]
            output = "\n".join(lines).strip()
            status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
            failures += proc.returncode != 0
        print(output, flush=True)
        sections.append(f"## {name}\n\n{what}.\n\n```\n$ {' '.join(command)}\n{output}\n```\n\n"
                        f"_{status}, {time.time() - start:.0f} s._\n")
    header = (f"# Benchmarks\n\nGenerated by `python bench/run_all.py` on "
              f"{datetime.date.today().isoformat()}.\n\nMachine: {machine_description()}.\n\n"
              "Every figure below was measured in the run shown, peers included; rerun the command above it to "
              "reproduce it. Ratios compare implementations timed in the same process, so they are the figures to "
              "trust across machines.\n\n")
    pathlib.Path(args.output).write_text(header + "\n".join(sections))
    print(f"wrote {args.output}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
