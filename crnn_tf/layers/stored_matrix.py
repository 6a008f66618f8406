"""Weight matrices stored narrower than the arithmetic around them, for exported (inference-only) graphs.

On a CPU with AVX512_BF16 or AMX, oneDNN's bf16 matrix products run about twice as fast as float32 ones, and a
weight stored in bf16 is half the bytes to read. Keras' `mixed_bfloat16` policy gets neither: it keeps float32
variables (cast to bf16 on every call) and runs the elementwise gate arithmetic in bf16, which TensorFlow's CPU
kernels emulate slowly. A `StoredMatrix` holds the matrix itself in its storage dtype; `matmul` casts only the
activations to it, and the product comes back in the activations' dtype (float32), where the recurrent state and
the gate arithmetic stay.

Storages:
  float32   the variable as trained.
  bfloat16  a bf16 variable (round-to-nearest-even of the float32 weights).
  int8      symmetric per-output-channel dynamic-range quantisation: int8 values q and float32 scales s (one per
            column), w ≈ q * s. TensorFlow 2.17's int8 matrix-product kernels (QuantizedMatMul*, UniformQuantized*,
            int8 BatchMatMulV3) are reference or Eigen code, several times slower than its float32 products, and
            the oneDNN one re-packs the weights on every call and cannot run inside a while loop. So the int8
            matrix is expanded to `matmul_dtype` once per call (outside the time loop) and multiplied there: int8
            is a storage format (a quarter of the bytes on disk and in the model's memory), not a faster product.
"""
import numpy as np
import tensorflow as tf

STORAGES = ("float32", "bfloat16", "int8")
INT8_LEVELS = 127  # symmetric range [-127, 127]: -128 unused, so q and -q are both representable


def quantize_per_channel(matrix):
    """Symmetric int8 quantisation with one scale per output channel (column).

    Args:
      matrix: float array [inputs, outputs].

    Returns:
      (int8 values [inputs, outputs], float32 scales [outputs]) with matrix ≈ values * scales; a column of zeros
      gets scale 1 (and zero values).
    """
    matrix = np.asarray(matrix, np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"quantize_per_channel needs a 2-D [inputs, outputs] matrix, got shape {matrix.shape}")
    largest = np.abs(matrix).max(axis=0)
    scales = np.where(largest > 0, largest / INT8_LEVELS, 1.0).astype(np.float32)
    values = np.clip(np.rint(matrix / scales), -INT8_LEVELS, INT8_LEVELS).astype(np.int8)
    return values, scales


class StoredMatrix(tf.Module):
    """A [inputs, outputs] weight matrix in a storage dtype, for inference.

    Args:
      matrix: float array (or variable) [inputs, outputs], the trained weights.
      storage: "float32", "bfloat16" or "int8" (see the module docstring).
      matmul_dtype: dtype the products run in: "bfloat16" or "float32". Default None: "float32" for float32
        storage, "bfloat16" otherwise. (float32 storage with bfloat16 products would cast the weights per call.)
      name: variable name prefix. Default "stored_matrix".
    """

    def __init__(self, matrix, storage, matmul_dtype=None, name="stored_matrix"):
        super().__init__(name=name)
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        matmul_dtype = matmul_dtype or ("float32" if storage == "float32" else "bfloat16")
        if matmul_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"matmul_dtype must be 'float32' or 'bfloat16', got {matmul_dtype!r}")
        if storage == "float32" and matmul_dtype == "bfloat16":
            raise ValueError("float32 storage with bfloat16 products would cast the weights on every call; "
                             "store them in bfloat16 instead")
        matrix = np.asarray(matrix, np.float32)
        self.storage, self.matmul_dtype, self.shape = storage, tf.as_dtype(matmul_dtype), tuple(matrix.shape)
        if storage == "int8":
            values, scales = quantize_per_channel(matrix)
            self.values = tf.Variable(values, trainable=False, name=f"{name}_int8")
            self.scales = tf.Variable(scales, trainable=False, name=f"{name}_scales")
        else:
            self.values = tf.Variable(tf.cast(matrix, storage), trainable=False, name=f"{name}_{storage}")
            self.scales = None

    @property
    def nbytes(self):
        """Bytes the stored matrix occupies (values and scales)."""
        size = int(np.prod(self.shape)) * self.values.dtype.size
        return size + (0 if self.scales is None else self.shape[1] * 4)

    def value(self):
        """The matrix as a tensor of `matmul_dtype`; for int8 storage expanded (a per-call cost: read once per call,
        outside any time loop)."""
        if self.scales is None:
            return tf.convert_to_tensor(self.values)
        return tf.cast(self.values, self.matmul_dtype) * tf.cast(self.scales, self.matmul_dtype)


def matmul(a, b, transpose_a=False, transpose_b=False):
    """a @ b where one operand may be narrower (bf16 weights, float32 activations).

    The wider operand is cast to the narrower dtype for the product (oneDNN accumulates bf16 products in float32)
    and the result is cast back to the wider dtype, so activations and state keep their precision between
    products and no weight is cast per call. Operands of equal dtype are multiplied as they are.
    """
    if a.dtype == b.dtype:
        return tf.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)
    narrow, wide = (a.dtype, b.dtype) if a.dtype.size < b.dtype.size else (b.dtype, a.dtype)
    product = tf.matmul(tf.cast(a, narrow), tf.cast(b, narrow), transpose_a=transpose_a, transpose_b=transpose_b)
    return tf.cast(product, wide)
