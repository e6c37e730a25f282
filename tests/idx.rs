//! IDX files (the MNIST / Fashion-MNIST format): small synthetic files, gzip-compressed
//! and plain, written by the tests; good files load with the right shapes, values and
//! labels, and every kind of bad file is a clear error. The real Fashion-MNIST files
//! are not needed: every test writes the small files it reads.

use std::io::Write;
use std::path::{Path, PathBuf};

use wgrad::data::fashion_mnist::{self, Split, CLASS_NAMES};
use wgrad::data::idx::{
    load_idx_classification, load_idx_images, load_idx_labels, load_idx_split, IdxImages,
};
use wgrad::data::Dataset;
use wgrad::Error;

/// A fresh folder for one test.
fn tmp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgrad-idx-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

fn images_bytes(count: usize, rows: usize, cols: usize) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..count * rows * cols)
        .map(|i| (i * 37 % 256) as u8)
        .collect();
    (
        idx_bytes(0x803, &[count as u32, rows as u32, cols as u32], &pixels),
        pixels,
    )
}

fn labels_bytes(labels: &[u8]) -> Vec<u8> {
    idx_bytes(0x801, &[labels.len() as u32], labels)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

/// Writes a split in the MNIST layout; returns its pixels and labels.
fn write_split(dir: &Path, split: Split, count: usize, gz: bool) -> (Vec<u8>, Vec<u8>) {
    let (img, pixels) = images_bytes(count, 28, 28);
    let labels: Vec<u8> = (0..count).map(|i| (i * 3 % 10) as u8).collect();
    let (iname, lname) = split.file_names();
    let ext = if gz { ".gz" } else { "" };
    let pack = |b: Vec<u8>| if gz { gzip(&b) } else { b };
    write(&dir.join(format!("{iname}{ext}")), &pack(img));
    write(
        &dir.join(format!("{lname}{ext}")),
        &pack(labels_bytes(&labels)),
    );
    (pixels, labels)
}

#[track_caller]
fn format_err(r: wgrad::Result<impl std::fmt::Debug>, needles: &[&str]) -> String {
    let e = r.expect_err("expected an error");
    assert!(matches!(e, Error::Format { .. }), "not a Format error: {e}");
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "expected {n:?} in: {msg}");
    }
    msg
}

#[test]
fn gzip_and_plain_idx_files_load_with_their_shapes_values_and_labels() {
    let dir = tmp_dir("good");
    let (img, pixels) = images_bytes(3, 4, 5);
    let labels = [7u8, 0, 9];
    for gz in [false, true] {
        let pack = |b: &[u8]| if gz { gzip(b) } else { b.to_vec() };
        // The format is recognised by content, not by name: no `.gz` needed.
        let ip = write(&dir.join(format!("img-{gz}")), &pack(&img));
        let lp = write(
            &dir.join(format!("lab-{gz}")),
            &pack(&labels_bytes(&labels)),
        );

        let images = load_idx_images(&ip).unwrap();
        assert_eq!(
            images,
            IdxImages {
                count: 3,
                rows: 4,
                cols: 5,
                pixels: pixels.clone()
            }
        );
        assert_eq!(load_idx_labels(&lp).unwrap(), labels);

        let ds = load_idx_classification(&ip, &lp, 10).unwrap();
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.feature_shape(), [1, 4, 5]);
        assert_eq!(ds.labels().unwrap(), [7, 0, 9]);
        let want: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
        assert_eq!(ds.features(), want.as_slice());
        assert!(ds.features().iter().all(|v| (0.0..=1.0).contains(v)));
        let (x1, _) = ds.get(1);
        assert_eq!(x1, want[20..40]);
    }
}

