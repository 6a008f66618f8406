"""A sequential acoustic model as an explicit chain of layers that carries recurrent state.

Models from `crnn_tf.models.from_spec` are chains: features → [Masking] → [Splice] → blocks → logits. The export walks
that chain itself instead of calling the Keras model, so that one set of weights serves both whole-utterance scoring
and chunk-by-chunk streaming: every recurrent layer (`PeepholeLSTMP`, `CLSTM`) is re-created with `return_state=True`,
its weights copied, and fed `initial_state` / asked for its final state.

With a narrower `weight_storage` the large matrices (the recurrent layers' kernels, recurrent and projection
kernels, and every `Dense` kernel, logits included) are held as `StoredMatrix` copies in bf16 or int8 and multiplied
in bf16, while the state, biases, peepholes and all elementwise arithmetic stay float32. Other layers (Maxout,
FrequencyConvPool) keep float32 weights.
"""
import keras
import numpy as np
import tensorflow as tf

from crnn_tf.layers import CLSTM, PeepholeLSTMP, Splice
from crnn_tf.layers.stored_matrix import STORAGES, StoredMatrix, matmul as mixed_matmul

# Agreement with the Keras model that `LayerChain` checks, per storage: bf16 keeps 8 significant bits of every
# weight, int8 about 7 (per column); logits of a random model differ by this much at most.
CHAIN_TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2, "int8": 1e-1}
# Layers the chain leaves out: masks come from lengths, and dropout is the identity at inference (so a model trained
# with dropout exports the same graph as one without).
_NOT_CHAINED = (keras.layers.InputLayer, keras.layers.Masking, keras.layers.Dropout)


class NotStreamableError(ValueError):
    """The model cannot be scored chunk by chunk (it splices future frames)."""


class LayerChain:
    """The layers of a sequential Keras model, re-created so that recurrent layers return their state.

    Args:
      model: a `keras.Model` whose layers form a single chain (as `from_spec` builds); checked numerically against
        `model` on a random input.
      weight_storage: "float32" (default), "bfloat16" or "int8": how the large matrices are stored (see the module
        docstring and `crnn_tf.layers.stored_matrix`); logits and states are float32 in every case.
      matmul_dtype: the products' dtype for narrower storage, "bfloat16" or "float32" (int8 only). Default None:
        `StoredMatrix`'s default (bfloat16).

    Attributes:
      layers: the re-created layers, in order (no InputLayer / Masking: masks come from lengths; no Dropout: the
        identity at inference).
      state_specs: list of (name, shape without batch) of every carried state tensor, in order; each recurrent
        layer contributes `<layer>_c` then `<layer>_r`.
      streamable: False when a `Splice` with context > 0 is in the chain (it reads future frames).
      input_dim: features per frame.
      stored_matrices: the `StoredMatrix` objects (empty for float32 storage).
    """

    def __init__(self, model, weight_storage="float32", matmul_dtype=None):
        if weight_storage not in STORAGES:
            raise ValueError(f"weight_storage must be one of {STORAGES}, got {weight_storage!r}")
        self.input_dim = int(model.inputs[0].shape[-1])
        self.weight_storage = weight_storage
        self.layers = []
        self._stateful = []
        self._originals = [layer for layer in model.layers if not isinstance(layer, _NOT_CHAINED)]
        for layer in self._originals:
            config = layer.get_config()
            stateful = "return_state" in config  # PeepholeLSTMP, CLSTM
            if stateful:
                config["return_state"] = True
            config["dtype"] = "float32"  # narrower storage is the stored matrices' business, not a Keras policy
            self.layers.append(type(layer).from_config(config))
            self._stateful.append(stateful)
        self.streamable = not any(isinstance(layer, Splice) and layer.context > 0 for layer in self.layers)
        self._dense_kernels = {}  # id(Dense layer) → StoredMatrix of its kernel (narrower storage only)
        self.stored_matrices = []
        # Build by running a dummy input through, then copy the weights and record the state shapes.
        _, states = self(tf.zeros([1, 2, self.input_dim]))
        for twin, original in zip(self.layers, self._originals):
            twin.set_weights(original.get_weights())
        names = [name for layer, stateful in zip(self.layers, self._stateful) if stateful
                 for name in (f"{layer.name}_c", f"{layer.name}_r")]
        self.state_specs = [(name, tuple(int(d) for d in state.shape[1:])) for name, state in zip(names, states)]
        if weight_storage != "float32":
            self._store_matrices(weight_storage, matmul_dtype)
        self._check_against(model)

    def _store_matrices(self, storage, matmul_dtype):
        """Replaces the large matrices with `StoredMatrix` copies (recurrent layers: their own; Dense: here)."""
        for layer in self.layers:
            if isinstance(layer, (PeepholeLSTMP, CLSTM)):
                self.stored_matrices += layer.store_matrices(storage, matmul_dtype)
            elif isinstance(layer, keras.layers.Dense):
                stored = StoredMatrix(layer.kernel.numpy(), storage, matmul_dtype, name=f"{layer.name}_kernel")
                self._dense_kernels[id(layer)] = stored
                self.stored_matrices.append(stored)

    @property
    def variables(self):
        """Every variable the chain's computation reads (the only copy of the weights an export needs): the
        stored matrices' variables in place of the Keras matrices they replace."""
        replaced = set()
        for layer in self.layers:
            if isinstance(layer, keras.layers.Dense) and id(layer) in self._dense_kernels:
                replaced.add(id(layer.kernel))
            lstm = layer.patch_lstm if isinstance(layer, CLSTM) else layer
            if isinstance(lstm, PeepholeLSTMP) and self.stored_matrices:
                replaced.update(id(w) for w in (lstm.kernel, lstm.recurrent_kernel, lstm.projection_kernel)
                                if w is not None)
        kept = [v for layer in self.layers for v in layer.weights if id(v) not in replaced]
        return kept + [v for stored in self.stored_matrices for v in stored.variables]

    def _check_against(self, model):
        """Refuses models that are not a plain chain: the chain must reproduce the model's logits."""
        x = np.random.default_rng(0).normal(size=(2, 5, self.input_dim)).astype(np.float32)
        expected = np.asarray(model(x, training=False), np.float32)
        got = self(tf.constant(x))[0].numpy()
        tolerance = CHAIN_TOLERANCE[self.weight_storage]
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
            elif id(layer) in self._dense_kernels:
                x = _stored_dense(layer, self._dense_kernels[id(layer)], x)
            else:
                x = layer(x, training=False)
        return tf.cast(x, tf.float32), [tf.cast(s, tf.float32) for s in states_out]


def _stored_dense(layer, kernel, x):
    """`keras.layers.Dense` with its kernel read from a `StoredMatrix`: one 2-D product over all frames."""
    flat = tf.reshape(x, [-1, tf.shape(x)[-1]])
    y = mixed_matmul(flat, kernel.value())
    if layer.use_bias:
        y += layer.bias
    y = tf.reshape(y, tf.concat([tf.shape(x)[:-1], [kernel.shape[1]]], 0))
    return layer.activation(y)
