"""The recipe's report: a paper-style results table (markdown), learning curves and an error-rate bar chart (PNG)."""
import json
import os

import matplotlib

matplotlib.use("Agg")  # no display: write PNG files
import matplotlib.pyplot as plt  # noqa: E402

from crnn_tf.hmm.error_rate import EPS  # noqa: E402


def _wer_cell(result):
    low, high = result["interval"]
    return (f"{result['wer']:.2f} [{result['errors']}/{result['words']}] ({low:.1f}–{high:.1f}) "
            f"@{result['acoustic_scale']:g}/{result['word_insertion_penalty']:g}")


def markdown_table(rows, sets):
    """Rows → the paper-style table: net, #Params, dev frame accuracy, then one WER cell per set (rate,
    [errors / words], 95 % bootstrap interval, @ acoustic scale / word insertion penalty) — `sets` in order."""
    header = ["net", "spec", "#Params", "dev frame acc. (%)"] + [f"{name} WER (%)" for name in sets]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for row in rows:
        params = "–" if row["params"] is None else f"{row['params'] / 1e6:.2f}M"
        accuracy = "–" if row["dev_frame_accuracy"] is None else f"{100 * row['dev_frame_accuracy']:.1f}"
        cells = [row["net"], f"`{row['spec']}`", params, accuracy]
        lines.append("| " + " | ".join(cells + [_wer_cell(row["results"][name]) for name in sets]) + " |")
    return "\n".join(lines)


def _confusion(ref, hyp, count):
    if ref == EPS:
        return f"+{hyp} ×{count}"
    if hyp == EPS:
        return f"−{ref} ×{count}"
    return f"{ref} → {hyp} ×{count}"


def confusion_lines(rows, sets, top=5):
    """The `top` most frequent errors of every row on every test set (not the dev sets the decoders were tuned
    on): substitutions as REF → HYP, insertions +HYP, deletions −REF, each with its count. Rows decoded before
    the counts were recorded have none and are left out."""
    lines = []
    for row in rows:
        for name in sets:
            result = row["results"][name]
            if name.startswith("dev_") or "confusions" not in result or not result["errors"]:
                continue
            pairs = ", ".join(_confusion(*c) for c in result["confusions"][:top])
            lines.append(f"- {row['net']}, {name} ({result['errors']} errors): {pairs}")
    return lines


def read_metrics(path):
    """metrics.jsonl → list of per-epoch dicts."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_learning_curves(curves, path):
    """curves: {net: [epoch records with 'epoch', 'train_loss', 'dev_frame_accuracy']} → one PNG, two panels."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for net, records in curves.items():
        epochs = [r["epoch"] for r in records]
        loss_ax.plot(epochs, [r.get("train_loss") for r in records], marker="o", label=net)
        acc_ax.plot(epochs, [100 * r.get("dev_frame_accuracy", float("nan")) for r in records], marker="o",
                    label=net)
    loss_ax.set(xlabel="epoch", ylabel="training cross-entropy", title="Training loss")
    acc_ax.set(xlabel="epoch", ylabel="dev frame accuracy (%)", title="Dev frame accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_error_rates(rows, sets, path):
    """Grouped bars with 95 % intervals: WER of every net on every set."""
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(max(6, 2 * len(sets) + 2), 4))
    for index, row in enumerate(rows):
        positions = [m + index * width for m in range(len(sets))]
        values = [row["results"][name]["wer"] for name in sets]
        errors = [[v - row["results"][name]["interval"][0] for v, name in zip(values, sets)],
                  [row["results"][name]["interval"][1] - v for v, name in zip(values, sets)]]
        bars = ax.bar(positions, values, width, yerr=errors, capsize=2, label=row["net"])
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks([m + width * (len(rows) - 1) / 2 for m in range(len(sets))], list(sets))
    ax.set(ylabel="WER (%)", title="Word error rate per set (95 % bootstrap intervals; test speakers unseen)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report_dir, rows, curves, sets, notes=""):
    """Writes results.md, results.json, learning_curves.png and error_rates.png; returns the markdown table."""
    os.makedirs(report_dir, exist_ok=True)
    table = markdown_table(rows, sets)
    confusions = confusion_lines(rows, sets)
    errors = ("\n## Most frequent errors on the test sets\n\n" + "\n".join(confusions) + "\n") if confusions else ""
    with open(os.path.join(report_dir, "results.md"), "w") as f:
        f.write("# crnn_tf recipe results\n\n" + table + "\n\n![learning curves](learning_curves.png)\n\n"
                "![error rates](error_rates.png)\n\n" + notes + errors)
    with open(os.path.join(report_dir, "results.json"), "w") as f:
        json.dump({"sets": list(sets), "rows": rows}, f, indent=1)
    plot_learning_curves(curves, os.path.join(report_dir, "learning_curves.png"))
    plot_error_rates(rows, sets, os.path.join(report_dir, "error_rates.png"))
    return table
