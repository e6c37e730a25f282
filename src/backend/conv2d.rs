//! The geometry of a convolution's column transforms, shared by both backends.

/// Sizes of one convolution: image `[n, c, h, w]`, output plane `ho x wo`, kernel,
/// stride, padding and dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Batch.
    pub n: usize,
    /// Image channels.
    pub c: usize,
    /// Image height and width.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
    /// Kernel size.
    pub k: (usize, usize),
    /// Stride.
    pub stride: (usize, usize),
    /// Zero padding.
    pub padding: (usize, usize),
    /// Dilation.
    pub dilation: (usize, usize),
}

impl Geometry {
    /// Taps of the kernel, `kh kw`.
    pub(crate) fn kk(&self) -> usize {
        self.k.0 * self.k.1
    }
    /// The columns' shape, `[N, C kh kw, Ho Wo]`.
    pub(crate) fn cols_shape(&self) -> Vec<usize> {
        vec![self.n, self.c * self.kk(), self.ho * self.wo]
    }
    /// The image's shape, `[N, C, H, W]`.
    pub(crate) fn image_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.h, self.w]
    }
    /// The output size of a convolution along one axis.
    pub fn out_size(
        input: usize,
        k: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
    ) -> Option<usize> {
        let span = dilation.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
        input
            .checked_add(padding.checked_mul(2)?)?
            .checked_sub(span)
            .map(|v| v / stride + 1)
    }
}
