r"""Leave-one-speaker-out over the Free Spoken Digit Dataset: six recipe runs, one per held-out speaker.

Each fold trains on the other five speakers (takes 0-4 held out as dev) plus synthetic speech, tests on the held-out
speaker, and decodes with the dev-chosen acoustic scale. Prints, per net, every fold's WER with its error count, the
mean over folds (pooled errors / pooled words too) and the worst speaker, next to the GMM-HMM of the same folds.
Not part of `make test` (about ten minutes a fold on 2 cores with the default nets).

Usage:
    python bench/fsdd_loso.py --fsdd=free-spoken-digit-dataset --work_dir=exp/loso [--nets=FFNN=3xReLU512] \
        [--speakers=george,jackson] [recipe flags after --, e.g. -- --epochs=6]
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def fold_results(work_dir: pathlib.Path, speaker: str) -> dict:
    with open(work_dir / speaker / "report" / "results.json") as f:
        results = json.load(f)
    return {row["net"]: row["results"]["fsdd"] for row in results["rows"]}


def summarise(per_fold: dict[str, dict]) -> str:
    """Markdown: one row per net, a column per held-out speaker, then mean / pooled / worst."""
    speakers = sorted(per_fold)
    nets = list(next(iter(per_fold.values())))
    lines = ["| net | " + " | ".join(speakers) + " | mean WER | pooled | worst |",
             "|---|" + "---:|" * (len(speakers) + 3)]
    for net in nets:
        cells = [per_fold[s][net] for s in speakers]
        mean = sum(c["wer"] for c in cells) / len(cells)
        errors, words = sum(c["errors"] for c in cells), sum(c["words"] for c in cells)
        worst = max(zip(cells, speakers), key=lambda item: item[0]["wer"])
        lines.append(f"| {net} | " + " | ".join(f"{c['wer']:.2f} [{c['errors']}/{c['words']}]" for c in cells)
                     + f" | {mean:.2f} | {100 * errors / words:.2f} [{errors}/{words}] | {worst[0]['wer']:.2f} "
                       f"({worst[1]}) |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", required=True, help="A checkout of the FSDD repository.")
    parser.add_argument("--work_dir", default="exp/loso", help="One sub-directory per fold.")
    parser.add_argument("--speakers", default="george,jackson,lucas,nicolas,theo,yweweler",
                        help="Held-out speakers (one fold each).")
    parser.add_argument("--nets", default=None, help="Recipe --nets (default: the recipe's three nets).")
    args, recipe_flags = parser.parse_known_args()
    recipe_flags = [f for f in recipe_flags if f != "--"]
    work = pathlib.Path(args.work_dir).resolve()
    per_fold = {}
    for speaker in args.speakers.split(","):
        fold = work / speaker
        command = [sys.executable, "-m", "tools.recipe", f"--work_dir={fold}", f"--report_dir={fold / 'report'}",
                   f"--fsdd={os.path.abspath(args.fsdd)}", f"--fsdd_test_speakers={speaker}", *recipe_flags]
        if args.nets:
            command.append(f"--nets={args.nets}")
        print("==", " ".join(command), flush=True)
        subprocess.run(command, cwd=ROOT, check=True)
        per_fold[speaker] = fold_results(work, speaker)
    table = summarise(per_fold)
    (work / "loso.md").write_text(table + "\n")
    with open(work / "loso.json", "w") as f:
        json.dump(per_fold, f, indent=1)
    print(table)


if __name__ == "__main__":
    main()
