"""The networks of Li & Wu (Interspeech 2015, arXiv:1610.03165), Tables 1-5, by name.

Every entry's `name` is its model spec, so `from_spec(PAPER_MODELS[name].name)` builds it at the paper's
scale (31 bands x 3 streams = 93 inputs per frame, 5529 senones, ±5 frames of context for feed-forward-first
nets).

STATUS: the paper's tables could not be read from this workplace (see docs/models.md, "Provenance"). The
entries below are the networks the project's brief names as the paper's; their table number, #Params and
CER are None until someone copies them from the paper. `python -m crnn_tf.models.zoo` prints the zoo table
of docs/models.md.
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
      name: the network's name as printed in the paper, which is also its model spec.
      table: the paper's table number (1-5), or None if not known.
      paper_params: the paper's #Params, or None if not known.
      paper_cer: the paper's character error rate on HKUST dev (percent), or None if not known.
      notes: provenance and anything that keeps our count from the paper's.
    """

    name: str
    table: int | None = None
    paper_params: int | None = None
    paper_cer: float | None = None
    notes: str = ""

    @property
    def spec(self):
        return self.name

    def build(self, **overrides):
        """Builds the network at the paper's scale; keyword arguments override `PAPER_INPUT`."""
        from crnn_tf.models.builder import from_spec

        return from_spec(self.spec, **{**PAPER_INPUT, **overrides})

    def params_match(self, params):
        """Whether `params` is within `PARAMS_TOLERANCE` of the paper's #Params (False if that is unknown)."""
        return self.paper_params is not None and abs(params - self.paper_params) <= PARAMS_TOLERANCE * self.paper_params


_UNVERIFIED = "Name from the project brief; table, #Params and CER not yet copied from the paper."

PAPER_MODELS = {
    model.name: model
    for model in (
        PaperModel("4xReLU2000", notes=_UNVERIFIED),
        PaperModel("4xMaxout800G3", notes=_UNVERIFIED),
        PaperModel("2x(Conv256+Pool3)+3xReLU2000", notes=_UNVERIFIED),
        PaperModel("Lstm2000P750+3xReLU2000", notes=_UNVERIFIED),
        PaperModel("CLstm384P256+Pool3+Lstm2000P750+3xReLU2000", notes=_UNVERIFIED),
        PaperModel("2x(CLstm256+Pool3)+3xReLU2000", notes=_UNVERIFIED),
    )
}


def _format_count(count):
    return "–" if count is None else f"{count / 1e6:.2f}M"


def markdown_table(models=None):
    """The zoo table of docs/models.md: name, table, paper #Params, ours, ratio, paper CER."""
    rows = [
        "| network | table | paper #Params | ours | ours / paper | paper CER (%) |",
        "|---|---|---|---|---|---|",
    ]
    for model in (models or PAPER_MODELS).values():
        ours = model.build().count_params()
        ratio = "–" if model.paper_params is None else f"{ours / model.paper_params:.3f}"
        cer = "–" if model.paper_cer is None else f"{model.paper_cer:.1f}"
        table = "–" if model.table is None else str(model.table)
        rows.append(
            f"| `{model.name}` | {table} | {_format_count(model.paper_params)} | {ours:,} | {ratio} | {cer} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")
