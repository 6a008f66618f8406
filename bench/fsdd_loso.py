r"""Leave-one-speaker-out over the Free Spoken Digit Dataset: six recipe runs, one per held-out speaker.

Each fold trains on the other five speakers (takes 0-4 held out as dev) plus synthetic speech, tests on the held-out
speaker, and decodes with the dev-chosen acoustic scale. Prints, per net, every fold's WER with its error count, the
mean over folds (pooled errors / pooled words too) and the worst speaker, next to the GMM-HMM of the same folds, and
a row for the net chosen in each fold on its FSDD dev set (never on the test speaker).
Not part of `make test` (about ten minutes a fold on 2 cores with the default nets).

Usage:
    python bench/fsdd_loso.py --fsdd=free-spoken-digit-dataset --work_dir=exp/loso [--nets=FFNN=3xReLU512] \
        [--speakers=george,jackson] [--summarise_only] [recipe flags after --, e.g. -- --epochs=6]
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def fold_results(work_dir: pathlib.Path, speaker: str) -> dict:
    """`{net: {"test": FSDD test cell, "dev": FSDD dev cell}}` of one fold's report."""
    with open(work_dir / speaker / "report" / "results.json") as f:
        results = json.load(f)
    return {row["net"]: {"test": row["results"]["fsdd"], "dev": row["results"].get("dev_fsdd")}
            for row in results["rows"]}


def chosen_on_dev(per_fold: dict[str, dict], baseline: str = "GMM-HMM") -> dict[str, tuple[str, dict]]:
    """Per fold, the net (not the baseline) with the fewest FSDD dev errors, ties to the one listed first, and its
    test cell: `{speaker: (net, test cell)}`. The choice never looks at the test speaker."""
    chosen = {}
    for speaker, nets in per_fold.items():
        candidates = [(cells["dev"]["errors"], index, net) for index, (net, cells) in enumerate(nets.items())
                      if net != baseline and cells["dev"] is not None]
        _, _, net = min(candidates)
        chosen[speaker] = (net, nets[net]["test"])
    return chosen


def summarise(per_fold: dict[str, dict]) -> str:
    """Markdown: one row per net, a row for the net chosen on dev in each fold, a column per held-out speaker, then
    mean / pooled / worst."""
    speakers = sorted(per_fold)
    nets = list(dict.fromkeys(net for fold in per_fold.values() for net in fold))
    lines = ["| net | " + " | ".join(speakers) + " | mean WER | pooled | worst |",
             "|---|" + "---:|" * (len(speakers) + 3)]

    def row(name, cells):
        mean = sum(c["wer"] for c in cells) / len(cells)
        errors, words = sum(c["errors"] for c in cells), sum(c["words"] for c in cells)
        worst = max(zip(cells, speakers), key=lambda item: item[0]["wer"])
        return (f"| {name} | " + " | ".join(f"{c['wer']:.2f} [{c['errors']}/{c['words']}]" for c in cells)
                + f" | {mean:.2f} | {100 * errors / words:.2f} [{errors}/{words}] | {worst[0]['wer']:.2f} "
                  f"({worst[1]}) |")

    for net in nets:
        if all(net in per_fold[s] for s in speakers):
            lines.append(row(net, [per_fold[s][net]["test"] for s in speakers]))
    chosen = chosen_on_dev(per_fold)
    lines.append(row("net chosen on dev (" + ", ".join(chosen[s][0] for s in speakers) + ")",
                     [chosen[s][1] for s in speakers]))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", required=True, help="A checkout of the FSDD repository.")
    parser.add_argument("--work_dir", default="exp/loso", help="One sub-directory per fold.")
    parser.add_argument("--speakers", default="george,jackson,lucas,nicolas,theo,yweweler",
                        help="Held-out speakers (one fold each).")
    parser.add_argument("--nets", default=None, help="Recipe --nets (default: the recipe's three nets).")
    parser.add_argument("--summarise_only", action="store_true",
                        help="Only tabulate the folds' existing reports (no recipe runs).")
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
        if not args.summarise_only:
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
