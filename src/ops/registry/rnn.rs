//! The recurrent cells and whole layers (one and two layers; batch 1 and 3; sequence
//! lengths 1, 2 and 17; one and both directions), and embedding.

use super::*;
use crate::ops::rnn::{gru_cell, lstm_cell, rnn_layer, rnn_layer_reverse, LayerWeights, RnnMode};

/// Outputs flattened and concatenated so one tensor carries every step's output and
/// the final states.
fn flat(ts: &[&Tensor]) -> Result<Tensor> {
    let parts: Vec<Tensor> = ts
        .iter()
        .map(|t| t.reshape(&[t.numel()]))
        .collect::<Result<_>>()?;
    let refs: Vec<&Tensor> = parts.iter().collect();
    Tensor::cat(&refs, 0)
}

/// The LSTM and GRU cells, then the layers.
pub(super) fn entries() -> Vec<OpEntry> {
    let mut ops = Vec::new();
    use Domain::Any;
    ops.push(OpEntry {
        name: "lstm_cell",
        differentiable: true,
        kernels: &["lstm_cell_fwd", "lstm_cell_bwd"],
        cases: [(1usize, 1usize), (3, 5), (2, 65)]
            .iter()
            .map(|&(b, h)| {
                case(
                    format!("batch {b}, hidden {h}"),
                    vec![spec(&[b, 4 * h], Any), spec(&[b, h], Any)],
                    move |x, _| {
                        let (hh, cc) = lstm_cell(&x[0], &x[1])?;
                        flat(&[&hh, &cc])
                    },
                )
            })
            .collect(),
    });
    ops.push(OpEntry {
        name: "gru_cell",
        differentiable: true,
        kernels: &["gru_cell_fwd", "gru_cell_bwd"],
        cases: [(1usize, 1usize), (3, 5), (2, 65)]
            .iter()
            .map(|&(b, h)| {
                case(
                    format!("batch {b}, hidden {h}"),
                    vec![
                        spec(&[b, 3 * h], Any),
                        spec(&[b, 3 * h], Any),
                        spec(&[b, h], Any),
                    ],
                    move |x, _| gru_cell(&x[0], &x[1], &x[2]),
                )
            })
            .collect(),
    });
    ops.extend(layers());
    ops
}

/// Whole recurrent layers of every mode, and embedding.
fn layers() -> Vec<OpEntry> {
    let mut ops = Vec::new();
    use Domain::Any;
    for (name, mode, kernels) in [
        (
            "rnn_tanh",
            RnnMode::Tanh,
            &["matmul_small_fwd", "matmul_block_fwd"][..],
        ),
        (
            "rnn_relu",
            RnnMode::Relu,
            &["matmul_small_fwd", "matmul_block_fwd"][..],
        ),
        (
            "lstm",
            RnnMode::Lstm,
            &["lstm_step_fwd", "lstm_step_bwd", "matmul_small_fwd"][..],
        ),
        (
            "gru",
            RnnMode::Gru,
            &["gru_step_fwd", "gru_step_bwd", "matmul_small_fwd"][..],
        ),
    ] {
        let g = mode.gates();
        let lstm = mode == RnnMode::Lstm;
        let mut cases = Vec::new();
        // (steps, batch, input, hidden, layers, directions)
        for &(t, b, i, h, layers, dirs) in &[
            (1usize, 1usize, 3usize, 4usize, 1usize, 1usize),
            (2, 3, 2, 3, 1, 1),
            (17, 2, 3, 4, 1, 1),
            (5, 3, 2, 3, 2, 1),
            (1, 2, 3, 2, 1, 2),
            (3, 2, 2, 3, 1, 2),
            (4, 2, 2, 3, 2, 2),
        ] {
            let mut inputs = vec![spec(&[t, b, i], Any)];
            for l in 0..layers {
                let inp = if l == 0 { i } else { dirs * h };
                for _ in 0..dirs {
                    inputs.extend([
                        spec(&[g * h, inp], Any),
                        spec(&[g * h, h], Any),
                        spec(&[g * h], Any),
                        spec(&[g * h], Any),
                        spec(&[b, h], Any),
                    ]);
                    if lstm {
                        inputs.push(spec(&[b, h], Any));
                    }
                }
            }
            let way = if dirs == 2 { "bidirectional " } else { "" };
            cases.push(case(
                format!("{way}{layers} layer(s), {t} steps, batch {b}, input {i}, hidden {h}"),
                inputs,
                move |x, _| {
                    let per = if lstm { 6 } else { 5 };
                    let mut input = x[0].clone();
                    let mut outs = Vec::new();
                    for l in 0..layers {
                        let mut dir_outs = Vec::new();
                        for d in 0..dirs {
                            let at = 1 + (l * dirs + d) * per;
                            let p = &x[at..at + per];
                            let run = if d == 0 { rnn_layer } else { rnn_layer_reverse };
                            let (out, h_n, c_n) = run(
                                mode,
                                &input,
                                LayerWeights {
                                    w_ih: &p[0],
                                    w_hh: &p[1],
                                    b_ih: Some(&p[2]),
                                    b_hh: Some(&p[3]),
                                },
                                &p[4],
                                if lstm { Some(&p[5]) } else { None },
                            )?;
                            outs.push(h_n);
                            outs.extend(c_n);
                            dir_outs.push(out);
                        }
                        let refs: Vec<&Tensor> = dir_outs.iter().collect();
                        input = Tensor::cat(&refs, 2)?;
                    }
                    outs.push(input);
                    let refs: Vec<&Tensor> = outs.iter().collect();
                    flat(&refs)
                },
            ));
        }
        ops.push(OpEntry {
            name,
            differentiable: true,
            kernels,
            cases,
        });
    }
    ops.push(OpEntry {
        name: "embedding",
        differentiable: true,
        kernels: &["index_select_fwd", "index_select_bwd"],
        cases: vec![case(
            "[6, 4] table by [3, 5] indices (repeats)",
            vec![spec(&[6, 4], Any), spec(&[3, 5], Domain::Index(6))],
            |x, _| crate::ops::embedding::embedding(&x[1], &x[0]),
        )],
    });
    ops
}
