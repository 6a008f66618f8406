"""Convolution along frequency with max-pooling over patches (the paper's CNN layer), as a Keras layer."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="crnn_tf")
class FrequencyConvPool(keras.layers.Layer):
    """`filters` maps convolved along frequency, then non-overlapping max-pooling over the patches.

    Each frame is a grid of `num_bands` bands × `num_streams` channels. Patch p covers bands
    `p * patch_stride … p * patch_stride + patch_size - 1` and all channels; every map sees every patch
    with the same weights (a 1-D convolution along frequency, no time extent: time context comes from
    `Splice` in front, whose frames become channels). Then the activation and a max over each group of
    `pool_size` consecutive patches (a trailing incomplete group is dropped).

    Input layouts (index of band b, channel c in the frame vector):
      - `streams_first=True`: channel-major, `c * num_bands + b`. This is Kaldi `add-deltas`
        `[static | Δ | ΔΔ]` (channels = streams), and also what `Splice(k)` makes of it: frame-major blocks of
        `[static | Δ | ΔΔ]`, i.e. channel `c = j * streams + s` for context offset j — so pass
        `num_streams = (2k+1) * streams`.
      - `streams_first=False`: band-major, `b * num_streams + c`, what a previous `FrequencyConvPool` or
        `CLSTM` outputs (bands = its pooled patches, channels = its maps/units).
    Output layout: band(patch)-major, index `p * filters + f` over the pooled patches, like `CLSTM`.

    num_patches = (num_bands - patch_size) // patch_stride + 1; num_pooled_patches = num_patches // pool_size.
    Weights: `kernel` (patch_size, num_streams, filters) as in `keras.layers.Conv1D`, `bias` (filters,).

    Args:
      filters: int, K, the number of feature maps.
      patch_size: int, bands per patch. Default 8.
      patch_stride: int, bands between the starts of neighbouring patches. Default 1.
      pool_size: int, patches per max-pooling group; 1 means no pooling. Default 3.
      num_bands: int, bands in the input frame (required).
      num_streams: int, channels per band (required). Default 3 (static, Δ, ΔΔ).
      streams_first: bool, input layout as above. Default True.
      activation: activation applied before pooling. Default "relu".
      kernel_initializer: for `kernel`. Default "glorot_uniform".
      bias_initializer: for `bias`. Default "zeros".
      **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Input shape: (..., num_bands * num_streams).
    Output shape: (..., num_pooled_patches * filters).

    Example:

    >>> x = np.random.rand(2, 15, 31 * 3 * 11).astype("float32")   # Splice(5) of 31 bands x 3 streams
    >>> layer = FrequencyConvPool(256, num_bands=31, num_streams=33)
    >>> layer(x).shape                                               # (31 - 8 + 1) // 3 = 8 patches
    TensorShape([2, 15, 2048])
    """

    def __init__(
        self,
        filters,
        patch_size=8,
        patch_stride=1,
        pool_size=3,
        num_bands=None,
        num_streams=3,
        streams_first=True,
        activation="relu",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_bands is None:
            raise ValueError("num_bands is required")
        for arg, value in (
            ("filters", filters),
            ("patch_size", patch_size),
            ("patch_stride", patch_stride),
            ("pool_size", pool_size),
            ("num_bands", num_bands),
            ("num_streams", num_streams),
        ):
            if int(value) != value or value <= 0:
                raise ValueError(f"{arg} must be a positive integer, got {value!r}")
        self.filters = int(filters)
        self.patch_size = int(patch_size)
        self.patch_stride = int(patch_stride)
        self.pool_size = int(pool_size)
        self.num_bands = int(num_bands)
        self.num_streams = int(num_streams)
        self.streams_first = bool(streams_first)
        if self.num_pooled_patches < 1:
            raise ValueError(
                f"{self.num_bands} bands give {self.num_patches} patch(es) of {self.patch_size} bands "
                f"(stride {self.patch_stride}), fewer than one pooling group of {self.pool_size}"
            )
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: self.num_bands * self.num_streams})

    @property
    def num_patches(self):
        """Patches before pooling (0 if a patch is wider than the frame)."""
        return max(0, (self.num_bands - self.patch_size) // self.patch_stride + 1)

    @property
    def num_pooled_patches(self):
        """Patches after pooling: the output's number of bands."""
        return self.num_patches // self.pool_size

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.patch_size, self.num_streams, self.filters),
            initializer=self.kernel_initializer,
        )
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)

    def call(self, inputs):
        leading_shape = ops.shape(inputs)[:-1]
        if self.streams_first:
            grid = ops.reshape(inputs, (-1, self.num_streams, self.num_bands))
            grid = ops.transpose(grid, (0, 2, 1))
        else:
            grid = ops.reshape(inputs, (-1, self.num_bands, self.num_streams))
        maps = ops.conv(grid, self.kernel, strides=self.patch_stride, padding="valid")  # (frames, patches, K)
        maps = self.activation(ops.add(maps, self.bias))
        if self.pool_size > 1:
            maps = ops.max_pool(maps, self.pool_size, strides=self.pool_size, padding="valid")
        return ops.reshape(maps, (*leading_shape, self.num_pooled_patches * self.filters))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.num_pooled_patches * self.filters)

    def get_config(self):
        base_config = super().get_config()
        config = {
            "filters": self.filters,
            "patch_size": self.patch_size,
            "patch_stride": self.patch_stride,
            "pool_size": self.pool_size,
            "num_bands": self.num_bands,
            "num_streams": self.num_streams,
            "streams_first": self.streams_first,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
        return {**base_config, **config}
