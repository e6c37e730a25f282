//! Data augmentation: each transform against a hand-computed result, flips as
//! involutions, identical batches on the CPU and the GPU, labels untouched.

mod common;

use std::sync::Arc;

use wgrad::data::augment::{symmetric_eigen3, Augment, PcaColor};
use wgrad::data::{DataLoader, InMemoryDataset};
use wgrad::ops::augment::{geometric, ImageMove};
use wgrad::prelude::*;

fn image(dev: &Device) -> Tensor {
    // [[1, 2, 3], [4, 5, 6]]
    Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[1, 1, 2, 3], dev).unwrap()
}

fn moved(dev: &Device, pad: usize, out: (usize, usize), m: ImageMove) -> Vec<f32> {
    geometric(&image(dev), pad, out, &[m])
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
}

common::test_device!(
    each_geometric_transform_gives_the_hand_computed_image_cpu,
    each_geometric_transform_gives_the_hand_computed_image_gpu,
    |dev| {
        let none = ImageMove::default();
        // Padding 1 and a crop at (0, 0): the image moves one pixel down and right.
        assert_eq!(
            moved(&dev, 1, (2, 3), none),
            vec![0.0, 0.0, 0.0, 0.0, 1.0, 2.0]
        );
        // A crop at (2, 2) moves it one pixel up and left.
        let up_left = ImageMove {
            crop_row: 2,
            crop_col: 2,
            ..none
        };
        assert_eq!(
            moved(&dev, 1, (2, 3), up_left),
            vec![5.0, 6.0, 0.0, 0.0, 0.0, 0.0]
        );
        let h = ImageMove {
            hflip: true,
            ..none
        };
        assert_eq!(
            moved(&dev, 0, (2, 3), h),
            vec![3.0, 2.0, 1.0, 6.0, 5.0, 4.0]
        );
        let v = ImageMove {
            vflip: true,
            ..none
        };
        assert_eq!(
            moved(&dev, 0, (2, 3), v),
            vec![4.0, 5.0, 6.0, 1.0, 2.0, 3.0]
        );
        // A 1x2 crop of the padded image at (1, 2): the pixels (0, 1) and (0, 2).
        let crop = ImageMove {
            crop_row: 1,
            crop_col: 2,
            ..none
        };
        assert_eq!(moved(&dev, 1, (1, 2), crop), vec![2.0, 3.0]);
        assert!(
            geometric(&image(&dev), 0, (3, 3), &[none]).is_err(),
            "a crop larger than the image"
        );
    }
);

common::test_device!(
    flipping_twice_is_the_identity_cpu,
    flipping_twice_is_the_identity_gpu,
    |dev| {
        let x = Tensor::randn_seeded(&[4, 3, 5, 6], 1, &dev).unwrap();
        let aug = Augment::new(3).horizontal_flip(1.0).vertical_flip(1.0);
        let twice = aug.apply(&aug.apply(&x, 0).unwrap(), 0).unwrap();
        assert_eq!(twice.to_vec::<f32>().unwrap(), x.to_vec::<f32>().unwrap());
    }
);

