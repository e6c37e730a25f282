//! PyTorch's conveniences: `view` with an inferred `-1`, `flatten_from`, pooling with the
//! stride defaulting to the kernel, and `vis::save_image`'s PNG grids.

mod common;

use std::path::PathBuf;

use common::{assert_close, test_device, vec_f32};
use wgrad::prelude::*;

fn arange(n: usize, shape: &[usize], dev: &Device) -> Tensor {
    Tensor::from_vec((0..n).map(|i| i as f32).collect(), shape, dev).unwrap()
}

fn shape_msg(r: wgrad::Result<Tensor>) -> String {
    match r {
        Err(e @ Error::Shape { .. }) => e.to_string(),
        Err(e) => panic!("wanted a shape error, got {e}"),
        Ok(t) => panic!("wanted a shape error, got a tensor of {:?}", t.shape()),
    }
}

test_device!(
    /// One `-1` is inferred from the element count, anywhere; the view shares the values
    /// and its gradient flows back in the input's shape.
    view_infers_one_dimension_cpu,
    view_infers_one_dimension_gpu,
    |dev| {
        let x = arange(24, &[2, 3, 4], &dev).requires_grad_(true).unwrap();
        assert_eq!(x.view(&[-1, 4]).unwrap().shape(), &[6, 4]);
        assert_eq!(x.view(&[4, -1]).unwrap().shape(), &[4, 6]);
        assert_eq!(x.view(&[2, -1, 3]).unwrap().shape(), &[2, 4, 3]);
        assert_eq!(x.view(&[-1]).unwrap().shape(), &[24]);
        assert_eq!(x.view(&[24, 1]).unwrap().shape(), &[24, 1]);
        let v = x.view(&[-1, 6]).unwrap();
        assert_eq!(vec_f32(&v), vec_f32(&x));
        let w = arange(24, &[4, 6], &dev);
        v.mul(&w).unwrap().sum().unwrap().backward().unwrap();
        let g = x.grad().unwrap();
        assert_eq!(g.shape(), &[2, 3, 4]);
        assert_close(&vec_f32(&g), &vec_f32(&w), 0.0, 0.0, "view gradient");
        // A scalar and an empty tensor.
        let s = Tensor::scalar(5.0, &dev).unwrap();
        assert_eq!(s.view(&[-1]).unwrap().shape(), &[1]);
        assert_eq!(s.view(&[1, -1, 1]).unwrap().shape(), &[1, 1, 1]);
        let e = Tensor::zeros(&[0, 3], &dev).unwrap();
        assert_eq!(e.view(&[-1, 3]).unwrap().shape(), &[0, 3]);
        assert_eq!(e.view(&[3, 0]).unwrap().shape(), &[3, 0]);
    }
);

test_device!(
    /// PyTorch's errors: two `-1`s, another negative, a size that does not divide, a
    /// plain wrong count, and `-1` beside a zero size (ambiguous, even on 0 elements).
    view_rejects_bad_shapes_cpu,
    view_rejects_bad_shapes_gpu,
    |dev| {
        let x = arange(12, &[3, 4], &dev);
        assert!(shape_msg(x.view(&[-1, -1])).contains("only one dimension can be -1"));
        assert!(shape_msg(x.view(&[-2, 6])).contains("size -2 of dimension 0 is negative"));
        assert!(shape_msg(x.view(&[5, -1])).contains("do not divide"));
        assert!(shape_msg(x.view(&[5, 2])).contains("12 elements"));
        assert!(shape_msg(x.view(&[0, -1])).contains("ambiguous"));
        let e = Tensor::zeros(&[0, 3], &dev).unwrap();
        assert!(shape_msg(e.view(&[0, -1])).contains("ambiguous"));
        assert!(shape_msg(e.view(&[-1, 0])).contains("ambiguous"));
        // Sizes whose product overflows cannot divide the count.
        assert!(shape_msg(x.view(&[isize::MAX, 4, -1])).contains("do not divide"));
    }
);

test_device!(
    /// `flatten_from(start)` is `flatten(start, -1)`.
    flatten_from_merges_to_the_end_cpu,
    flatten_from_merges_to_the_end_gpu,
    |dev| {
        let x = arange(120, &[2, 3, 4, 5], &dev);
        assert_eq!(x.flatten_from(1).unwrap().shape(), &[2, 60]);
        assert_eq!(x.flatten_from(0).unwrap().shape(), &[120]);
        assert_eq!(x.flatten_from(-2).unwrap().shape(), &[2, 3, 20]);
        assert_eq!(x.flatten_from(3).unwrap().shape(), &[2, 3, 4, 5]);
        assert_eq!(vec_f32(&x.flatten_from(1).unwrap()), vec_f32(&x));
        assert!(matches!(x.flatten_from(4), Err(Error::Argument { .. })));
        let s = Tensor::scalar(1.0, &dev).unwrap();
        assert_eq!(s.flatten_from(0).unwrap().shape(), &[1]);
    }
);

