"""CLSTM: one weight-shared peephole LSTM(P) along time on every frequency patch, then max-pooling."""
import keras
import tensorflow as tf

from crnn_tf.layers.peephole_lstmp import PeepholeLSTMP


@keras.saving.register_keras_serializable(package="crnn_tf")
class CLSTM(keras.layers.Layer):
    """LSTM-based convolution along frequency (Li & Wu 2015).

    Each frame is cut into overlapping patches of `patch_size` bands x all streams; ONE PeepholeLSTMP, shared
    by all patches, runs along time on every patch (no recurrence across frequency: each patch keeps its own
    state); then non-overlapping max-pooling over `pool_size` neighbouring patches. The patches are folded into
    the batch, so the whole layer is a single recurrence over (batch x patches) sequences.

    Frame layout. With `streams_first=True` the input frame is Kaldi `add-deltas` order `[static | Δ | ΔΔ]`:
    feature index = stream * num_bands + band. With `streams_first=False` it is band-major, index =
    band * num_streams + channel — the layout this layer (and FrequencyConvPool) outputs, so a second CLSTM
    stacks on the pooled patch axis with `num_bands=<patches after pooling>`, `num_streams=<out units>`.
    Within a patch the LSTM input is band-major (band, stream).

    Args:
      units: int, N, memory cells of the shared LSTM.
      projection_units: int or None, P, its projection width. Default None.
      patch_size: int, bands per patch. Default 8.
      patch_stride: int, bands between patch starts. Default 1.
      pool_size: int, patches max-pooled together (non-overlapping; trailing patches that do not fill a pool
        are dropped); 1 disables pooling. Default 3.
      num_bands: int or None, bands per stream; None infers input_dim / num_streams. Default None.
      num_streams: int, streams (static, Δ, ΔΔ) or channels per band. Default 3.
      streams_first: bool, input layout as above. Default True.
      return_state: bool, also return the shared LSTM's final state per patch. Default False.
      **lstm_kwargs: passed to the shared `PeepholeLSTMP` (use_peepholes, cell_clip, projection_clip, unroll,
        initializers, ...). `feature_major_inference` defaults to True here: the patches are a wide batch of
        narrow sequences.

    Call arguments:
      inputs: (batch, time, num_streams * num_bands).
      mask: optional boolean (batch, time).
      initial_state: optional [c (batch, num_patches, N), r (batch, num_patches, P or N)].
      training: bool.

    Input shape: (batch, time, num_streams * num_bands).
    Output shape: (batch, time, pooled_patches * (P or N)), band(patch)-major; with `return_state` a list
      [output, c (batch, num_patches, N), r (batch, num_patches, P or N)].

    Example:

    >>> x = np.random.rand(2, 15, 93).astype("float32")  # 31 bands x (static, Δ, ΔΔ)
    >>> clstm = CLSTM(64, projection_units=32, patch_size=8, pool_size=3, num_bands=31)
    >>> clstm(x).shape  # 24 patches -> 8 after pooling, 32 each
    TensorShape([2, 15, 256])
    """

    def __init__(
        self,
        units,
        projection_units=None,
        patch_size=8,
        patch_stride=1,
        pool_size=3,
        num_bands=None,
        num_streams=3,
        streams_first=True,
        return_state=False,
        **lstm_kwargs,
    ):
        layer_kwargs = {k: lstm_kwargs.pop(k) for k in ("name", "dtype", "trainable") if k in lstm_kwargs}
        super().__init__(**layer_kwargs)
        for arg_name, value in (("patch_size", patch_size), ("patch_stride", patch_stride),
                                ("pool_size", pool_size), ("num_streams", num_streams)):
            if int(value) < 1:
                raise ValueError(f"{arg_name} must be >= 1, got {value}")
        self.units = int(units)
        self.projection_units = None if projection_units is None else int(projection_units)
        self.patch_size = int(patch_size)
        self.patch_stride = int(patch_stride)
        self.pool_size = int(pool_size)
        self.num_bands = None if num_bands is None else int(num_bands)
        self.num_streams = int(num_streams)
        self.streams_first = bool(streams_first)
        self.return_state = return_state
        self.lstm_kwargs = dict(lstm_kwargs)
        self.patch_lstm = PeepholeLSTMP(
            units, projection_units=projection_units, return_sequences=True, return_state=return_state,
            name="patch_lstm", dtype=self.dtype_policy,
            **{"feature_major_inference": True, **lstm_kwargs})  # many narrow sequences: see PeepholeLSTMP
        self.supports_masking = True
        self.input_spec = keras.layers.InputSpec(ndim=3)
        if self.num_bands is not None:
            self._check_geometry(self.num_bands)

    def store_matrices(self, storage, matmul_dtype=None):
        """`PeepholeLSTMP.store_matrices` of the shared patch LSTM (inference only); returns its `StoredMatrix` list."""
        return self.patch_lstm.store_matrices(storage, matmul_dtype)

    def _check_geometry(self, num_bands):
        if num_bands < self.patch_size:
            raise ValueError(f"{self.name}: patch_size {self.patch_size} is wider than the {num_bands} bands")
        if self._num_patches(num_bands) < self.pool_size:
            raise ValueError(f"{self.name}: {self._num_patches(num_bands)} patches cannot fill a pool of "
                             f"{self.pool_size}")

    def _num_patches(self, num_bands):
        return (num_bands - self.patch_size) // self.patch_stride + 1

    @property
    def num_patches(self):
        """Patches per frame before pooling."""
        return self._num_patches(self.num_bands)

    @property
    def num_pooled_patches(self):
        """Patches per frame after pooling."""
        return self.num_patches // self.pool_size

    @property
    def output_units(self):
        """Width of each patch's output (P or N)."""
        return self.patch_lstm.output_units

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(f"{self.name}: the last input dimension must be known, got {input_shape}")
        if self.num_bands is None:
            if input_dim % self.num_streams:
                raise ValueError(f"{self.name}: input dim {input_dim} is not a multiple of num_streams "
                                 f"{self.num_streams}")
            self.num_bands = input_dim // self.num_streams
            self._check_geometry(self.num_bands)
        elif input_dim != self.num_bands * self.num_streams:
            raise ValueError(f"{self.name}: expected {self.num_bands} bands x {self.num_streams} streams = "
                             f"{self.num_bands * self.num_streams} features per frame, got {input_dim}")
        self.patch_lstm.build((None, None, self.patch_size * self.num_streams))
        # Patch p covers bands p*stride .. p*stride + patch_size - 1.
        self._band_index = [p * self.patch_stride + k
                            for p in range(self.num_patches) for k in range(self.patch_size)]

    def call(self, inputs, mask=None, initial_state=None, training=None):
        batch, frames = tf.shape(inputs)[0], tf.shape(inputs)[1]
        num_patches, patch_dim = self.num_patches, self.patch_size * self.num_streams
        if self.streams_first:
            bands = tf.reshape(inputs, [batch, frames, self.num_streams, self.num_bands])
            bands = tf.transpose(bands, [0, 2, 1, 3])  # (B, S, T, bands)
            patches = tf.gather(bands, self._band_index, axis=3)  # (B, S, T, NP*K)
            patches = tf.reshape(patches, [batch, self.num_streams, frames, num_patches, self.patch_size])
            patches = tf.transpose(patches, [0, 3, 2, 4, 1])  # (B, NP, T, K, S)
        else:
            bands = tf.reshape(inputs, [batch, frames, self.num_bands, self.num_streams])
            patches = tf.gather(bands, self._band_index, axis=2)  # (B, T, NP*K, S)
            patches = tf.reshape(patches, [batch, frames, num_patches, self.patch_size, self.num_streams])
            patches = tf.transpose(patches, [0, 2, 1, 3, 4])  # (B, NP, T, K, S)
        patches = tf.reshape(patches, [batch * num_patches, frames, patch_dim])
        if inputs.shape[1] is not None:
            patches = tf.ensure_shape(patches, [None, inputs.shape[1], patch_dim])
        patch_mask = None if mask is None else tf.repeat(mask, num_patches, axis=0)
        patch_state = None
        if initial_state is not None:
            patch_state = [tf.reshape(s, [batch * num_patches, s.shape[-1]]) for s in initial_state]
        result = self.patch_lstm(patches, mask=patch_mask, initial_state=patch_state, training=training)
        outputs = result[0] if self.return_state else result
        units = self.output_units
        outputs = tf.reshape(outputs, [batch, num_patches, frames, units])
        outputs = tf.transpose(outputs, [0, 2, 1, 3])  # (B, T, NP, U)
        if self.pool_size > 1:
            pooled = self.num_pooled_patches
            outputs = tf.reshape(outputs[:, :, :pooled * self.pool_size],
                                 [batch, frames, pooled, self.pool_size, units])
            outputs = tf.reduce_max(outputs, axis=3)
        outputs = tf.reshape(outputs, [batch, frames, self.num_pooled_patches * units])
        if not self.return_state:
            return outputs
        c, r = result[1], result[2]
        return [outputs, tf.reshape(c, [batch, num_patches, self.units]),
                tf.reshape(r, [batch, num_patches, units])]

    def compute_mask(self, inputs, mask=None):
        return [mask, None, None] if self.return_state else mask

    def compute_output_shape(self, input_shape):
        num_bands = self.num_bands or input_shape[-1] // self.num_streams
        num_patches = self._num_patches(num_bands)
        units = self.projection_units or self.units
        out = (input_shape[0], input_shape[1], (num_patches // self.pool_size) * units)
        if self.return_state:
            return [out, (input_shape[0], num_patches, self.units), (input_shape[0], num_patches, units)]
        return out

    def get_config(self):
        base_config = super().get_config()
        config = {
            "units": self.units,
            "projection_units": self.projection_units,
            "patch_size": self.patch_size,
            "patch_stride": self.patch_stride,
            "pool_size": self.pool_size,
            "num_bands": self.num_bands,
            "num_streams": self.num_streams,
            "streams_first": self.streams_first,
            "return_state": self.return_state,
            **self.lstm_kwargs,
        }
        return {**base_config, **config}
