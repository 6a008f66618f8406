"""The 22 networks of Li & Wu (Interspeech 2015, arXiv:1610.03165), Tables 1-5, with the paper's #Params and CER.

`PAPER_MODELS` maps each network's name as printed in the paper to a `PaperModel`, whose `spec` builds it at the
paper's scale (31 bands x 3 streams = 93 inputs per frame, 5529 senones, ±5 frames of context for
feed-forward-first nets). Every entry's parameter count is within `PARAMS_TOLERANCE` of the paper's, except the
two whose printed figure contradicts the arithmetic of the other rows: those pin our own count in
`pinned_params`, and docs/models.md shows why. `python -m crnn_tf.models.zoo` prints the zoo table of
docs/models.md.
"""
import dataclasses
import sys

PAPER_INPUT = {"num_bands": 31, "num_streams": 3, "num_targets": 5529, "context": 5}

# Relative difference between our parameter count and the paper's that still counts as a match.
PARAMS_TOLERANCE = 0.01


@dataclasses.dataclass(frozen=True)
class PaperModel:
    """One network of the paper.

    Attributes:
      name: the network's name as printed in the paper, e.g. "CLstm384P256 + Pooling + 3×ReLU2000".
      spec: the same network in the model-spec grammar (`crnn_tf.models.spec`).
      table: the paper's table number (1-5).
      paper_params: the paper's #Params (printed in millions with one decimal, e.g. 23.7M -> 23_700_000).
      paper_cer: the paper's character error rate on HKUST dev (percent).
      pinned_params: our exact count for a row whose printed #Params cannot be reproduced (the reason is in
        `notes` and docs/models.md); None for rows that match within `PARAMS_TOLERANCE`.
      notes: the geometry choice behind the spec, or why the row cannot match.
    """

    name: str
    spec: str
    table: int
    paper_params: int
    paper_cer: float
    pinned_params: int | None = None
    notes: str = ""

    def build(self, **overrides):
        """Builds the network at the paper's scale; keyword arguments override `PAPER_INPUT`."""
        from crnn_tf.models.builder import from_spec

        return from_spec(self.spec, **{**PAPER_INPUT, **overrides})

    def count_params(self):
        """Our parameter count at the paper's scale, from a build that never draws the weights."""
        import tensorflow as tf

        # In a throwaway graph the weights are initializer ops that never run; built eagerly, the nets with
        # 2000-cell LSTMs take seconds each (the orthogonal recurrent kernels) and up to 180 MB.
        with tf.Graph().as_default():
            return self.build().count_params()

    def params_match(self, params):
        """Whether `params` is within `PARAMS_TOLERANCE` of the paper's #Params."""
        return abs(params - self.paper_params) <= PARAMS_TOLERANCE * self.paper_params


def _million(printed):
    """The paper's "23.7M" as an integer count (round() because 23.7 * 1e6 is not exact in binary)."""
    return round(printed * 1_000_000)


# Patch geometry (see docs/models.md, "How the #Params pin the geometry down"): the builder's defaults fit
# every row but the CNN rows with two convolutions, whose second one must leave 2 pooled patches, hence W2.
_SECOND_CONV_NOTE = (
    "Second convolution with 2-band patches (W2): 8 pooled bands -> 7 patches -> 2 after Pool3. The default "
    "4-band patches leave 1 pooled patch and 1.9 % (Table 1) / 1.2 % (Table 2) fewer parameters than the paper."
)