test_device!(
    /// `max_pool2d_by` / `avg_pool2d_by` use the kernel as the stride, drop a trailing
    /// row that fills no window, and match the explicit forms, gradients included.
    pooling_by_the_kernel_cpu,
    pooling_by_the_kernel_gpu,
    |dev| {
        // 1 x 1 x 5 x 4: rows of 4; a 2 x 2 window drops the fifth row.
        let x = arange(20, &[1, 1, 5, 4], &dev);
        let m = x.max_pool2d_by((2, 2)).unwrap();
        assert_eq!(m.shape(), &[1, 1, 2, 2]);
        assert_eq!(vec_f32(&m), [5.0, 7.0, 13.0, 15.0]);
        let a = x.avg_pool2d_by((2, 2)).unwrap();
        assert_eq!(vec_f32(&a), [2.5, 4.5, 10.5, 12.5]);
        let r = wgrad::ops::pool2d::max_pool2d_by(&x, (1, 2)).unwrap();
        assert_eq!(r.shape(), &[1, 1, 5, 2]);
        let x = Tensor::randn(&[2, 3, 6, 9], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        for max in [true, false] {
            let (by, full) = if max {
                (
                    x.max_pool2d_by((2, 3)).unwrap(),
                    x.max_pool2d((2, 3), (2, 3), (0, 0)).unwrap(),
                )
            } else {
                (
                    wgrad::ops::pool2d::avg_pool2d_by(&x, (2, 3)).unwrap(),
                    x.avg_pool2d((2, 3), (2, 3), (0, 0)).unwrap(),
                )
            };
            assert_eq!(by.shape(), &[2, 3, 3, 3]);
            assert_eq!(vec_f32(&by), vec_f32(&full));
            let w = Tensor::randn(by.shape(), &dev).unwrap();
            by.mul(&w).unwrap().sum().unwrap().backward().unwrap();
            let g_by = vec_f32(&x.grad().unwrap());
            x.zero_grad();
            full.mul(&w).unwrap().sum().unwrap().backward().unwrap();
            let g_full = vec_f32(&x.grad().unwrap());
            x.zero_grad();
            assert_eq!(g_by, g_full, "gradients of the max={max} pool");
        }
        assert!(x.max_pool2d_by((0, 2)).is_err());
        assert!(x.avg_pool2d_by((7, 2)).is_err());
    }
);

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgrad-vis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Reads a PNG back: (width, height, colour type, 8-bit samples).
fn read_png(path: &std::path::Path) -> (u32, u32, png::ColorType, Vec<u8>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type, buf)
}

test_device!(
    /// Three 2 x 3 grey images, two per row, padding 1: a 5 x 9 grid, the images at
    /// (1, 1), (1, 5) and (4, 1), black padding and a black empty cell; values clamped,
    /// rounded as torchvision (255 v + 0.5, truncated) and NaN written as 0.
    save_image_lays_out_a_grey_grid_cpu,
    save_image_lays_out_a_grey_grid_gpu,
    |dev| {
        let vals: Vec<f32> = vec![
            0.0, 1.0, 0.5, // image 0, row 0
            -3.0, 7.0, f32::NAN, // image 0, row 1
            0.2, 0.4, 0.6, // image 1
            0.8, 1.0, 0.1, //
            1.0, 1.0, 1.0, // image 2
            0.002, 0.001, 0.998,
        ];
        let x = Tensor::from_vec(vals.clone(), &[3, 1, 2, 3], &dev).unwrap();
        let path = tmp(&format!("grey-{}.png", dev.is_gpu()));
        wgrad::vis::save_image(&x, &path, 2, 1).unwrap();
        let (w, h, color, px) = read_png(&path);
        assert_eq!((w, h, color), (9, 7, png::ColorType::Grayscale));
        let byte = |v: f32| {
            if v.is_nan() {
                0
            } else {
                ((v.clamp(0.0, 1.0) as f64) * 255.0 + 0.5) as u8
            }
        };
        let mut want = vec![0u8; 9 * 7];
        for (img, (top, left)) in [(1, 1), (1, 5), (4, 1)].into_iter().enumerate() {
            for y in 0..2 {
                for x in 0..3 {
                    want[(top + y) * 9 + left + x] = byte(vals[img * 6 + y * 3 + x]);
                }
            }
        }
        assert_eq!(px, want);
        assert_eq!(&px[10..13], &[0, 255, 128]);
        assert_eq!(&px[19..22], &[0, 255, 0]);
        assert_eq!(&px[4 * 9 + 1..4 * 9 + 4], &[255, 255, 255]);
        assert_eq!(&px[5 * 9 + 1..5 * 9 + 4], &[1, 0, 254]);
    }
);

