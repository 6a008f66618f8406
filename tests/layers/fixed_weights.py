"""Deterministic test weights: golden values built on them move only when the layer's arithmetic does, never with
a change of Keras's (or NumPy's) random number generators."""
import keras
import numpy as np


def fixed_array(shape, scale=1.0, phase=0.0) -> np.ndarray:
    """float32 values in [-scale, scale], a sine of the flat index: no two alike, no RNG involved.

    Example:
      >>> w = fixed_array((3, 4), scale=0.5)
      >>> w.shape, w.dtype, bool(abs(w).max() <= 0.5), len(set(w.flat))
      ((3, 4), dtype('float32'), True, 12)
    """
    index = np.arange(int(np.prod(shape)), dtype=np.float64)
    return (scale * np.sin(0.7 * index + phase + 0.3)).reshape(shape).astype(np.float32)


def fixed_initializer(shape, scale=1.0, phase=0.0) -> keras.initializers.Constant:
    """A Keras initialiser that yields `fixed_array(shape, scale, phase)`."""
    return keras.initializers.Constant(fixed_array(shape, scale, phase))
