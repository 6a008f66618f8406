"""A sequential acoustic model as an explicit chain of layers that carries recurrent state.

Models from `crnn_tf.models.from_spec` are chains: features → [Masking] → [Splice] → blocks → logits. The export walks
that chain itself instead of calling the Keras model, so that one set of weights serves both whole-utterance scoring
and chunk-by-chunk streaming: every recurrent layer (`PeepholeLSTMP`, `CLSTM`) is re-created with `return_state=True`,
its weights copied, and fed `initial_state` / asked for its final state.
"""
import keras
import numpy as np
import tensorflow as tf

from crnn_tf.layers import Splice


class NotStreamableError(ValueError):
    """The model cannot be scored chunk by chunk (it splices future frames)."""


class LayerChain:
    """The layers of a sequential Keras model, re-created so that recurrent layers return their state.

    Args:
      model: a `keras.Model` whose layers form a single chain (as `from_spec` builds); checked numerically against
        `model` on a random input.
      compute_dtype: None (default: the model's own policy) or a Keras dtype policy name such as "mixed_bfloat16"
        for the re-created layers; variables stay float32, logits are returned as float32.

    Attributes:
      layers: the re-created layers, in order (no InputLayer / Masking: masks come from lengths).
      state_specs: list of (name, shape without batch) of every carried state tensor, in order; each recurrent
        layer contributes `<layer>_c` then `<layer>_r`.
      streamable: False when a `Splice` with context > 0 is in the chain (it reads future frames).
      input_dim: features per frame.
    """

    def __init__(self, model, compute_dtype=None):
        self.input_dim = int(model.inputs[0].shape[-1])
        self.layers = []
        self._stateful = []
        for layer in model.layers:
            if isinstance(layer, (keras.layers.InputLayer, keras.layers.Masking)):
                continue
            config = layer.get_config()
            stateful = "return_state" in config  # PeepholeLSTMP, CLSTM
            if stateful:
                config["return_state"] = True
            if compute_dtype:
                config["dtype"] = compute_dtype
            self.layers.append(type(layer).from_config(config))
            self._stateful.append(stateful)
        self.streamable = not any(isinstance(layer, Splice) and layer.context > 0 for layer in self.layers)
        self._originals = [layer for layer in model.layers
                           if not isinstance(layer, (keras.layers.InputLayer, keras.layers.Masking))]
        # Build by running a dummy input through, then copy the weights and record the state shapes.
        _, states = self(tf.zeros([1, 2, self.input_dim]))
        for twin, original in zip(self.layers, self._originals):
            twin.set_weights(original.get_weights())
        names = [name for layer, stateful in zip(self.layers, self._stateful) if stateful
                 for name in (f"{layer.name}_c", f"{layer.name}_r")]
        self.state_specs = [(name, tuple(int(d) for d in state.shape[1:])) for name, state in zip(names, states)]
        self._check_against(model)

    @property
    def variables(self):
        """The variables of the re-created layers (the only copy of the weights an export needs)."""
        return [v for layer in self.layers for v in layer.weights]

    def _check_against(self, model):
        """Refuses models that are not a plain chain: the chain must reproduce the model's logits."""
        x = np.random.default_rng(0).normal(size=(2, 5, self.input_dim)).astype(np.float32)
        expected = np.asarray(model(x, training=False), np.float32)
        got = self(tf.constant(x))[0].numpy()
        tolerance = 5e-2 if any(layer.compute_dtype == "bfloat16" for layer in self.layers) else 1e-4
        if expected.shape != got.shape or not np.allclose(expected, got, atol=tolerance, rtol=tolerance):
            raise ValueError(f"model {model.name!r} is not a sequential chain of layers (walking its layers "
                             "does not reproduce its output); only from_spec-style models can be exported")

    def zero_states(self, batch):
        """Zero initial states for `batch` sequences, in `state_specs` order."""
        return [tf.zeros([batch, *shape]) for _, shape in self.state_specs]

    def __call__(self, features, mask=None, states=None):
        """Runs the chain.

        Args:
          features: float (batch, time, input_dim).
          mask: optional bool (batch, time); frames outside it leave recurrent states unchanged.
          states: optional list of state tensors (`state_specs` order); zeros when None.

        Returns:
          (logits float32 (batch, time, targets), final states as a list in `state_specs` order).
        """
        x = features
        states_out = []
        state_index = 0
        for layer, stateful in zip(self.layers, self._stateful):
            if stateful:
                initial = None if states is None else [states[state_index], states[state_index + 1]]
                state_index += 2
                x, c, r = layer(x, mask=mask, initial_state=initial, training=False)
                states_out += [c, r]
            elif isinstance(layer, Splice):
                x = layer(x, mask=mask)
            else:
                x = layer(x, training=False)
        return tf.cast(x, tf.float32), [tf.cast(s, tf.float32) for s in states_out]
