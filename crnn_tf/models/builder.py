"""Builds Keras acoustic models from model specs (see `crnn_tf.models.spec`)."""
import math
import random
import re

import keras

from crnn_tf import layers as crnn_layers
from crnn_tf.models.spec import FEED_FORWARD_KINDS, SpecError, parse_spec

# Patch width (bands) of a Conv/CLstm block without a `W` option: the first frequency layer sees the
# input bands, a later one the previous layer's pooled patches (8 of them for 31 bands, 8-band patches and
# Pool3), where 8-band patches would leave nothing to pool; 4 follows Sainath et al. (2013)'s second layer.
FIRST_PATCH_SIZE = 8
STACKED_PATCH_SIZE = 4
PATCH_STRIDE = 1


def from_spec(
    spec, *, num_bands=31, num_streams=3, num_targets=5529, context=5, mask_value=None, dropout=0.0, name=None
):
    """Builds the acoustic model a spec names, e.g. `from_spec("CLstm384P256+Pool3+Lstm2000P750+3xReLU2000")`.

    Args:
      spec: the model spec, see `crnn_tf.models.spec`.
      num_bands: bands per feature stream (31 = energy + 30 mel bins). Default 31.
      num_streams: feature streams per frame in Kaldi `add-deltas` layout [static | Δ | ΔΔ]. Default 3.
      num_targets: output classes (senones). Default 5529.
      context: frames spliced on each side when the first block is feed-forward (ReLU, Maxout, Conv);
        ignored for recurrent-first nets, which see one frame at a time. Default 5.
      mask_value: None (default) or a float: frames whose features all equal it are padding (a
        `keras.layers.Masking` layer); the mask reaches `Splice` (edge replication at the last valid frame)
        and the recurrent layers (padded frames leave their state unchanged).
      dropout: fraction of each hidden block's outputs zeroed in training (`keras.layers.Dropout` after every
        ReLU, Maxout, Conv/CLstm (with its pooling) and Lstm block, none on the features or the logits; the
        kept ones are scaled by 1 / (1 - dropout)). Recurrent layers drop only their outputs, never their
        recurrent state. At inference it is the identity. 0 (default) adds no layer: the model is the one
        built without it.
      name: model name. Default: the spec with non-word characters replaced by "_".

    Returns:
      An `AcousticModel` (a functional `keras.Model`): (batch, time, num_bands * num_streams) features in,
      (batch, time, num_targets) logits out. Its `spec` attribute and config keep the spec, so a `.keras`
      file reloads into the same model.

    Raises:
      SpecError (a ValueError): the spec is malformed or does not fit the input (e.g. a CLstm after an
      Lstm, or patches that leave nothing to pool); the message points at the block.
      ValueError: `dropout` is not in [0, 1).
    """
    return AcousticModel(
        spec,
        num_bands=num_bands,
        num_streams=num_streams,
        num_targets=num_targets,
        context=context,
        mask_value=mask_value,
        dropout=dropout,
        name=name,
    )


