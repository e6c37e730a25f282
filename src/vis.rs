//! Pictures of tensors: [`save_image`] writes a batch of images as one PNG grid, like
//! torchvision's `save_image` (its `make_grid` layout and its rounding).

use std::path::Path;

use crate::error::{arg_err, shape_err, Result};
use crate::io::{format_err, write_atomic};
use crate::shape;
use crate::tensor::{check_float, Tensor};

/// Writes `images`, an `[N, C, H, W]` float tensor with `C = 1` (grey) or `C = 3` (RGB),
/// as a PNG grid of `nrow` images per row (the last row may be short), each image
/// surrounded by `padding` black pixels, as torchvision's
/// `save_image(images, path, nrow=nrow, padding=padding)`: the grid is
/// `rows (H + padding) + padding` pixels high and `min(nrow, N) (W + padding) + padding`
/// wide, and a single image (`N = 1`) is written alone, without padding. Values are
/// clamped to `[0, 1]` and stored as `round(255 v)` (halves up) in 8 bits; NaN is written
/// as 0. One channel gives a greyscale PNG, three an RGB one. The tensor may be on any
/// device (it is read back once).
///
/// The file is written atomically, like [`io::save`](crate::io::save): a failed write
/// leaves any previous file as it was. Errors: [`Error::Shape`](crate::Error::Shape) for
/// another rank, channel count or an empty batch or image,
/// [`Error::Argument`](crate::Error::Argument) for `nrow = 0`, a dtype that is not a
/// float, or a grid too large for a PNG, and [`Error::Io`](crate::Error::Io) (with the
/// path and the `std::io::Error`) when the file cannot be written.
///
/// ```no_run
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let samples = Tensor::rand(&[16, 1, 28, 28], &dev)?; // values in [0, 1)
/// wgrad::vis::save_image(&samples, "samples.png", 8, 2)?; // 2 rows of 8
/// # Ok(()) }
/// ```
pub fn save_image(
    images: &Tensor,
    path: impl AsRef<Path>,
    nrow: usize,
    padding: usize,
) -> Result<()> {
    let path = path.as_ref();
    let grid = Grid::plan(images, nrow, padding)?;
    let values = images.to_f64_vec()?;
    let pixels = grid.pixels(&values);
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, grid.width as u32, grid.height as u32);
        encoder.set_color(if grid.c == 1 {
            png::ColorType::Grayscale
        } else {
            png::ColorType::Rgb
        });
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| format_err(path, e.to_string()))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| format_err(path, e.to_string()))?;
        writer
            .finish()
            .map_err(|e| format_err(path, e.to_string()))?;
    }
    write_atomic(path, &png_bytes)
}

/// The layout of a grid of `n` images of `c x h x w`.
struct Grid {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    /// Images per row.
    cols: usize,
    padding: usize,
    width: usize,
    height: usize,
}

impl Grid {
    /// Checks the tensor and the arguments and lays the grid out (torchvision's
    /// `make_grid`: one image alone has no padding).
    fn plan(images: &Tensor, nrow: usize, padding: usize) -> Result<Grid> {
        const OP: &str = "save_image";
        check_float(OP, images)?;
        let s = images.shape();
        if s.len() != 4 || !(s[1] == 1 || s[1] == 3) || s[0] == 0 || s[2] == 0 || s[3] == 0 {
            return shape_err(
                OP,
                format!(
                    "needs [N, C, H, W] with C = 1 or 3 and N, H, W > 0, got {}",
                    shape::fmt(s)
                ),
            );
        }
        if nrow == 0 {
            return arg_err(OP, "nrow must be at least 1");
        }
        let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
        let padding = if n == 1 { 0 } else { padding };
        let cols = nrow.min(n);
        let rows = n.div_ceil(cols);
        // Each side within PNG's 2^31 - 1, and the 8-bit pixels within 1 GiB.
        let side = |count: usize, len: usize| {
            len.checked_add(padding)
                .and_then(|v| v.checked_mul(count))
                .and_then(|v| v.checked_add(padding))
                .filter(|&v| v <= i32::MAX as usize)
        };
        let (Some(width), Some(height)) = (side(cols, w), side(rows, h)) else {
            return arg_err(
                OP,
                format!(
                    "a grid of {} with padding {padding} is too large for a PNG",
                    shape::fmt(s)
                ),
            );
        };
        match width.checked_mul(height).and_then(|v| v.checked_mul(c)) {
            Some(bytes) if bytes < 1 << 30 => {}
            _ => {
                return arg_err(
                    OP,
                    format!("a grid of {width} x {height} pixels of {c} channels is 1 GiB or more"),
                )
            }
        }
        Ok(Grid {
            n,
            c,
            h,
            w,
            cols,
            padding,
            width,
            height,
        })
    }

    /// The grid's 8-bit pixels, row by row, channels interleaved (padding black).
    fn pixels(&self, values: &[f64]) -> Vec<u8> {
        let (c, h, w, p) = (self.c, self.h, self.w, self.padding);
        let mut out = vec![0u8; self.width * self.height * c];
        for img in 0..self.n {
            let (gy, gx) = (img / self.cols, img % self.cols);
            let (top, left) = (gy * (h + p) + p, gx * (w + p) + p);
            for ch in 0..c {
                let plane = &values[(img * c + ch) * h * w..][..h * w];
                for y in 0..h {
                    let row = (top + y) * self.width;
                    for x in 0..w {
                        out[(row + left + x) * c + ch] = to_byte(plane[y * w + x]);
                    }
                }
            }
        }
        out
    }
}

/// torchvision's conversion: `clamp(255 v + 0.5, 0, 255)` truncated; NaN gives 0.
fn to_byte(v: f64) -> u8 {
    if v.is_nan() {
        return 0;
    }
    (v.clamp(0.0, 1.0) * 255.0 + 0.5).floor().min(255.0) as u8
}
