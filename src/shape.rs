//! Shapes: element counts, contiguous strides, NumPy broadcasting and dimension
//! normalisation. Every tensor is stored contiguously (row-major), so strides are derived.

use crate::error::{arg_err, shape_err, Result};

/// The largest rank kernels accept (the GPU parameter block has room for this many dims).
pub const MAX_RANK: usize = 6;

/// Number of elements of a shape (1 for a scalar `[]`).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides of a contiguous tensor of this shape.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// Formats a shape as PyTorch prints it: `[2, 3]`.
pub fn fmt(shape: &[usize]) -> String {
    format!("{shape:?}")
}

/// NumPy broadcasting of two shapes. A mismatch is reported as PyTorch does, at the
/// last dimension (of the broadcast shape) that does not fit: "the size of tensor a (3)
/// must match the size of tensor b (4) at non-singleton dimension 1", then both shapes.
pub fn broadcast(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    match broadcast_mismatch(a, b) {
        Ok(out) => Ok(out),
        Err((i, da, db)) => shape_err(
            op,
            format!(
                "the size of tensor a ({da}) must match the size of tensor b ({db}) at non-singleton dimension {i} (shapes {} and {})",
                fmt(a),
                fmt(b)
            ),
        ),
    }
}

/// The broadcast shape of `a` and `b`, or the last dimension of the broadcast shape where
/// they do not fit with the two sizes there.
pub(crate) fn broadcast_mismatch(
    a: &[usize],
    b: &[usize],
) -> std::result::Result<Vec<usize>, (usize, usize, usize)> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in (0..rank).rev() {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err((i, da, db));
        };
    }
    Ok(out)
}

/// Strides to read an input of shape `input` as if it had the (broadcast) shape `out`:
/// 0 on broadcast dimensions, the contiguous stride elsewhere. `out.len() >= input.len()`.
pub fn broadcast_strides(input: &[usize], out: &[usize]) -> Vec<usize> {
    let own = contiguous_strides(input);
    let lead = out.len() - input.len();
    (0..out.len())
        .map(|d| {
            if d < lead || input[d - lead] == 1 {
                0
            } else {
                own[d - lead]
            }
        })
        .collect()
}

/// Turns a possibly negative dimension into an index, PyTorch style.
pub fn normalize_dim(op: &'static str, dim: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    let d = if dim < 0 { dim + r } else { dim };
    if rank == 0 {
        return arg_err(op, format!("a 0-dimensional tensor has no dimension {dim}"));
    }
    if d < 0 || d >= r {
        return arg_err(
            op,
            format!("dimension {dim} is out of range for a tensor of rank {rank}"),
        );
    }
    Ok(d as usize)
}

/// Normalises a list of dimensions, sorted, rejecting repeats.
pub fn normalize_dims(op: &'static str, dims: &[isize], rank: usize) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(dims.len());
    for &d in dims {
        let n = normalize_dim(op, d, rank)?;
        if out.contains(&n) {
            return arg_err(op, format!("dimension {d} is repeated in {dims:?}"));
        }
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

/// The element count of a new tensor's shape, checked: the rank limit, and a count that
/// neither overflows `usize` nor passes what an allocator could ever give (`isize::MAX`
/// bytes of 8-byte elements). A shape with a zero dimension has no elements, whatever
/// the others.
pub fn check_new(op: &'static str, shape: &[usize]) -> Result<usize> {
    check_rank(op, shape)?;
    if shape.contains(&0) {
        return Ok(0);
    }
    let limit = isize::MAX as usize / 8;
    let mut n: usize = 1;
    for &d in shape {
        n = match n.checked_mul(d) {
            Some(v) if v <= limit => v,
            _ => {
                return Err(crate::error::Error::OutOfMemory {
                    op,
                    msg: format!(
                        "{} has more elements than any allocator can give (the count overflows)",
                        fmt(shape)
                    ),
                })
            }
        };
    }
    Ok(n)
}

/// Checks the rank limit of the kernels.
pub fn check_rank(op: &'static str, shape: &[usize]) -> Result<()> {
    if shape.len() > MAX_RANK {
        return shape_err(
            op,
            format!(
                "{} has rank {}; at most {MAX_RANK} is supported",
                fmt(shape),
                shape.len()
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast("t", &[3, 1], &[1, 7]).unwrap(), vec![3, 7]);
        assert_eq!(broadcast("t", &[7], &[3, 7]).unwrap(), vec![3, 7]);
        assert_eq!(broadcast("t", &[], &[2, 2]).unwrap(), vec![2, 2]);
        assert!(broadcast("t", &[3], &[4]).is_err());
        assert_eq!(broadcast_strides(&[3, 1], &[2, 3, 7]), vec![0, 1, 0]);
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
    }
}
