"""The recipe's report: a paper-style results table (markdown), learning curves and an error-rate bar chart (PNG)."""
import json
import os

import matplotlib

matplotlib.use("Agg")  # no display: write PNG files
import matplotlib.pyplot as plt  # noqa: E402

COLUMNS = ("net", "spec", "params", "dev_frame_accuracy", "acoustic_scale", "dev_wer", "dev_cer", "test_wer",
           "test_cer")


def markdown_table(rows):
    """Rows (dicts with COLUMNS) → the paper-style table: net, #Params, frame accuracy, WER/CER on dev and test."""
    lines = ["| net | spec | #Params | dev frame acc. (%) | ac. scale | dev WER (%) | dev CER (%) | test WER (%) | "
             "test CER (%) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row['net']} | `{row['spec']}` | {row['params'] / 1e6:.2f}M | {100 * row['dev_frame_accuracy']:.1f} | "
            f"{row['acoustic_scale']:g} | "
            f"{row['dev_wer']:.2f} | {row['dev_cer']:.2f} | {row['test_wer']:.2f} | {row['test_cer']:.2f} |")
    return "\n".join(lines)


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


def plot_error_rates(rows, path):
    """Grouped bars: dev/test WER and CER per net."""
    metrics = [("dev_wer", "dev WER"), ("test_wer", "test WER"), ("dev_cer", "dev CER"), ("test_cer", "test CER")]
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(8, 4))
    for index, row in enumerate(rows):
        positions = [m + index * width for m in range(len(metrics))]
        bars = ax.bar(positions, [row[key] for key, _ in metrics], width, label=row["net"])
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks([m + width * (len(rows) - 1) / 2 for m in range(len(metrics))], [label for _, label in metrics])
    ax.set(ylabel="error rate (%)", title="Error rates (test voices unseen in training)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report_dir, rows, curves, notes=""):
    """Writes results.md, results.json, learning_curves.png and error_rates.png; returns the markdown table."""
    os.makedirs(report_dir, exist_ok=True)
    table = markdown_table(rows)
    with open(os.path.join(report_dir, "results.md"), "w") as f:
        f.write("# crnn_tf demo results\n\n" + table + "\n\n![learning curves](learning_curves.png)\n\n"
                "![error rates](error_rates.png)\n\n" + notes)
    with open(os.path.join(report_dir, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    plot_learning_curves(curves, os.path.join(report_dir, "learning_curves.png"))
    plot_error_rates(rows, os.path.join(report_dir, "error_rates.png"))
    return table
