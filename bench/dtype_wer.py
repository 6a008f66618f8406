"""Word errors of a finished recipe's nets exported with each `--compute_dtype`, decoded alike.

For every net of a `crnn-recipe` work dir (models/<net>, report/results.json), exports the trained model as float32,
bfloat16 and int8, scores the dev and test sets through each export's `waveform` signature in process, and decodes
them with the acoustic scale and word insertion penalty the recipe chose on dev for that net (float32): so the only
difference between the rows is the weights' dtype. Prints word error counts per set and the float32 → dtype change.

Usage: python bench/dtype_wer.py --work_dir /work/runs/demo --out_dir /tmp/dtype_wer [--nets CLSTM,LSTMP]
"""
import argparse
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

DTYPES = ("float32", "bfloat16", "int8")


def score_sets(version_dir, sets):
    """{set: {utt: log-likelihoods [frames, senones]}} through the export's waveform signature."""
    import tensorflow as tf

    from crnn_tf.data.datadir import DataDir
    from crnn_tf.export import read_metadata
    from crnn_tf.features import FeatureConfig, speaker_cmvn_stats

    config = FeatureConfig.from_dict(read_metadata(version_dir).feature_config)
    waveform = tf.saved_model.load(str(version_dir)).signatures["waveform"]
    scores = {}
    for set_name, data_dir in sets.items():
        data = DataDir.load(data_dir)
        stats = {}
        if config.cmvn == "speaker":
            stats = {spk: speaker_cmvn_stats([data.load_audio(u, config.sample_rate) for u in utts], config)
                     for spk, utts in data.spk2utt.items()}
        scores[set_name] = {}
        for utt in data.utterances:
            samples = np.asarray(data.load_audio(utt, config.sample_rate), np.float32).reshape(1, -1)
            inputs = {"waveforms": tf.constant(samples), "lengths": tf.constant([samples.shape[1]], tf.int32)}
            if stats:
                inputs["cmvn_stats"] = tf.constant(stats[data.utt2spk[utt]][None])
            outputs = waveform(**inputs)
            frames = int(outputs["num_frames"][0])
            scores[set_name][utt] = outputs["log_likelihoods"][0, :frames].numpy()
    return scores


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", required=True, help="a finished crnn-recipe work dir")
    parser.add_argument("--out_dir", required=True, help="where the exports go")
    parser.add_argument("--nets", default="", help="comma-separated net names (default: every net in the report)")
    parser.add_argument("--json", help="also write the counts here")
    args = parser.parse_args()

    from crnn_tf.export import export_trained
    from crnn_tf.export.cpu import cpu_flags
    from crnn_tf.hmm.error_rate import error_rate
    from tools.recipe import _decoder_over, decoding_sets

    work = pathlib.Path(args.work_dir)
    hmm = json.loads((work / "done" / "hmm").read_text())
    data = json.loads((work / "done" / "data").read_text())
    report = json.loads((work / "report" / "results.json").read_text())
    wanted = {name for name in args.nets.split(",") if name}
    sets = decoding_sets(data)
    flags = " ".join(sorted(f for f in cpu_flags() if f.startswith(("avx512_bf16", "avx512_vnni", "amx"))))
    print(f"CPU flags for narrow products: {flags or 'none'}")
    results = {}
    for row in report["rows"]:
        net = row["net"]
        if not (work / "models" / net).is_dir() or (wanted and net not in wanted):
            continue
        results[net] = {}
        for dtype in DTYPES:
            version_dir = export_trained(str(work / "models" / net), args.out_dir, f"{net}_{dtype}",
                                         compute_dtype=dtype)
            decode = _decoder_over(hmm, data, sets, score_sets(version_dir, sets))
            counts = {}
            for set_name in sets:
                chosen = row["results"][set_name]
                refs, hyps = decode([set_name], chosen["acoustic_scale"], chosen["word_insertion_penalty"])
                wer = error_rate(refs, hyps, "WER")
                counts[set_name] = {"errors": wer.errors, "words": wer.ref_len, "wer": wer.rate}
            results[net][dtype] = counts
            print(f"{net} ({row['spec']}) {dtype}: " + ", ".join(
                f"{name} {c['errors']}/{c['words']} errors (WER {c['wer']:.2f} %)" for name, c in counts.items()),
                flush=True)
        base = results[net]["float32"]
        for dtype in DTYPES[1:]:
            print(f"  {net} {dtype} - float32 word errors: " + ", ".join(
                f"{name} {results[net][dtype][name]['errors'] - base[name]['errors']:+d}" for name in sets))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
