//! The plan of a reduction, shared by both backends: which dimensions are reduced and
//! kept, with their sizes and strides in the input.

use crate::backend::cpu::strided_offset;
use crate::error::Result;
use crate::shape;

/// The geometry of one reduction.
#[derive(Clone, Debug)]
pub(crate) struct ReducePlan {
    pub input: Vec<usize>,
    pub reduced: Vec<bool>,
    pub keep_shape: Vec<usize>,
    pub out_shape: Vec<usize>,
    pub kept_sizes: Vec<usize>,
    pub kept_strides: Vec<usize>,
    pub red_sizes: Vec<usize>,
    pub red_strides: Vec<usize>,
}

impl ReducePlan {
    /// The plan of reducing `input` over `dims`.
    pub fn new(
        op: &'static str,
        input: &[usize],
        dims: &[isize],
        keepdim: bool,
    ) -> Result<ReducePlan> {
        let dims = shape::normalize_dims(op, dims, input.len())?;
        let strides = shape::contiguous_strides(input);
        let reduced: Vec<bool> = (0..input.len()).map(|d| dims.contains(&d)).collect();
        let mut p = ReducePlan {
            input: input.to_vec(),
            reduced: reduced.clone(),
            keep_shape: Vec::new(),
            out_shape: Vec::new(),
            kept_sizes: Vec::new(),
            kept_strides: Vec::new(),
            red_sizes: Vec::new(),
            red_strides: Vec::new(),
        };
        for d in 0..input.len() {
            if reduced[d] {
                p.keep_shape.push(1);
                p.red_sizes.push(input[d]);
                p.red_strides.push(strides[d]);
                if keepdim {
                    p.out_shape.push(1);
                }
            } else {
                p.keep_shape.push(input[d]);
                p.kept_sizes.push(input[d]);
                p.kept_strides.push(strides[d]);
                p.out_shape.push(input[d]);
            }
        }
        Ok(p)
    }

    /// Outputs.
    pub fn outputs(&self) -> usize {
        shape::numel(&self.kept_sizes)
    }

    /// Reduced positions per output.
    pub fn m(&self) -> usize {
        shape::numel(&self.red_sizes)
    }

    /// For each input dim: its stride in the output (0 if reduced) and in the
    /// reduced-position space (0 if kept).
    pub fn bwd_strides(&self) -> (Vec<usize>, Vec<usize>) {
        let out_strides = shape::contiguous_strides(&self.keep_shape);
        let red_space = shape::contiguous_strides(&self.red_sizes);
        let (mut so, mut sr) = (Vec::new(), Vec::new());
        let mut r = 0;
        for (&reduced, &out_stride) in self.reduced.iter().zip(&out_strides) {
            if reduced {
                so.push(0);
                sr.push(red_space[r]);
                r += 1;
            } else {
                so.push(out_stride);
                sr.push(0);
            }
        }
        (so, sr)
    }

    /// Output o's first element in the input.
    pub fn base(&self, o: usize) -> usize {
        strided_offset(o, &self.kept_sizes, &self.kept_strides)
    }

    /// Reduced position j's offset from an output's first element.
    pub fn offset(&self, j: usize) -> usize {
        strided_offset(j, &self.red_sizes, &self.red_strides)
    }
}
