"""Acoustic models built from the paper's network names, and the paper's model zoo."""
from crnn_tf.models.builder import AcousticModel, check_dropout, check_fraction, from_spec
from crnn_tf.models.spec import LayerSpec, SpecError, parse_spec
from crnn_tf.models.zoo import PAPER_MODELS, PaperModel

__all__ = [
    "PAPER_MODELS", "AcousticModel", "LayerSpec", "PaperModel", "SpecError", "check_dropout", "check_fraction",
    "from_spec", "parse_spec",
]