PAPER_MODELS = {
    model.name: model
    for model in (
        # Table 1: feed-forward baselines (±5 frames of context).
        PaperModel("4×ReLU2000", "4xReLU2000", 1, _million(25.1), 37.90),
        PaperModel("4×Maxout800G3", "4xMaxout800G3", 1, _million(12.6), 37.42),
        PaperModel(
            "2×(Conv + Pooling) + 3×ReLU2000",
            "Conv256+Pool3+Conv256W2+Pool3+3xReLU2000",
            1,
            _million(20.3),
            36.66,
            notes=_SECOND_CONV_NOTE,
        ),
        # Table 2: LSTM baselines, and convolution stacked under an LSTMP.
        PaperModel("Lstm750", "Lstm750", 2, _million(6.7), 39.43),
        PaperModel("Lstm2000P750", "Lstm2000P750", 2, _million(12.4), 34.76),
        PaperModel("Lstm750 + 3×ReLU2000", "Lstm750+3xReLU2000", 2, _million(23.1), 36.46),
        PaperModel("Lstm2000P750 + 3×ReLU2000", "Lstm2000P750+3xReLU2000", 2, _million(28.8), 33.85),
        PaperModel("3×Lstm2000P750", "3xLstm2000P750", 2, _million(39.4), 34.22),
        PaperModel(
            "2×Lstm2000P750 + 3×ReLU2000",
            "2xLstm2000P750+3xReLU2000",
            2,
            _million(38.3),
            34.61,
            pinned_params=42_341_529,
            notes=(
                "The paper's 38.3M contradicts its own 28.8M (Lstm2000P750 + 3×ReLU2000) plus one more "
                "Lstm2000P750 on 750 inputs (13.5M), and is below 3×Lstm2000P750 (39.4M) although it trades an "
                "LSTMP layer (13.5M) for three ReLU layers and a 2000-wide output layer (16.4M). "
                "2×Lstm2000P750 + 2×ReLU2000 would have 38.34M."
            ),
        ),
        PaperModel(
            "2×(Conv + Pooling) + 2×ReLU2000 + Lstm2000P750",
            "Conv256+Pool3+Conv256W2+Pool3+2xReLU2000+Lstm2000P750",
            2,
            _million(32.9),
            36.15,
            notes=_SECOND_CONV_NOTE,
        ),
        PaperModel(
            "Conv + Pooling + Lstm2000P750 + 3×ReLU2000",
            "Conv256+Pool3+Lstm2000P750+3xReLU2000",
            2,
            _million(44.4),
            36.01,
        ),
        # Table 3: CLSTM without and with pooling, by the number of cells.
        PaperModel("CLstm128 + 3×ReLU2000", "CLstm128+3xReLU2000", 3, _million(25.3), 36.00),
        PaperModel("CLstm128 + Pooling + 3×ReLU2000", "CLstm128+Pool3+3xReLU2000", 3, _million(21.2), 35.92),
        PaperModel("CLstm256 + Pooling + 3×ReLU2000", "CLstm256+Pool3+3xReLU2000", 3, _million(23.4), 34.81),
        PaperModel(
            "CLstm384 + Pooling + 3×ReLU2000",
            "CLstm384+Pool3+3xReLU2000",
            3,
            _million(25.3),
            34.12,
            pinned_params=25_842_905,
            notes=(
                "The paper's 25.3M would need 7.3 pooled patches per frame, where the other Table 3-5 CLSTM rows "
                "need 8; it is the figure printed for CLstm128 + 3×ReLU2000, the first row of Table 3."
            ),
        ),
        # Table 4: CLSTM with a projection layer.
        PaperModel(
            "CLstm256P128 + Pooling + 3×ReLU2000", "CLstm256P128+Pool3+3xReLU2000", 4, _million(21.3), 34.87
        ),
        PaperModel(
            "CLstm384P256 + Pooling + 3×ReLU2000", "CLstm384P256+Pool3+3xReLU2000", 4, _million(23.7), 34.11
        ),
        PaperModel(
            "CLstm512P256 + Pooling + 3×ReLU2000", "CLstm512P256+Pool3+3xReLU2000", 4, _million(23.8), 34.03
        ),
        # Table 5: two CLSTM layers, or a CLSTM under an LSTMP.
        PaperModel(
            "2×(CLstm256 + Pooling) + 3×ReLU2000", "2x(CLstm256+Pool3)+3xReLU2000", 5, _million(21.2), 32.89
        ),
        PaperModel(
            "2×(CLstm384P256 + Pooling) + 3×ReLU2000",
            "2x(CLstm384P256+Pool3)+3xReLU2000",
            5,
            _million(22.3),
            32.54,
        ),
        PaperModel(
            "CLstm256P128 + Pooling + Lstm2000P750 + 3×ReLU2000",
            "CLstm256P128+Pool3+Lstm2000P750+3xReLU2000",
            5,
            _million(36.4),
            32.34,
        ),
        PaperModel(
            "CLstm384P256 + Pooling + Lstm2000P750 + 3×ReLU2000",
            "CLstm384P256+Pool3+Lstm2000P750+3xReLU2000",
            5,
            _million(44.9),
            31.43,
        ),
    )
}


def zoo_table_markdown(models=None):
    """The zoo table of docs/models.md: table, name, spec, paper #Params, ours, ratio, paper CER."""
    rows = [
        "| table | network (as printed) | spec | paper #Params | ours | ours / paper | paper CER (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in (models or PAPER_MODELS).values():
        ours = model.count_params()
        ratio = f"{ours / model.paper_params:.3f}"
        if model.pinned_params is not None:
            ratio += " (exception)"
        rows.append(
            f"| {model.table} | {model.name} | `{model.spec}` | {model.paper_params / 1e6:.1f}M | {ours:,} "
            f"| {ratio} | {model.paper_cer:.2f} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(zoo_table_markdown() + "\n")
