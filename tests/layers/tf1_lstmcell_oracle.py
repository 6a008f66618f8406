"""Runs TF1's tf.compat.v1.nn.rnn_cell.LSTMCell on weights given in PeepholeLSTMP's layout.

Run as a script in a subprocess with TF_USE_LEGACY_KERAS=1 (the v1 cell needs tf-keras; Keras 3 refuses it):
    python tf1_lstmcell_oracle.py case1.npz result1.npz [case2.npz result2.npz ...]
Each case.npz holds x (B, T, D), lengths (B,), the PeepholeLSTMP weights (kernel, recurrent_kernel, bias,
optional peephole_kernel (3, N) rows i, f, o, optional projection_kernel), loss weights w_y, w_c, w_r, and
cell_clip / proj_clip (NaN = none). result.npz gets outputs, c, r and the gradients of
sum(y*w_y) + sum(c*w_c) + sum(r*w_r) mapped back to PeepholeLSTMP's layout.
"""
import sys

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1


def _to_tf1_gate_order(w):
    # PeepholeLSTMP / keras: i, f, c, o.  TF1 LSTMCell: i, j(=c), f, o.
    i, f, c, o = np.split(w, 4, axis=-1)
    return np.concatenate([i, c, f, o], axis=-1)


def _from_tf1_gate_order(w):
    i, c, f, o = np.split(w, 4, axis=-1)
    return np.concatenate([i, f, c, o], axis=-1)


def main(case_path, result_path):
    case = dict(np.load(case_path))
    x, lengths = case["x"], case["lengths"]
    units = case["kernel"].shape[1] // 4
    has_peep = "peephole_kernel" in case
    has_proj = "projection_kernel" in case
    cell_clip = None if np.isnan(case["cell_clip"]) else float(case["cell_clip"])
    proj_clip = None if np.isnan(case["proj_clip"]) else float(case["proj_clip"])
    graph = tf.Graph()
    with graph.as_default():
        x_t = tf.constant(x)
        cell = tf1.nn.rnn_cell.LSTMCell(
            units, use_peepholes=has_peep, num_proj=case["projection_kernel"].shape[1] if has_proj else None,
            forget_bias=0.0, cell_clip=cell_clip, proj_clip=proj_clip, state_is_tuple=True)
        outputs, state = tf1.nn.dynamic_rnn(cell, x_t, sequence_length=lengths, dtype=tf.float32)
        loss = (tf.reduce_sum(outputs * case["w_y"]) + tf.reduce_sum(state.c * case["w_c"])
                + tf.reduce_sum(state.h * case["w_r"]))
        by_name = {v.name.split("/")[-1].split(":")[0] if "projection" not in v.name else "projection": v
                   for v in cell.variables}
        assigns = [
            by_name["kernel"].assign(np.concatenate(
                [_to_tf1_gate_order(case["kernel"]), _to_tf1_gate_order(case["recurrent_kernel"])], 0)),
            by_name["bias"].assign(_to_tf1_gate_order(case["bias"])),
        ]
        if has_peep:
            assigns += [by_name["w_i_diag"].assign(case["peephole_kernel"][0]),
                        by_name["w_f_diag"].assign(case["peephole_kernel"][1]),
                        by_name["w_o_diag"].assign(case["peephole_kernel"][2])]
        if has_proj:
            assigns.append(by_name["projection"].assign(case["projection_kernel"]))
        watched = [x_t] + [by_name[k] for k in ("kernel", "bias")]
        if has_peep:
            watched += [by_name["w_i_diag"], by_name["w_f_diag"], by_name["w_o_diag"]]
        if has_proj:
            watched.append(by_name["projection"])
        grads = tf.gradients(loss, watched)
        with tf1.Session(graph=graph) as session:
            session.run(assigns)
            out = session.run({"y": outputs, "c": state.c, "r": state.h, "grads": grads})
    d = case["kernel"].shape[0]
    result = {"y": out["y"], "c": out["c"], "r": out["r"], "d_x": out["grads"][0]}
    d_kernel_all = _from_tf1_gate_order(out["grads"][1])
    result["d_kernel"], result["d_recurrent_kernel"] = d_kernel_all[:d], d_kernel_all[d:]
    result["d_bias"] = _from_tf1_gate_order(out["grads"][2])
    rest = out["grads"][3:]
    if has_peep:
        result["d_peephole_kernel"] = np.stack(rest[:3])
        rest = rest[3:]
    if has_proj:
        result["d_projection_kernel"] = rest[0]
    np.savez(result_path, **result)


if __name__ == "__main__":
    paths = sys.argv[1:]
    for case_file, result_file in zip(paths[::2], paths[1::2]):
        main(case_file, result_file)