#[test]
fn save_image_writes_rgb_and_a_single_image_without_padding() {
    let dev = Device::cpu();
    // Two 1 x 2 RGB images (channel planes), one per row, padding 2.
    let vals: Vec<f32> = vec![
        1.0, 0.0, 0.0, 0.0, 0.0, 1.0, // image 0: R, G, B planes
        0.0, 0.5, 0.5, 0.0, 1.0, 1.0, // image 1
    ];
    let x = Tensor::from_vec(vals, &[2, 3, 1, 2], &dev).unwrap();
    let path = tmp("rgb.png");
    wgrad::vis::save_image(&x, &path, 1, 2).unwrap();
    let (w, h, color, px) = read_png(&path);
    // Width 1 (2 + 2) + 2 = 6, height 2 (1 + 2) + 2 = 8.
    assert_eq!((w, h, color), (6, 8, png::ColorType::Rgb));
    let at = |y: usize, x: usize| &px[(y * 6 + x) * 3..][..3];
    assert_eq!(at(2, 2), [255, 0, 0]);
    assert_eq!(at(2, 3), [0, 0, 255]);
    assert_eq!(at(5, 2), [0, 128, 255]);
    assert_eq!(at(5, 3), [128, 0, 255]);
    let lit = px.iter().filter(|&&b| b != 0).count();
    assert_eq!(lit, 6, "everything but the images is black padding");
    // One image is written alone, whatever the padding (torchvision's make_grid).
    let one = Tensor::full(&[1, 3, 4, 5], 0.25, &dev).unwrap();
    wgrad::vis::save_image(&one, &path, 8, 3).unwrap();
    let (w, h, _, px) = read_png(&path);
    assert_eq!((w, h), (5, 4));
    assert!(px.iter().all(|&b| b == 64));
    // f64 images too; more columns than images gives one row of N.
    let d = Tensor::full(&[2, 1, 3, 3], 1.0, &dev)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    wgrad::vis::save_image(&d, &path, 10, 0).unwrap();
    let (w, h, _, px) = read_png(&path);
    assert_eq!((w, h), (6, 3));
    assert!(px.iter().all(|&b| b == 255));
}

#[test]
fn save_image_errors() {
    let dev = Device::cpu();
    let path = tmp("bad.png");
    let save = |shape: &[usize]| {
        let x = Tensor::zeros(shape, &dev).unwrap();
        wgrad::vis::save_image(&x, &path, 4, 2)
    };
    for shape in [
        &[3, 28, 28][..],
        &[2, 2, 4, 4],
        &[2, 4, 4, 4],
        &[0, 1, 4, 4],
        &[2, 1, 0, 4],
        &[2, 3, 4, 0],
    ] {
        assert!(
            matches!(save(shape), Err(Error::Shape { .. })),
            "{shape:?} should be refused"
        );
    }
    assert!(!path.exists(), "a refused save writes nothing");
    let x = Tensor::zeros(&[2, 1, 4, 4], &dev).unwrap();
    assert!(matches!(
        wgrad::vis::save_image(&x, &path, 0, 2),
        Err(Error::Argument { .. })
    ));
    let u = x.to_dtype(DType::U32).unwrap();
    assert!(wgrad::vis::save_image(&u, &path, 2, 2).is_err());
    // Too large for a PNG: checked before anything is allocated.
    let huge = Tensor::zeros(&[2, 1, 1, 1], &dev).unwrap();
    assert!(matches!(
        wgrad::vis::save_image(&huge, &path, 2, usize::MAX / 2),
        Err(Error::Argument { .. })
    ));
    // A directory that does not exist: a typed io error naming the path.
    let missing = tmp("no-such-dir").join("grid.png");
    match wgrad::vis::save_image(&x, &missing, 2, 2) {
        Err(Error::Io { path: p, source }) => {
            assert!(p.contains("no-such-dir"), "{p}");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("wanted Error::Io, got {other:?}"),
    }
    // A failed save leaves the previous file as it was.
    let keep = tmp("keep.png");
    wgrad::vis::save_image(&x, &keep, 2, 2).unwrap();
    let before = std::fs::read(&keep).unwrap();
    assert!(wgrad::vis::save_image(&x, &keep, 0, 2).is_err());
    assert_eq!(std::fs::read(&keep).unwrap(), before);
}