#[test]
fn fashion_mnist_load_from_reads_a_folder_in_the_mnist_layout() {
    assert_eq!(CLASS_NAMES.len(), 10);
    assert_eq!(CLASS_NAMES[0], "T-shirt/top");
    assert_eq!(CLASS_NAMES[9], "Ankle boot");
    for gz in [true, false] {
        let dir = tmp_dir(&format!("layout-{gz}"));
        let (train_px, train_lab) = write_split(&dir, Split::Train, 5, gz);
        let (test_px, test_lab) = write_split(&dir, Split::Test, 2, gz);
        for (split, px, lab) in [
            (Split::Train, train_px, train_lab),
            (Split::Test, test_px, test_lab),
        ] {
            let ds = fashion_mnist::load_from(&dir, split).unwrap();
            assert_eq!(ds.len(), lab.len(), "{split:?}");
            assert_eq!(ds.feature_shape(), [1, 28, 28]);
            let labels: Vec<u32> = lab.iter().map(|&l| l as u32).collect();
            assert_eq!(ds.labels().unwrap(), labels);
            assert_eq!(ds.features()[100], px[100] as f32 / 255.0);
            // The general loader reads the same folder.
            assert_eq!(
                load_idx_split(&dir, split, 10).unwrap().features(),
                ds.features()
            );
        }
    }
}

#[test]
fn a_wrong_magic_number_is_a_format_error_that_names_both_numbers() {
    let dir = tmp_dir("magic");
    let labels = write(&dir.join("labels"), &labels_bytes(&[1, 2, 3]));
    let (img, _) = images_bytes(3, 2, 2);
    let images = write(&dir.join("images"), &img);

    // Labels read as images and the other way round: a hint about swapped files.
    format_err(
        load_idx_images(&labels),
        &[
            "labels",
            "bad magic number 0x00000801, expected 0x00000803",
            "swapped",
        ],
    );
    format_err(
        load_idx_labels(&images),
        &[
            "bad magic number 0x00000803, expected 0x00000801",
            "swapped",
        ],
    );
    format_err(load_idx_classification(&labels, &images, 10), &["swapped"]);

    // Not IDX at all.
    let text = write(&dir.join("text.gz"), b"hello, world\n");
    format_err(
        load_idx_labels(&text),
        &["bad magic number 0x68656c6c", "not an IDX file"],
    );
    // IDX, but floats.
    let floats = write(&dir.join("floats"), &idx_bytes(0x0D03, &[1, 1, 1], &[0; 4]));
    format_err(load_idx_images(&floats), &["f32", "0x00000d03"]);
    // Too short for a header.
    let short = write(&dir.join("short"), &[0, 0]);
    format_err(load_idx_labels(&short), &["too short for an IDX header"]);
}

#[test]
fn truncated_files_are_format_errors() {
    let dir = tmp_dir("truncated");
    let (img, _) = images_bytes(4, 3, 3);

    // Missing data, plain and compressed.
    let cut = &img[..img.len() - 5];
    let p = write(&dir.join("cut"), cut);
    format_err(
        load_idx_images(&p),
        &[
            "truncated",
            "4 x 3 x 3 = 36 bytes of data",
            "holds 31",
            "download it again",
        ],
    );
    let p = write(&dir.join("cut.gz"), &gzip(cut));
    format_err(load_idx_images(&p), &["truncated", "holds 31"]);

    // Missing dimension sizes.
    let p = write(&dir.join("header"), &img[..9]);
    format_err(load_idx_images(&p), &["truncated header", "need 16 bytes"]);

    // A gzip stream cut short.
    let z = gzip(&img);
    let p = write(&dir.join("stream.gz"), &z[..z.len() / 2]);
    format_err(load_idx_images(&p), &["not a complete gzip stream"]);

    // Labels too.
    let lab = labels_bytes(&[1, 2, 3, 4]);
    let p = write(&dir.join("labels"), &lab[..lab.len() - 1]);
    format_err(
        load_idx_labels(&p),
        &["truncated", "4 bytes of data", "holds 3"],
    );
}

#[test]
fn bytes_after_the_data_are_a_format_error() {
    let dir = tmp_dir("trailing");
    let mut lab = labels_bytes(&[1, 2, 3]);
    lab.extend_from_slice(b"junk");
    let p = write(&dir.join("labels.gz"), &gzip(&lab));
    format_err(
        load_idx_labels(&p),
        &["4 unexpected bytes after the 3 bytes of data"],
    );
}