#[test]
fn brightness_and_contrast_follow_their_definitions() {
    let dev = Device::cpu();
    let x = image(&dev);
    let step = 5;
    let out = Augment::new(9)
        .brightness(0.5)
        .apply(&x, step)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let f = out[0] / 1.0;
    assert!((0.5..=1.5).contains(&f));
    for (o, v) in out.iter().zip([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) {
        assert!(
            (o - f * v).abs() < 1e-5,
            "every pixel scaled by the same factor"
        );
    }
    let out = Augment::new(9)
        .contrast(0.5)
        .apply(&x, step)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let mean: f32 = out.iter().sum::<f32>() / 6.0;
    assert!((mean - 3.5).abs() < 1e-5, "contrast keeps the mean");
    let c = (out[5] - mean) / (6.0 - 3.5);
    assert!((0.5..=1.5).contains(&c));
}

#[test]
fn pca_colour_uses_the_principal_components_of_the_rgb_values() {
    let m = [[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 1.0]];
    let (vals, vecs) = symmetric_eigen3(m);
    for k in 0..3 {
        for r in 0..3 {
            let av: f64 = (0..3).map(|c| m[r][c] * vecs[k][c]).sum();
            assert!((av - vals[k] * vecs[k][r]).abs() < 1e-9, "A v = lambda v");
        }
    }
    // Pixels along one colour direction: one large component in that direction.
    let mut pixels = Vec::new();
    for i in 0..16 {
        let t = i as f32 / 15.0;
        pixels.extend([t, 0.5 * t, 0.25 * t]);
    }
    // One 4x4 image in NCHW: regroup the RGB triples into channel planes.
    let planes: Vec<f32> = (0..3)
        .flat_map(|c| {
            pixels
                .iter()
                .skip(c)
                .step_by(3)
                .copied()
                .collect::<Vec<_>>()
        })
        .collect();
    let pca = PcaColor::fit(&planes, 4, 4, 0.1).unwrap();
    let top = (0..3)
        .max_by(|&a, &b| pca.eigenvalues[a].total_cmp(&pca.eigenvalues[b]))
        .unwrap();
    let dir = pca.eigenvectors[top];
    let norm = (1.0f32 + 0.25 + 0.0625).sqrt();
    let cos = (dir[0] + 0.5 * dir[1] + 0.25 * dir[2]).abs() / norm;
    assert!(
        cos > 0.999,
        "the top component points along (1, 0.5, 0.25): {dir:?}"
    );
}

#[test]
fn the_gpu_and_the_cpu_make_the_same_augmented_batch() {
    let _serial = common::exclusive();
    let pca = PcaColor {
        eigenvalues: [0.2, 0.02, 0.005],
        eigenvectors: [[0.58, 0.58, 0.58], [0.7, 0.0, -0.7], [0.4, -0.8, 0.4]],
        sigma: 0.1,
    };
    let aug = Augment::new(11)
        .translate(2)
        .horizontal_flip(0.5)
        .vertical_flip(0.5)
        .brightness(0.2)
        .contrast(0.3)
        .pca_color(pca);
    let mut outs = Vec::new();
    for dev in common::devices() {
        let x = Tensor::rand_seeded(&[6, 3, 7, 5], 2, &dev).unwrap();
        outs.push(aug.apply(&x, 17).unwrap().to_vec::<f32>().unwrap());
    }
    common::assert_close(&outs[1], &outs[0], 1e-5, 0.0, "GPU vs CPU augmented batch");
    let moves = aug.moves(6, 7, 5, 17);
    assert!(
        moves.iter().any(|m| m.hflip) && moves.iter().any(|m| !m.hflip),
        "flips are random per image"
    );
}

#[test]
fn the_loader_augments_inputs_and_leaves_labels_alone() {
    let dev = Device::cpu();
    let n = 12;
    let feats: Vec<f32> = (0..n * 16).map(|i| (i % 7) as f32).collect();
    let ds = Arc::new(
        InMemoryDataset::classification(feats, &[1, 4, 4], (0..n as u32).collect()).unwrap(),
    );
    let plain: Vec<_> = DataLoader::new(ds.clone(), 5, &dev)
        .shuffle(4)
        .epoch()
        .map(|b| b.unwrap())
        .collect();
    let aug = Augment::new(1).translate(1).horizontal_flip(0.5);
    let augmented: Vec<_> = DataLoader::new(ds, 5, &dev)
        .shuffle(4)
        .augment(aug)
        .epoch()
        .map(|b| b.unwrap())
        .collect();
    let mut changed = false;
    for (p, a) in plain.iter().zip(&augmented) {
        assert_eq!(
            p.y.to_vec::<u32>().unwrap(),
            a.y.to_vec::<u32>().unwrap(),
            "labels untouched"
        );
        assert_eq!(p.x.shape(), a.x.shape());
        changed |= p.x.to_vec::<f32>().unwrap() != a.x.to_vec::<f32>().unwrap();
    }
    assert!(changed, "the images were augmented");
}
