//! Fused layers: linear (matmul plus bias) and linear with an activation.

use super::*;

/// linear and linear_act.
pub(super) fn entries() -> Vec<OpEntry> {
    let mut ops = Vec::new();
    use Domain::*;
    ops.push(OpEntry {
        name: "linear",
        differentiable: true,
        kernels: &["matmul_small_fwd", "matmul_block_fwd"],
        cases: [
            (&[5usize, 7][..], &[3usize, 7][..]),
            (&[2, 4, 7], &[6, 7]),
            (&[1, 65], &[33, 65]),
            (&[7], &[2, 7]),
        ]
        .iter()
        .map(|(x, w)| {
            case(
                format!("{x:?} by {w:?}"),
                vec![spec(x, Any), spec(w, Any)],
                |t, _| t[0].linear(&t[1]),
            )
        })
        .collect(),
    });
    ops.push(OpEntry {
        name: "linear_act",
        differentiable: true,
        kernels: &["matmul_small_fwd", "matmul_block_fwd"],
        cases: {
            use crate::ops::matmul::Act;
            let acts = [
                Act::Identity,
                Act::Relu,
                Act::LeakyRelu(0.1),
                Act::Sigmoid,
                Act::Tanh,
                Act::LeakyRelu(-0.5),
                Act::Gelu,
                Act::GeluTanh,
                Act::Silu,
                Act::Mish,
            ];
            let shapes: [(&[usize], &[usize]); 3] =
                [(&[5, 7], &[3, 7]), (&[2, 4, 9], &[6, 9]), (&[7], &[33, 7])];
            let mut cases = Vec::new();
            for (k, act) in acts.into_iter().enumerate() {
                for (x, w) in shapes {
                    for bias in [true, false] {
                        if !bias && k % 2 == 1 {
                            continue;
                        }
                        let mut inputs = vec![spec(x, Any), spec(w, Any)];
                        if bias {
                            inputs.push(spec(&w[..1], Any));
                        }
                        cases.push(case(
                            format!("{act:?} {x:?} by {w:?}, bias {bias}"),
                            inputs,
                            move |t, _| t[0].linear_act(&t[1], t.get(2), act),
                        ));
                    }
                }
            }
            // A residual added in the product's epilogue (a transformer's connection).
            let residuals: [(&[usize], &[usize], &[usize]); 2] = [
                (&[5, 7], &[3, 7], &[5, 3]),
                (&[2, 4, 9], &[6, 9], &[2, 4, 6]),
            ];
            for (x, w, r) in residuals {
                cases.push(case(
                    format!("residual {x:?} by {w:?}"),
                    vec![spec(x, Any), spec(w, Any), spec(&w[..1], Any), spec(r, Any)],
                    move |t, _| {
                        crate::ops::fused::linear_add(
                            &t[0],
                            &t[1],
                            Some(&t[2]),
                            Act::Identity,
                            Some(&t[3]),
                        )
                    },
                ));
            }
            cases
        },
    });
    ops
}
