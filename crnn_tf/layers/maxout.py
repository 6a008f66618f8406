"""Maxout dense layer (Goodfellow et al. 2013), as a Keras layer."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="crnn_tf")
class Maxout(keras.layers.Layer):
    """Dense maxout: an affine map to `units * group_size` values, then the max over each group.

    Output unit u is `max_j (x @ kernel + bias)[u * group_size + j]`, j = 0 … group_size-1: groups are
    consecutive columns, as in Kaldi's MaxoutComponent. Parameters: `(features + 1) * units * group_size`.

    Args:
      units: int, the number of output units (groups).
      group_size: int >= 1, g, the number of linear pieces per unit. Default 3.
      kernel_initializer: for `kernel` (features, units * g). Default "glorot_uniform".
      bias_initializer: for `bias` (units * g,). Default "zeros".
      kernel_regularizer: for `kernel`. Default None.
      bias_regularizer: for `bias`. Default None.
      **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Input shape: (..., features).
    Output shape: (..., units).

    Example:

    >>> x = np.random.rand(2, 15, 1023).astype("float32")
    >>> Maxout(800, group_size=3)(x).shape
    TensorShape([2, 15, 800])
    """

    def __init__(
        self,
        units,
        group_size=3,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if units <= 0 or group_size <= 0:
            raise ValueError(f"units and group_size must be positive, got {units}, {group_size}")
        self.units = int(units)
        self.group_size = int(group_size)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.supports_masking = True
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"{self.name}: the last input dimension must be known, got shape {input_shape}")
        pieces = self.units * self.group_size
        self.kernel = self.add_weight(
            name="kernel",
            shape=(features, pieces),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = self.add_weight(
            name="bias", shape=(pieces,), initializer=self.bias_initializer, regularizer=self.bias_regularizer
        )
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: features})

    def call(self, inputs):
        pieces = ops.add(ops.matmul(inputs, self.kernel), self.bias)
        grouped = ops.reshape(pieces, (*ops.shape(pieces)[:-1], self.units, self.group_size))
        return ops.max(grouped, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        base_config = super().get_config()
        config = {
            "units": self.units,
            "group_size": self.group_size,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
        }
        return {**base_config, **config}