#[test]
fn a_gzip_bomb_is_read_only_as_far_as_its_header_promises() {
    // 3 labels, then 80 MiB of zeros: about 80 KiB on disk. The reader takes the 3
    // bytes the header promises and counts the rest without keeping it (it used to
    // inflate the whole stream into memory before looking at the header).
    let dir = tmp_dir("bomb");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&labels_bytes(&[1, 2, 3])).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..80 {
        enc.write_all(&zeros).unwrap();
    }
    let z = enc.finish().unwrap();
    assert!(z.len() < 1 << 20, "{} bytes compressed", z.len());
    let p = write(&dir.join("bomb.gz"), &z);
    format_err(
        load_idx_labels(&p),
        &["more than 64 MiB of unexpected bytes after the 3 bytes of data"],
    );
}

#[test]
fn image_and_label_counts_must_match() {
    let dir = tmp_dir("counts");
    let (img, _) = images_bytes(3, 2, 2);
    let ip = write(&dir.join("images.gz"), &gzip(&img));
    let lp = write(&dir.join("labels.gz"), &gzip(&labels_bytes(&[1, 2])));
    format_err(
        load_idx_classification(&ip, &lp, 10),
        &["2 labels", "holds 3 images", "do not belong together"],
    );

    // The same through the Fashion-MNIST loader: a test split with one label too many.
    let dir = tmp_dir("counts-fashion");
    write_split(&dir, Split::Test, 3, true);
    write(
        &dir.join("t10k-labels-idx1-ubyte.gz"),
        &gzip(&labels_bytes(&[1, 2, 3, 4])),
    );
    format_err(
        fashion_mnist::load_from(&dir, Split::Test),
        &["t10k-labels-idx1-ubyte.gz", "4 labels", "holds 3 images"],
    );
}

#[test]
fn a_label_out_of_range_is_a_format_error() {
    let dir = tmp_dir("range");
    let (img, _) = images_bytes(2, 2, 2);
    let ip = write(&dir.join("images"), &img);
    let lp = write(&dir.join("labels"), &labels_bytes(&[3, 10]));
    format_err(
        load_idx_classification(&ip, &lp, 10),
        &["label 10 at index 1", "0..10"],
    );
}

#[test]
fn fashion_mnist_rejects_images_that_are_not_28_by_28() {
    let dir = tmp_dir("size");
    let (img, _) = images_bytes(2, 32, 32);
    write(&dir.join("train-images-idx3-ubyte.gz"), &gzip(&img));
    write(
        &dir.join("train-labels-idx1-ubyte.gz"),
        &gzip(&labels_bytes(&[0, 1])),
    );
    format_err(
        fashion_mnist::load_from(&dir, Split::Train),
        &["[1, 32, 32]", "[1, 28, 28]"],
    );
}

#[test]
fn a_missing_file_is_an_io_error_that_says_how_to_get_the_data() {
    let dir = tmp_dir("missing");
    let e = fashion_mnist::load_from(&dir, Split::Test).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Io { .. }), "{msg}");
    for needle in [
        "t10k-images-idx3-ubyte.gz",
        "not found",
        "apt-get install dataset-fashion-mnist",
        "/usr/share/datasets/fashion-mnist",
        "pass a folder holding the four files",
    ] {
        assert!(msg.contains(needle), "expected {needle:?} in: {msg}");
    }

    // Images there, labels not: the message names the labels file.
    write_split(&dir, Split::Train, 2, true);
    std::fs::remove_file(dir.join("train-labels-idx1-ubyte.gz")).unwrap();
    let msg = fashion_mnist::load_from(&dir, Split::Train)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("train-labels-idx1-ubyte.gz") && msg.contains("apt-get install"),
        "{msg}"
    );

    // The low-level readers report the system's error.
    let e = load_idx_images(dir.join("absent")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("absent"), "{e}");
}
