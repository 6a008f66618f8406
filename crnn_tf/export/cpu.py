"""What this CPU can do for narrow weights, and what an export of each `--compute_dtype` stores and multiplies in.

bf16 products are fast only where the CPU has AVX512_BF16 or AMX-BF16 (oneDNN otherwise emulates them, slower than
float32); int8 weights are expanded to the product dtype in the graph (see `crnn_tf.layers.stored_matrix`: TF 2.17
has no int8 product fast enough to use), so int8 needs no VNNI but runs its products in bf16 only where bf16 is fast. Tests monkeypatch `cpu_flags` to take either
path on any machine.
"""
import dataclasses
import logging

log = logging.getLogger(__name__)

COMPUTE_DTYPES = ("float32", "bfloat16", "int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags():
    """The CPU feature flags of this machine (from /proc/cpuinfo; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_fast_bfloat16():
    """True when the CPU multiplies bf16 natively (AVX512_BF16 or AMX-BF16)."""
    return bool(cpu_flags() & set(BF16_FLAGS))


@dataclasses.dataclass(frozen=True)
class WeightPlan:
    """How an export stores its large matrices and in which dtype it multiplies them.

    Attributes:
      requested: the `--compute_dtype` asked for.
      storage: "float32", "bfloat16" or "int8".
      matmul_dtype: "float32" or "bfloat16".
      note: why the plan differs from the request (empty when it does not).
    """

    requested: str
    storage: str
    matmul_dtype: str
    note: str = ""


def plan_weights(compute_dtype):
    """The `WeightPlan` for `compute_dtype` on this CPU; logs a warning when the CPU forces a fallback.

    Args:
      compute_dtype: None or "float32" (default float32), "bfloat16" or "int8".

    Raises:
      ValueError: an unknown compute dtype.
    """
    requested = compute_dtype or "float32"
    if requested not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}")
    fast_bf16 = has_fast_bfloat16()
    if requested == "float32":
        return WeightPlan(requested, "float32", "float32")
    missing = f"this CPU has none of {', '.join(f.upper() for f in BF16_FLAGS)}, so bf16 products would be emulated " \
              "(slower than float32)"
    if requested == "bfloat16":
        if fast_bf16:
            return WeightPlan(requested, "bfloat16", "bfloat16")
        note = f"{missing}: exporting float32 weights instead of bfloat16"
        log.warning(note)
        return WeightPlan(requested, "float32", "float32", note)
    if fast_bf16:
        return WeightPlan(requested, "int8", "bfloat16")
    note = f"{missing}: the int8 weights are expanded to float32 for the products"
    log.warning(note)
    return WeightPlan(requested, "int8", "float32", note)
