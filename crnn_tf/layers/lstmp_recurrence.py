"""The peephole LSTMP time loop, with a hand-written backward pass.

Why a hand-written gradient: TensorFlow's automatic gradient of a `tf.while_loop` pushes every intermediate of
every step onto stacks and differentiates one small op at a time, so on CPU the per-step overhead dominates
the arithmetic at speech batch sizes. Here the forward loop stores only the gate activations, cells and
projection inputs; the backward loop does two matrix products per step (through the projection and the
recurrent kernel) plus elementwise work; and every weight gradient is ONE large matrix product over all
frames after the loop, as cuDNN does.

Everything is time-major inside: `xw` is (T, B, 4N) = the input transform for all frames (x @ kernel + bias),
computed by the caller in one matrix product. Gate order is i, f, c (candidate), o as in keras.layers.LSTM.

Equations (Li & Wu 2015, eqs. 3-8; Sak et al. 2014), for step t with mask mu_t in {0, 1}:
    z   = xw_t + r_{t-1} @ U
    i   = sigmoid(z_i + p_i * c_{t-1})        f = sigmoid(z_f + p_f * c_{t-1})
    g   = tanh(z_c)                           c^ = f * c_{t-1} + i * g,   c~ = clip(c^, cell_clip)
    o   = sigmoid(z_o + p_o * c~)             m  = o * tanh(c~)
    r^  = m @ V (projection, no bias) or m    r~ = clip(r^, projection_clip)
    c_t = mu c~ + (1 - mu) c_{t-1}            r_t = mu r~ + (1 - mu) r_{t-1}      y_t = mu r~
Padded frames (mu = 0) output zeros and carry the state through unchanged.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from crnn_tf.layers.stored_matrix import matmul as mixed_matmul


@dataclasses.dataclass(frozen=True)
class RecurrenceOptions:
    """Static (graph-construction-time) options of the recurrence.

    Args:
      use_peepholes: whether `peepholes` (3, N) is applied. Default True.
      cell_clip: clip c_t to [-cell_clip, cell_clip]; None disables. Default None.
      projection_clip: clip r_t to [-projection_clip, projection_clip]; None disables. Default None.
      unroll: unroll the time loop in the graph instead of a tf.while_loop (needs a static number of frames;
        fastest for short truncated-BPTT chunks). Default False.
    """

    use_peepholes: bool = True
    cell_clip: float | None = None
    projection_clip: float | None = None
    unroll: bool = False


def _clip(x, limit):
    return x if limit is None else tf.clip_by_value(x, -limit, limit)


def _inside(x, limit):
    """Where clip(x, limit) passes gradient (tf.clip_by_value's rule: min <= x <= max)."""
    return tf.cast(tf.abs(x) <= limit, x.dtype)


def _loop(num_steps, body, carry, unroll, reverse=False):
    """Runs `body(t, carry) -> carry` for t in range(num_steps) (reversed if asked), in-graph.

    With `unroll`, a Python loop builds the steps into the graph (no loop overhead at run time); otherwise a
    tf.while_loop with no Python per step.
    """
    if unroll:
        steps = range(num_steps - 1, -1, -1) if reverse else range(num_steps)
        for t in steps:
            carry = body(t, carry)
        return carry
    if reverse:
        def cond(t, *_):
            return t >= 0
        start = num_steps - 1
        step = -1
    else:
        def cond(t, *_):
            return t < num_steps
        start = 0
        step = 1
    out = tf.while_loop(
        cond, lambda t, *c: (t + step, *body(t, tuple(c))), (tf.convert_to_tensor(start), *carry),
        parallel_iterations=1)
    return tuple(out[1:])


class _Buffer:
    """Per-step storage: a Python list when unrolled, else a TensorArray (both time-major)."""

    def __init__(self, num_steps, dtype, unroll):
        self.items = [None] * num_steps if unroll else tf.TensorArray(dtype, size=num_steps)

    @staticmethod
    def write(store, t, value, unroll):
        if unroll:
            store = list(store)
            store[t] = value
            return tuple(store)
        return store.write(t, value)

    @staticmethod
    def stack(store, unroll):
        return tf.stack(list(store)) if unroll else store.stack()


def _read(seq, t, unroll):
    return seq[t] if unroll else tf.gather(seq, t)


def _step(z, mask_t, c_prev, r_prev, peepholes, project, opts, axis=-1):
    """One forward step from the gate pre-activations z = xw_t + r_{t-1} @ U; returns the new carry and what the
    backward pass needs.

    `axis` is the feature axis: -1 for batch-major state (B, N), 0 for feature-major (N, B); `peepholes[k]` and
    `mask_t` must broadcast against the state. `project(m)` applies the projection kernel (None: no projection).
    """
    z_i, z_f, z_c, z_o = tf.split(z, 4, axis=axis)
    if opts.use_peepholes:
        z_i += peepholes[0] * c_prev
        z_f += peepholes[1] * c_prev
    i = tf.sigmoid(z_i)
    f = tf.sigmoid(z_f)
    g = tf.tanh(z_c)
    c_raw = f * c_prev + i * g
    c_new = _clip(c_raw, opts.cell_clip)
    if opts.use_peepholes:
        z_o += peepholes[2] * c_new
    o = tf.sigmoid(z_o)
    h = tf.tanh(c_new)
    m = o * h
    r_raw = m if project is None else project(m)
    r_new = _clip(r_raw, opts.projection_clip)
    if mask_t is None:
        return c_new, r_new, r_new, (i, f, g, o, c_raw, m, r_raw)
    c_t = c_prev + mask_t * (c_new - c_prev)
    r_t = r_prev + mask_t * (r_new - r_prev)
    return c_t, r_t, mask_t * r_new, (i, f, g, o, c_raw, m, r_raw)


def _projector(projection_kernel):
    return None if projection_kernel is None else (lambda m: mixed_matmul(m, projection_kernel))


def forward(xw, mask, c0, r0, recurrent_kernel, peepholes, projection_kernel, opts: RecurrenceOptions):
    """Inference-only forward pass (stores nothing for a backward pass).

    Args:
      xw: (T, B, 4N) input transform. mask: (T, B, 1) float 0/1 or None. c0: (B, N). r0: (B, P).
      recurrent_kernel: (P, 4N). peepholes: (3, N) or None. projection_kernel: (N, P) or None. The kernels may be
        narrower than the state (bf16 weights, float32 state: `stored_matrix.matmul`).

    Returns:
      (outputs (T, B, P), c_T, r_T).
    """
    num_steps = xw.shape[0] if opts.unroll else tf.shape(xw)[0]
    project = _projector(projection_kernel)

    def body(t, carry):
        c, r, ys = carry
        mask_t = None if mask is None else _read(mask, t, opts.unroll)
        z = _read(xw, t, opts.unroll) + mixed_matmul(r, recurrent_kernel)
        c, r, y, _ = _step(z, mask_t, c, r, peepholes, project, opts)
        return c, r, _Buffer.write(ys, t, y, opts.unroll)

    ys = _Buffer(num_steps, xw.dtype, opts.unroll).items
    c, r, ys = _loop(num_steps, body, (c0, r0, ys), opts.unroll)
    return _Buffer.stack(ys, opts.unroll), c, r


def forward_feature_major(x, kernel, bias, mask, c0, r0, recurrent_kernel, peepholes, projection_kernel,
                          opts: RecurrenceOptions):
    """Inference-only forward pass laid out for many narrow sequences at once (the CLSTM's patches).

    The same recurrence as `forward`, equal up to float summation order, organised differently:
      - the state is feature-major, (N, B): the four gates are row blocks of one matrix product, so splitting
        them copies nothing (a batch-major split copies the whole (B, 4N) gate matrix every step);
      - the input transform runs inside the loop, fused with the recurrent term as ONE product
        [kernel; recurrent_kernel]^T @ [x_t; r_{t-1}], instead of a (T, B, 4N) tensor that is 4N/D times the size
        of the input (1.2 GB for a 16-utterance batch of the paper's CLSTM).
    On the project's 2-core CPU the paper's CLstm384P256 runs 1.37x faster than with `forward` at 4 utterances x
    200 frames (bench/clstm_speed.py) and 1.12x at 16 x 500. With a wide input or a narrow batch (the transposed
    products lose there), `forward` is the better choice.

    Args:
      x: (T, B, D) time-major inputs. kernel: (D, 4N). bias: (4N,).
      mask, c0, r0, recurrent_kernel, peepholes, projection_kernel, opts: as for `forward`.

    Returns:
      (outputs (T, B, P), c_T (B, N), r_T (B, P)), as `forward`.
    """
    num_steps = x.shape[0] if opts.unroll else tf.shape(x)[0]
    inputs = tf.transpose(x, [0, 2, 1])  # (T, D, B)
    stacked_kernel = tf.transpose(tf.concat([kernel, recurrent_kernel], 0))  # (4N, D + P)
    bias = bias[:, None]
    peepholes = None if peepholes is None else peepholes[:, :, None]
    projection = None if projection_kernel is None else tf.transpose(projection_kernel)
    project = None if projection is None else (lambda m: mixed_matmul(projection, m))
    mask = None if mask is None else tf.transpose(mask, [0, 2, 1])  # (T, 1, B)

    def body(t, carry):
        c, r, ys = carry
        mask_t = None if mask is None else _read(mask, t, opts.unroll)
        z = mixed_matmul(stacked_kernel, tf.concat([_read(inputs, t, opts.unroll), r], 0)) + bias
        c, r, y, _ = _step(z, mask_t, c, r, peepholes, project, opts, axis=0)
        return c, r, _Buffer.write(ys, t, y, opts.unroll)

    ys = _Buffer(num_steps, x.dtype, opts.unroll).items
    c, r, ys = _loop(num_steps, body, (tf.transpose(c0), tf.transpose(r0), ys), opts.unroll)
    return tf.transpose(_Buffer.stack(ys, opts.unroll), [0, 2, 1]), tf.transpose(c), tf.transpose(r)


def forward_with_gradient(xw, mask, c0, r0, recurrent_kernel, peepholes, projection_kernel,
                          opts: RecurrenceOptions):
    """Training forward pass with the hand-written backward pass attached (same args/returns as `forward`).

    `peepholes` and `projection_kernel` may be None (then no gradient is returned for them).
    """
    has_peepholes = peepholes is not None
    has_projection = projection_kernel is not None
    has_mask = mask is not None
    # tf.custom_gradient needs tensors: absent pieces become placeholders we never use or differentiate.
    dummy = tf.zeros((), xw.dtype)

    @tf.custom_gradient
    def run(xw, mask, c0, r0, recurrent_kernel, peepholes, projection_kernel):
        P = peepholes if has_peepholes else None
        V = projection_kernel if has_projection else None
        M = mask if has_mask else None
        unroll = opts.unroll
        num_steps = xw.shape[0] if unroll else tf.shape(xw)[0]
        project = _projector(V)

        def body(t, carry):
            c, r, ys, saved_gates, saved_cells, saved_m, saved_r, saved_c_prev, saved_r_prev = carry
            mask_t = None if M is None else _read(M, t, unroll)
            c_prev, r_prev = c, r
            z = _read(xw, t, unroll) + tf.matmul(r, recurrent_kernel)
            c, r, y, (i, f, g, o, c_raw, m, r_raw) = _step(z, mask_t, c, r, P, project, opts)
            return (c, r,
                    _Buffer.write(ys, t, y, unroll),
                    _Buffer.write(saved_gates, t, tf.concat([i, f, g, o], -1), unroll),
                    _Buffer.write(saved_cells, t, c_raw, unroll),
                    _Buffer.write(saved_m, t, m, unroll),
                    _Buffer.write(saved_r, t, r_raw, unroll),
                    _Buffer.write(saved_c_prev, t, c_prev, unroll),
                    _Buffer.write(saved_r_prev, t, r_prev, unroll))

        stores = tuple(_Buffer(num_steps, xw.dtype, unroll).items for _ in range(7))
        c_T, r_T, *stores = _loop(num_steps, body, (c0, r0, *stores), unroll)
        ys, gates, cells_raw, ms, rs_raw, c_prevs, r_prevs = (_Buffer.stack(s, unroll) for s in stores)

        def grad(dys, dc_T, dr_T):
            dc_T = tf.zeros_like(c0) if dc_T is None else dc_T
            dr_T = tf.zeros_like(r0) if dr_T is None else dr_T
            dys = tf.zeros_like(ys) if dys is None else dys
            U_T = tf.transpose(recurrent_kernel)
            V_T = None if V is None else tf.transpose(V)

            def back(t, carry):
                dc, dr, dzs, drs_raw = carry
                i, f, g, o = tf.split(_read(gates, t, unroll), 4, axis=-1)
                c_raw = _read(cells_raw, t, unroll)
                c_prev = _read(c_prevs, t, unroll)
                c_new = _clip(c_raw, opts.cell_clip)
                dy = _read(dys, t, unroll)
                if M is None:
                    dr_new, dc_new = dr + dy, dc
                    dr_pass = dc_pass = 0.0
                else:
                    mu = _read(M, t, unroll)
                    dr_new, dc_new = mu * (dr + dy), mu * dc
                    dr_pass, dc_pass = (1.0 - mu) * dr, (1.0 - mu) * dc
                if opts.projection_clip is not None:
                    dr_new *= _inside(_read(rs_raw, t, unroll), opts.projection_clip)
                dm = dr_new if V_T is None else tf.matmul(dr_new, V_T)
                h = tf.tanh(c_new)
                dz_o = dm * h * o * (1.0 - o)
                dc_new += dm * o * (1.0 - h * h)
                if P is not None:
                    dc_new += dz_o * P[2]
                if opts.cell_clip is not None:
                    dc_new *= _inside(c_raw, opts.cell_clip)
                dz_i = dc_new * g * i * (1.0 - i)
                dz_f = dc_new * c_prev * f * (1.0 - f)
                dz_c = dc_new * i * (1.0 - g * g)
                dc_prev = dc_new * f + dc_pass
                if P is not None:
                    dc_prev += dz_i * P[0] + dz_f * P[1]
                dz = tf.concat([dz_i, dz_f, dz_c, dz_o], -1)
                dr_prev = tf.matmul(dz, U_T) + dr_pass
                return (dc_prev, dr_prev, _Buffer.write(dzs, t, dz, unroll),
                        _Buffer.write(drs_raw, t, dr_new, unroll))

            dzs = _Buffer(num_steps, xw.dtype, unroll).items
            drs_raw = _Buffer(num_steps, xw.dtype, unroll).items
            dc0, dr0, dzs, drs_raw = _loop(num_steps, back, (dc_T, dr_T, dzs, drs_raw), unroll, reverse=True)
            dz_all = _Buffer.stack(dzs, unroll)  # (T, B, 4N) == d xw
            n4 = tf.shape(dz_all)[-1]
            d_recurrent = tf.matmul(tf.reshape(r_prevs, [-1, tf.shape(r0)[-1]]),
                                    tf.reshape(dz_all, [-1, n4]), transpose_a=True)
            if P is not None:
                dz_i, dz_f, _, dz_o = tf.split(dz_all, 4, axis=-1)
                c_new_all = _clip(cells_raw, opts.cell_clip)
                d_peep = tf.stack([tf.reduce_sum(dz_i * c_prevs, [0, 1]),
                                   tf.reduce_sum(dz_f * c_prevs, [0, 1]),
                                   tf.reduce_sum(dz_o * c_new_all, [0, 1])])
            else:
                d_peep = tf.zeros_like(peepholes)
            if V is not None:
                d_proj = tf.matmul(tf.reshape(ms, [-1, tf.shape(ms)[-1]]),
                                   tf.reshape(_Buffer.stack(drs_raw, unroll), [-1, tf.shape(V)[-1]]),
                                   transpose_a=True)
            else:
                d_proj = tf.zeros_like(projection_kernel)
            d_mask = tf.zeros_like(mask)
            return dz_all, d_mask, dc0, dr0, d_recurrent, d_peep, d_proj

        return (ys, c_T, r_T), grad

    return run(xw, mask if has_mask else dummy, c0, r0, recurrent_kernel,
               peepholes if has_peepholes else dummy, projection_kernel if has_projection else dummy)

