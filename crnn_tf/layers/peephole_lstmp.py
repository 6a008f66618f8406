"""Peephole LSTM with an optional recurrent projection (LSTMP), as a Keras layer."""
import keras
import tensorflow as tf
from keras import ops

from crnn_tf.layers import lstmp_recurrence
from crnn_tf.layers.stored_matrix import StoredMatrix, matmul as mixed_matmul

MATRIX_WEIGHTS = ("kernel", "recurrent_kernel", "projection_kernel")  # the ones `store_matrices` narrows


@keras.saving.register_keras_serializable(package="crnn_tf")
class PeepholeLSTMP(keras.layers.Layer):
    """Peephole LSTM with an optional projection layer (LSTMP; Sak et al. 2014, Li & Wu 2015 eqs. 3-8).

    The input and forget gates look at c_{t-1} and the output gate at c_t through diagonal peephole
    weights; with `projection_units` the cell output m_t is projected (no bias) to r_t, which is both the
    layer's output and its recurrent input. For frame-level acoustic models: `projection_units` decouples
    the width of the memory from the cost of the recurrence (P x 4N instead of N x 4N).

    Weights, in `get_weights()` order: `kernel` (D, 4N), `recurrent_kernel` (P or N, 4N), `bias` (4N,),
    `peephole_kernel` (3, N) with rows for gates i, f, o (when `use_peepholes`), `projection_kernel` (N, P)
    (when `projection_units`). Gate order is i, f, c, o as in `keras.layers.LSTM`, so an LSTM's weights
    load into `PeepholeLSTMP(use_peepholes=False)` unchanged.

    The input transform of all frames is one matrix product; the time loop runs inside the graph and,
    when training, has a hand-written backward pass whose weight gradients are single large products
    (see `lstmp_recurrence`).

    Args:
      units: int, N, the number of memory cells.
      projection_units: int or None, P, the width of the projection r_t. Default None (r_t = m_t).
      use_peepholes: bool, whether to use peephole connections. Default True.
      cell_clip: float or None; c_t is clipped to [-cell_clip, cell_clip] before it is carried. Default None.
      projection_clip: float or None; r_t is clipped likewise. Default None.
      return_sequences: bool, return the output of every frame (True) or only the last valid frame's.
        Default True.
      return_state: bool, also return the final state (c, r) for chunk-by-chunk streaming. Default False.
      unit_forget_bias: bool, add 1 to the forget-gate bias at initialisation. Default True.
      unroll: bool, unroll the time loop (needs a static number of frames; fastest for short truncated-BPTT
        chunks, slower to build for long ones). Default False.
      feature_major_inference: bool; at inference, keep the state feature-major and apply the input transform
        inside the time loop (`lstmp_recurrence.forward_feature_major`): faster for a wide batch of narrow
        sequences, as the CLSTM's patches are; slower for a narrow batch. Same results up to float rounding.
        Default False.
      kernel_initializer: for `kernel`. Default "glorot_uniform".
      recurrent_initializer: for `recurrent_kernel`. Default "orthogonal".
      bias_initializer: for `bias`. Default "zeros".
      peephole_initializer: for `peephole_kernel`. Default "zeros".
      projection_initializer: for `projection_kernel`. Default "glorot_uniform".
      **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
      inputs: (batch, time, features).
      mask: optional boolean (batch, time); padded frames output zeros and leave the state unchanged.
      initial_state: optional [c0 (batch, N), r0 (batch, P or N)]; zeros by default.
      training: bool; the training graph stores what the backward pass needs.

    Input shape: (batch, time, features).
    Output shape: (batch, time, P or N) with `return_sequences`, else (batch, P or N); with `return_state`,
      a list [output, c (batch, N), r (batch, P or N)].

    Example:

    >>> x = np.random.rand(2, 15, 93).astype("float32")
    >>> layer = PeepholeLSTMP(64, projection_units=32, cell_clip=50.0)
    >>> layer(x).shape
    TensorShape([2, 15, 32])
    >>> y, c, r = PeepholeLSTMP(64, return_state=True)(x)  # carry (c, r) into the next chunk
    """

    def __init__(
        self,
        units,
        projection_units=None,
        use_peepholes=True,
        cell_clip=None,
        projection_clip=None,
        return_sequences=True,
        return_state=False,
        unit_forget_bias=True,
        unroll=False,
        feature_major_inference=False,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        peephole_initializer="zeros",
        projection_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if units <= 0 or (projection_units is not None and projection_units <= 0):
            raise ValueError(f"units and projection_units must be positive, got {units}, {projection_units}")
        for clip_name, clip in (("cell_clip", cell_clip), ("projection_clip", projection_clip)):
            if clip is not None and clip <= 0:
                raise ValueError(f"{clip_name} must be positive or None, got {clip}")
        self.units = int(units)
        self.projection_units = None if projection_units is None else int(projection_units)
        self.use_peepholes = bool(use_peepholes)
        self.cell_clip = cell_clip
        self.projection_clip = projection_clip
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.unit_forget_bias = unit_forget_bias
        self.unroll = unroll
        self.feature_major_inference = bool(feature_major_inference)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.peephole_initializer = keras.initializers.get(peephole_initializer)
        self.projection_initializer = keras.initializers.get(projection_initializer)
        self.supports_masking = True
        self.input_spec = keras.layers.InputSpec(ndim=3)
        self._stored_matrices = {}

    @property
    def output_units(self):
        """Width of r_t: P with a projection, else N."""
        return self.projection_units or self.units

    @property
    def state_size(self):
        """(N, P or N): widths of the carried (c, r)."""
        return (self.units, self.output_units)

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(f"{self.name}: the last input dimension must be known, got shape {input_shape}")
        n = self.units
        self.kernel = self.add_weight(
            shape=(input_dim, 4 * n), initializer=self.kernel_initializer, name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(self.output_units, 4 * n), initializer=self.recurrent_initializer, name="recurrent_kernel")
        bias_initializer = self.bias_initializer
        if self.unit_forget_bias:
            base_initializer = self.bias_initializer

            def bias_initializer(shape, dtype=None):
                return ops.concatenate([
                    base_initializer((n,), dtype=dtype),
                    keras.initializers.get("ones")((n,), dtype=dtype),
                    base_initializer((2 * n,), dtype=dtype),
                ])
        self.bias = self.add_weight(shape=(4 * n,), initializer=bias_initializer, name="bias")
        self.peephole_kernel = (
            self.add_weight(shape=(3, n), initializer=self.peephole_initializer, name="peephole_kernel")
            if self.use_peepholes else None)
        self.projection_kernel = (
            self.add_weight(shape=(n, self.projection_units), initializer=self.projection_initializer,
                            name="projection_kernel")
            if self.projection_units else None)

    def store_matrices(self, storage, matmul_dtype=None):
        """Makes inference read the matrix weights (`MATRIX_WEIGHTS`) from `StoredMatrix` copies in `storage`.

        For exported graphs: products then run in the stored dtype while the state and gate arithmetic stay in the
        layer's compute dtype (see `crnn_tf.layers.stored_matrix`). The Keras variables are left as they are;
        calling the layer with `training=True` afterwards is an error.

        Args:
          storage: "float32", "bfloat16" or "int8".
          matmul_dtype: see `StoredMatrix`. Default None (its default for the storage).

        Returns:
          list of the `StoredMatrix` objects (what an export must track and save instead of those variables).
        """
        if not self.built:
            raise ValueError(f"{self.name}: build the layer before storing its matrices")
        self._stored_matrices = {
            name: StoredMatrix(getattr(self, name).numpy(), storage, matmul_dtype, name=f"{self.name}_{name}")
            for name in MATRIX_WEIGHTS if getattr(self, name) is not None}
        return list(self._stored_matrices.values())

    def _options(self, num_frames):
        unroll = bool(self.unroll) and num_frames is not None
        return lstmp_recurrence.RecurrenceOptions(
            use_peepholes=self.use_peepholes, cell_clip=self.cell_clip,
            projection_clip=self.projection_clip, unroll=unroll)

    def call(self, inputs, mask=None, initial_state=None, training=None):
        dtype = self.compute_dtype
        inputs = tf.cast(inputs, dtype)
        batch = tf.shape(inputs)[0]
        num_frames = inputs.shape[1]
        if training and self._stored_matrices:
            raise ValueError(f"{self.name}: its matrices are stored for inference (store_matrices); it cannot train")

        def weight(w):
            return None if w is None else tf.cast(tf.convert_to_tensor(w), dtype)

        def matrix(name):
            stored = self._stored_matrices.get(name)
            # A stored matrix keeps its own (narrower) dtype: the products cast the activations instead.
            return weight(getattr(self, name)) if stored is None else stored.value()

        # Time-major before the input transform: transposing (T, B, D) is cheaper than (T, B, 4N).
        x = tf.transpose(inputs, [1, 0, 2])
        time_mask = None
        if mask is not None:
            time_mask = tf.cast(tf.transpose(mask), dtype)[:, :, None]
        if initial_state is None:
            c0 = tf.zeros([batch, self.units], dtype)
            r0 = tf.zeros([batch, self.output_units], dtype)
        else:
            if len(initial_state) != 2:
                raise ValueError(f"{self.name}: initial_state must be [c, r], got {len(initial_state)} tensors")
            c0, r0 = (tf.cast(s, dtype) for s in initial_state)
        recurrence = (matrix("recurrent_kernel"), weight(self.peephole_kernel), matrix("projection_kernel"),
                      self._options(num_frames))
        if self.feature_major_inference and not training:
            ys, c_T, r_T = lstmp_recurrence.forward_feature_major(
                x, matrix("kernel"), weight(self.bias), time_mask, c0, r0, *recurrence)
        else:
            xw = mixed_matmul(tf.reshape(x, [-1, tf.shape(x)[-1]]), matrix("kernel")) + weight(self.bias)
            xw = tf.reshape(xw, [tf.shape(x)[0], batch, 4 * self.units])
            if num_frames is not None:
                xw = tf.ensure_shape(xw, [num_frames, None, 4 * self.units])
            run = lstmp_recurrence.forward_with_gradient if training else lstmp_recurrence.forward
            ys, c_T, r_T = run(xw, time_mask, c0, r0, *recurrence)
        if self.return_sequences:
            output = tf.transpose(ys, [1, 0, 2])
        else:
            output = r_T  # the carried r is the last valid frame's output
        if self.return_state:
            return [output, c_T, r_T]
        return output

    def compute_mask(self, inputs, mask=None):
        if not self.return_sequences:
            return [None, None, None] if self.return_state else None
        return [mask, None, None] if self.return_state else mask

    def compute_output_shape(self, input_shape):
        batch, frames = input_shape[0], input_shape[1]
        out = (batch, frames, self.output_units) if self.return_sequences else (batch, self.output_units)
        if self.return_state:
            return [out, (batch, self.units), (batch, self.output_units)]
        return out

    def get_config(self):
        base_config = super().get_config()
        config = {
            "units": self.units,
            "projection_units": self.projection_units,
            "use_peepholes": self.use_peepholes,
            "cell_clip": self.cell_clip,
            "projection_clip": self.projection_clip,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "unit_forget_bias": self.unit_forget_bias,
            "unroll": self.unroll,
            "feature_major_inference": self.feature_major_inference,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "peephole_initializer": keras.initializers.serialize(self.peephole_initializer),
            "projection_initializer": keras.initializers.serialize(self.projection_initializer),
        }
        return {**base_config, **config}
