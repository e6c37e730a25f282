//! The LSTM and GRU cells as ops (`lstm_cell`, `gru_cell`): one step's gate math, run by
//! the backends' `lstm_cell*` and `gru_cell*` primitives (the CPU loops the CPU
//! recurrences share, the GPU's `lstm_cell_*`, `gru_cell_*` kernels).

use super::*;

/// One LSTM step's gate math: `gates` `[B, 4H]` (pre-activations, biases included) and
/// `c_prev` `[B, H]` give `(h, c)`, each `[B, H]`.
pub fn lstm_cell(gates: &Tensor, c_prev: &Tensor) -> Result<(Tensor, Tensor)> {
    if let Some(r) =
        crate::ops::half::widened("lstm_cell", &[gates, c_prev], |w| lstm_cell(&w[0], &w[1]))
    {
        return r;
    }
    check_pair("lstm_cell", gates, c_prev)?;
    check_float("lstm_cell", gates)?;
    let (b, h) = match c_prev.shape() {
        &[b, h] if gates.shape() == [b, 4 * h] => (b, h),
        _ => {
            return shape_err(
                "lstm_cell",
                format!(
                    "gates {:?} and cell state {:?}: expected [B, 4H] and [B, H]",
                    gates.shape(),
                    c_prev.shape()
                ),
            )
        }
    };
    let y = gates
        .device()
        .backend()
        .lstm_cell(gates.storage(), c_prev.storage(), b, h)?;
    let y = Tensor::like(y, vec![2, b, h], gates);
    let (sa, sc) = (gates.detach(), c_prev.detach());
    let y = record(y, "lstm_cell", &[gates, c_prev], move |gy| {
        let (da, dc) = gy.device().backend().lstm_cell_backward(
            sa.storage(),
            sc.storage(),
            gy.storage(),
            b,
            h,
        )?;
        Ok(vec![
            Some(Tensor::like(da, vec![b, 4 * h], gy)),
            Some(Tensor::like(dc, vec![b, h], gy)),
        ])
    });
    let hs = y.narrow(0, 0, 1)?.reshape(&[b, h])?;
    let cs = y.narrow(0, 1, 1)?.reshape(&[b, h])?;
    Ok((hs, cs))
}

/// One GRU step's gate math: `gi` and `gh` `[B, 3H]` (input and recurrent products with
/// their biases) and `h_prev` `[B, H]` give the new hidden state `[B, H]`.
pub fn gru_cell(gi: &Tensor, gh: &Tensor, h_prev: &Tensor) -> Result<Tensor> {
    if let Some(r) = crate::ops::half::widened("gru_cell", &[gi, gh, h_prev], |w| {
        gru_cell(&w[0], &w[1], &w[2])
    }) {
        return r;
    }
    check_pair("gru_cell", gi, gh)?;
    check_pair("gru_cell", gi, h_prev)?;
    check_float("gru_cell", gi)?;
    let (b, h) = match h_prev.shape() {
        &[b, h] if gi.shape() == [b, 3 * h] && gh.shape() == [b, 3 * h] => (b, h),
        _ => {
            return shape_err(
                "gru_cell",
                format!(
                    "gi {:?}, gh {:?} and h_prev {:?}: expected [B, 3H], [B, 3H] and [B, H]",
                    gi.shape(),
                    gh.shape(),
                    h_prev.shape()
                ),
            )
        }
    };
    let y = gi
        .device()
        .backend()
        .gru_cell(gi.storage(), gh.storage(), h_prev.storage(), b, h)?;
    let y = Tensor::like(y, vec![b, h], gi);
    let (si, sh, sp) = (gi.detach(), gh.detach(), h_prev.detach());
    Ok(record(y, "gru_cell", &[gi, gh, h_prev], move |gy| {
        let grads = gy.device().backend().gru_cell_backward(
            si.storage(),
            sh.storage(),
            sp.storage(),
            gy.storage(),
            b,
            h,
        )?;
        let shapes = [vec![b, 3 * h], vec![b, 3 * h], vec![b, h]];
        Ok(grads
            .into_iter()
            .zip(shapes)
            .map(|(d, shape)| Some(Tensor::like(d, shape, gy)))
            .collect())
    }))
}
