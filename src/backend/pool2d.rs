//! The geometry of a pooling or upsampling over NCHW planes, shared by both backends.

/// The geometry of a pooling over `planes` planes of `h x w` into `ho x wo`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pool {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub ho: usize,
    pub wo: usize,
    pub k: (usize, usize),
    pub s: (usize, usize),
    pub p: (usize, usize),
    pub adaptive: bool,
}

impl Pool {
    /// Planes, N C.
    pub fn planes(&self) -> usize {
        self.n * self.c
    }
    /// The output's shape.
    pub fn out_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.ho, self.wo]
    }
    /// The input's shape.
    pub fn in_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.h, self.w]
    }
    /// `[start, end)` and divisor of output `o`'s window along an axis.
    pub fn window(&self, o: usize, rows: bool) -> (isize, isize, usize) {
        let (n, n_out, k, s, p) = if rows {
            (self.h, self.ho, self.k.0, self.s.0, self.p.0)
        } else {
            (self.w, self.wo, self.k.1, self.s.1, self.p.1)
        };
        if self.adaptive {
            let a = o * n / n_out;
            let b = ((o + 1) * n).div_ceil(n_out);
            (a as isize, b as isize, b - a)
        } else {
            let a = (o * s) as isize - p as isize;
            (a, a + k as isize, k)
        }
    }
}
