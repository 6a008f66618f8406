"""Frame splicing (±k context frames) inside the model, as a Keras layer."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="crnn_tf")
class Splice(keras.layers.Layer):
    """Appends the `context` frames on either side of every frame (Kaldi's `splice-feats`).

    Feed-forward acoustic models see a window of 2k+1 frames; splicing inside the model lets every model,
    feed-forward or recurrent, take the same per-frame features. Frames beyond the edges of the utterance
    are the edge frames repeated, as in Kaldi. The output of frame t is frame-major:
    `[x_{t-k} | ... | x_t | ... | x_{t+k}]`, each block `features` wide, so for Kaldi `add-deltas` input the
    index of (offset j, stream s, band b) is `j * (streams * bands) + s * bands + b` — a channel-major layout
    with `(2k+1) * streams` channels, which is what `FrequencyConvPool(streams_first=True)` expects.

    With a mask, padded frames count as beyond the end: every frame at or after the sequence's length
    (the number of valid frames) reads the last valid frame, so valid outputs are the same as for the
    unpadded sequence. Masks must be right-padded (valid frames first, then padding), the Keras convention
    for recurrent layers; the mask is passed on unchanged. A sequence with no valid frame reads its first
    frame.

    Args:
      context: int >= 0, k, the number of frames added on each side. Default 5 (11-frame windows).
        0 makes the layer the identity.
      **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
      inputs: (batch, time, features).
      mask: optional boolean (batch, time), right-padded.

    Input shape: (batch, time, features).
    Output shape: (batch, time, (2 * context + 1) * features).

    Example:

    >>> x = np.arange(6, dtype="float32").reshape(1, 3, 2)
    >>> np.asarray(Splice(context=1)(x))[0, 0]  # [x_0 (edge repeat) | x_0 | x_1]
    array([0., 1., 0., 1., 2., 3.], dtype=float32)
    """

    def __init__(self, context=5, **kwargs):
        super().__init__(**kwargs)
        if int(context) != context or context < 0:
            raise ValueError(f"context must be a non-negative integer, got {context!r}")
        self.context = int(context)
        self.supports_masking = True
        self.input_spec = keras.layers.InputSpec(ndim=3)

    @property
    def window(self):
        """2k+1, the number of frames in each output frame."""
        return 2 * self.context + 1

    def call(self, inputs, mask=None):
        if self.context == 0:
            return inputs
        if mask is not None:
            inputs = self._repeat_last_valid_frame(inputs, mask)
        k = self.context
        num_frames = ops.shape(inputs)[1]
        padded = ops.concatenate(
            [ops.repeat(inputs[:, :1], k, axis=1), inputs, ops.repeat(inputs[:, -1:], k, axis=1)], axis=1
        )
        shifted = [padded[:, offset : offset + num_frames] for offset in range(self.window)]
        return ops.concatenate(shifted, axis=-1)

    @staticmethod
    def _repeat_last_valid_frame(inputs, mask):
        """Replaces every frame at or after the sequence's length by its last valid frame."""
        lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
        last_valid = ops.maximum(lengths - 1, 0)
        last_frame = ops.take_along_axis(inputs, ops.reshape(last_valid, (-1, 1, 1)), axis=1)
        return ops.where(ops.expand_dims(mask, -1), inputs, last_frame)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        features = input_shape[-1]
        return (*input_shape[:-1], None if features is None else features * self.window)

    def get_config(self):
        base_config = super().get_config()
        config = {"context": self.context}
        return {**base_config, **config}