def check_fraction(value, name: str, meaning: str = ""):
    """`value` as a float if it lies in [0, 1), e.g. a dropout rate or a label smoothing weight.

    Raises:
      ValueError: `value` is negative, 1 or more, NaN or not a number; the message names `name` (and says what it is
        when `meaning` is given).
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 <= number < 1.0:  # NaN fails the comparison too
        raise ValueError(f"{name} must be in [0, 1){f' ({meaning})' if meaning else ''}, got {value!r}")
    return number


def check_dropout(rate):
    """`rate` as a float if it is a dropout rate, in [0, 1).

    Raises:
      ValueError: `rate` is negative, 1 or more, NaN or not a number; the message names `dropout`.
    """
    return check_fraction(rate, "dropout", "the fraction of hidden activations zeroed in training")


@keras.saving.register_keras_serializable(package="crnn_tf")
class AcousticModel(keras.Model):
    """A functional per-frame acoustic model built from a spec; see `from_spec` for the arguments.

    Its config is the spec and the build arguments, so `keras.models.load_model` rebuilds the same graph and
    loads the weights into it.

    Attributes:
      spec: the model spec string.
      layer_specs: the parsed `LayerSpec`s.
      spliced_context: frames spliced on each side (0 for recurrent-first nets).
      dropout: the dropout rate (0.0: no dropout layers).
    """

    def __init__(
        self,
        spec,
        num_bands=31,
        num_streams=3,
        num_targets=5529,
        context=5,
        mask_value=None,
        dropout=0.0,
        name=None,
        **kwargs,
    ):
        layer_specs = parse_spec(spec)
        dropout = check_dropout(dropout)
        spliced_context = context if layer_specs[0].kind in FEED_FORWARD_KINDS else 0
        features, logits = _build_graph(
            spec, layer_specs, num_bands, num_streams, num_targets, spliced_context, mask_value, dropout
        )
        trainable = kwargs.pop("trainable", True)
        super().__init__(inputs=features, outputs=logits, name=name or _default_name(spec), **kwargs)
        self.trainable = trainable
        self.spec = spec
        self.layer_specs = layer_specs
        self.spliced_context = spliced_context
        self.dropout = dropout
        self._build_arguments = {
            "spec": spec,
            "num_bands": num_bands,
            "num_streams": num_streams,
            "num_targets": num_targets,
            "context": context,
            "mask_value": mask_value,
            "dropout": dropout,
        }

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self._build_arguments}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


def _default_name(spec):
    return re.sub(r"\W+", "_", spec).strip("_")


def _build_graph(spec, layer_specs, num_bands, num_streams, num_targets, context, mask_value, dropout):
    """The functional graph: features -> [Masking] -> [Splice] -> blocks [each + Dropout] -> logits."""
    features = keras.Input(shape=(None, num_bands * num_streams), name="features")
    x = features
    if mask_value is not None:
        x = keras.layers.Masking(mask_value=mask_value, name="padding_mask")(x)
    if context:
        x = crnn_layers.Splice(context, name="splice")(x)
    # The frequency layout of x: (bands, channels, streams_first), or None once a block has mixed bands.
    layout = (num_bands, num_streams * (2 * context + 1), True)
    seen_frequency_layer = False
    previous = None
    dropout_seed = _peek_seed() if dropout else None
    for index, layer_spec in enumerate(layer_specs, start=1):
        layer_name = f"layer{index}_{layer_spec.token.lower()}"
        if layer_spec.is_frequency:
            if layout is None:
                raise SpecError(
                    spec,
                    layer_spec.column,
                    f"{layer_spec.token} needs bands to convolve over, but {previous.token} outputs none",
                )
            if layer_spec.pool_size > 1:
                layer_name += f"_pool{layer_spec.pool_size}"
            patch_size = layer_spec.patch_size or (STACKED_PATCH_SIZE if seen_frequency_layer else FIRST_PATCH_SIZE)
            patch_stride = layer_spec.patch_stride or PATCH_STRIDE
            try:
                layer = _frequency_layer(layer_spec, patch_size, patch_stride, layout, layer_name)
            except ValueError as error:  # the layer checks that its patches fill at least one pool
                raise SpecError(spec, layer_spec.column, f"{layer_spec.token}: {error}") from None
            x = layer(x)
            layout = (layer.num_pooled_patches, x.shape[-1] // layer.num_pooled_patches, False)
            seen_frequency_layer = True
        else:
            x = _flat_layer(layer_spec, layer_name)(x)
            layout = None
        if dropout:
            # A layer after the block, never inside a recurrence: the recurrent state stays undropped, so the
            # recurrent layers (fused, and re-created stateful by the export) are untouched. Elementwise, so a
            # frequency layout passes through unchanged.
            x = keras.layers.Dropout(dropout, seed=dropout_seed + index, name=f"{layer_name}_dropout")(x)
        previous = layer_spec
    logits = keras.layers.Dense(num_targets, name="logits")(x)
    return features, logits


def _peek_seed():
    """A seed drawn from Python's generator (the one `keras.utils.set_random_seed` seeds and the weight initialisers
    draw from) that leaves it where it was: with the same seed, a net starts from the same weights with or without
    dropout, so the two compare dropout alone."""
    state = random.getstate()
    try:
        return random.randint(1, 2**30)
    finally:
        random.setstate(state)


def _frequency_layer(layer_spec, patch_size, patch_stride, layout, name):
    num_bands, num_streams, streams_first = layout
    geometry = {
        "patch_size": patch_size,
        "patch_stride": patch_stride,
        "pool_size": layer_spec.pool_size,
        "num_bands": num_bands,
        "num_streams": num_streams,
        "streams_first": streams_first,
        "name": name,
    }
    if layer_spec.kind == "Conv":
        return crnn_layers.FrequencyConvPool(layer_spec.size, **geometry)
    return crnn_layers.CLSTM(layer_spec.size, projection_units=layer_spec.projection, **geometry)


def _flat_layer(layer_spec, name):
    if layer_spec.kind == "ReLU":
        return keras.layers.Dense(layer_spec.size, activation="relu", name=name)
    if layer_spec.kind == "Maxout":
        return crnn_layers.Maxout(layer_spec.size, group_size=layer_spec.group_size, name=name)
    if layer_spec.kind == "Lstm":
        return crnn_layers.PeepholeLSTMP(layer_spec.size, projection_units=layer_spec.projection, name=name)
    raise AssertionError(f"unhandled block kind {layer_spec.kind}")
