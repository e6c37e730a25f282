//! Seeded mutation fuzzing of the file readers: safetensors (`io::read_safetensors`,
//! `io::load`) and IDX (`data::idx`). Valid files are damaged (bit flips, random bytes,
//! truncation, appended garbage, edited header lengths, magic numbers and dimensions,
//! edited JSON headers: dtypes, shapes, offsets, huge numbers) and read back. Every case
//! must return without panicking, as an error or as exactly what an independent parse of
//! the damaged file says it holds; a failed `io::load` leaves the model bit-identical.
//!
//! `WGRAD_FUZZ_CASES` sets the number of cases, split evenly between the two readers
//! (default 2,000); `WGRAD_FUZZ_SEED` changes the seed (default 0). A failing case
//! prints its seed and number, which replays it.

use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use wgrad::data::idx::{load_idx_classification, load_idx_images, load_idx_labels};
use wgrad::data::Dataset;
use wgrad::nn::{BatchNorm1d, Linear, Module, ReLU, Sequential};
use wgrad::prelude::*;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Cases per reader.
fn cases() -> usize {
    env_usize("WGRAD_FUZZ_CASES", 2_000).div_ceil(2)
}

fn seed() -> u64 {
    env_usize("WGRAD_FUZZ_SEED", 0) as u64
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgrad-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A number a header might be edited to: small, off by one, or huge.
fn edge_number(rng: &mut StdRng, near: u64) -> u64 {
    match rng.random_range(0..9) {
        0 => 0,
        1 => 1,
        2 => near.wrapping_add(1),
        3 => near.wrapping_sub(1),
        4 => u64::MAX,
        5 => u64::MAX / 2 + 1,
        6 => 1 << rng.random_range(16..64),
        7 => u32::MAX as u64,
        _ => rng.random_range(0..1 << 20),
    }
}

/// Damages `bytes` in place with one of the generic mutations.
fn mutate_bytes(rng: &mut StdRng, bytes: &mut Vec<u8>) {
    match rng.random_range(0..5) {
        0 if !bytes.is_empty() => {
            for _ in 0..rng.random_range(1..5) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] ^= 1 << rng.random_range(0..8);
            }
        }
        1 if !bytes.is_empty() => {
            for _ in 0..rng.random_range(1..5) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
        }
        2 => {
            let at = rng.random_range(0..=bytes.len());
            bytes.truncate(at);
        }
        3 => {
            for _ in 0..rng.random_range(1..64) {
                bytes.push(rng.random());
            }
        }
        _ => {
            // A slice of the file repeated or dropped.
            if bytes.len() > 2 {
                let a = rng.random_range(0..bytes.len());
                let b = rng.random_range(a..bytes.len());
                if rng.random_bool(0.5) {
                    let piece = bytes[a..b].to_vec();
                    bytes.splice(b..b, piece);
                } else {
                    bytes.drain(a..b);
                }
            }
        }
    }
}

/// Runs `f`, failing the test (with the case named) if it panics.
fn no_panic<R>(what: &str, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: the reader panicked: {msg}")
        }
    }
}

// ---------------------------------------------------------------------------------
// safetensors

/// The model files are written from: f32 weights and biases, and BatchNorm's buffers
/// (including the `num_batches_tracked` counter that integer files may load into).
fn model() -> Sequential {
    let dev = Device::cpu();
    Sequential::new()
        .add(Linear::new(&dev, 4, 6))
        .add(ReLU)
        .add(BatchNorm1d::new(&dev, 6))
        .add(Linear::new(&dev, 6, 3))
}

/// Every state entry as (name, shape, value bits).
fn snapshot(m: &dyn Module) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    m.state_dict()
        .into_iter()
        .map(|(n, t)| {
            let bits = t
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect();
            (n, t.shape().to_vec(), bits)
        })
        .collect()
}

/// What a safetensors tensor holds, parsed independently of the crate under test:
/// (name, dtype as loaded, shape, values as u64 bit patterns of the loaded type).
type Parsed = Vec<(String, DType, Vec<usize>, Vec<u64>)>;

/// The independent parse: `None` when the file is not a valid safetensors file (by the
/// format's rules: little-endian u64 header length of at most 100 MB, a JSON object of
/// `{dtype, shape, data_offsets}` entries plus optional `__metadata__` of strings,
/// offsets contiguous from 0 in file order and covering exactly the rest of the file,
/// each tensor's bytes matching its shape and dtype), or `Some(Err)` when it is valid
/// but holds something wgrad does not read (another dtype, an integer outside u32).
fn parse(bytes: &[u8]) -> Option<std::result::Result<Parsed, String>> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    if n > 100_000_000 {
        return None;
    }
    let header = bytes.get(8..8usize.checked_add(n as usize)?)?;
    let data = &bytes[8 + n as usize..];
    let json: serde_json::Map<String, Value> = serde_json::from_slice(header).ok()?;
    let mut entries = Vec::new();
    for (name, v) in &json {
        if name == "__metadata__" {
            if !v.as_object()?.values().all(Value::is_string) {
                return None;
            }
            continue;
        }
        let obj = v.as_object()?;
        let dtype = obj.get("dtype")?.as_str()?.to_string();
        let shape: Vec<usize> = obj
            .get("shape")?
            .as_array()?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()?;
        let off = obj.get("data_offsets")?.as_array()?;
        if off.len() != 2 {
            return None;
        }
        let (s, e) = (off[0].as_u64()? as usize, off[1].as_u64()? as usize);
        entries.push((name.clone(), dtype, shape, s, e));
    }
    // Contiguous offsets from 0, in the order of their start.
    entries.sort_by_key(|e| (e.3, e.4));
    let mut at = 0;
    for (_, dtype, shape, s, e) in &entries {
        let bits = match dtype.as_str() {
            "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" | "F8_E4M3FNUZ"
            | "F8_E5M2FNUZ" => 8,
            "I16" | "U16" | "F16" | "BF16" => 16,
            "I32" | "U32" | "F32" => 32,
            "I64" | "U64" | "F64" | "C64" => 64,
            "F4" => 4,
            "F6_E2M3" | "F6_E3M2" => 6,
            _ => return None,
        };
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        let nbits = count.checked_mul(bits)?;
        if *s != at || e < s || nbits % 8 != 0 || e - s != nbits / 8 {
            return None;
        }
        at = *e;
    }
    if at != data.len() {
        return None;
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (name, dtype, shape, s, e) in entries {
        let raw = &data[s..e];
        let (dt, values): (DType, Vec<u64>) = match dtype.as_str() {
            "F32" => (DType::F32, words::<4>(raw)),
            "U32" => (DType::U32, words::<4>(raw)),
            "F64" => (DType::F64, words::<8>(raw)),
            "F16" => (DType::F16, words::<2>(raw)),
            "BF16" => (DType::BF16, words::<2>(raw)),
            "I32" | "I64" => {
                let signed: Vec<i64> = if dtype == "I32" {
                    words::<4>(raw)
                        .iter()
                        .map(|&w| w as u32 as i32 as i64)
                        .collect()
                } else {
                    words::<8>(raw).iter().map(|&w| w as i64).collect()
                };
                if signed.iter().any(|&v| u32::try_from(v).is_err()) {
                    return Some(Err(format!("{name}: an integer outside u32")));
                }
                (DType::U32, signed.iter().map(|&v| v as u64).collect())
            }
            other => return Some(Err(format!("{name}: dtype {other}"))),
        };
        if shape.len() > wgrad::shape::MAX_RANK {
            return Some(Err(format!("{name}: rank {}", shape.len())));
        }
        out.push((name, dt, shape, values));
    }
    Some(Ok(out))
}

/// Little-endian `W`-byte words of `raw` as u64.
fn words<const W: usize>(raw: &[u8]) -> Vec<u64> {
    raw.chunks_exact(W)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..W].copy_from_slice(c);
            u64::from_le_bytes(b)
        })
        .collect()
}

/// A tensor's values as u64 bit patterns of its dtype.
fn tensor_words(t: &Tensor) -> Vec<u64> {
    match t.dtype() {
        DType::F32 => t
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits() as u64)
            .collect(),
        DType::F64 => t
            .to_vec::<f64>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect(),
        DType::U32 => t
            .to_vec::<u32>()
            .unwrap()
            .iter()
            .map(|&x| x as u64)
            .collect(),
        DType::F16 => t
            .to_vec::<wgrad::half::f16>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits() as u64)
            .collect(),
        DType::BF16 => t
            .to_vec::<wgrad::half::bf16>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits() as u64)
            .collect(),
    }
}

/// The JSON header and the data of a valid file.
fn split_file(bytes: &[u8]) -> (serde_json::Map<String, Value>, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let json = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (json, bytes[8 + n..].to_vec())
}

fn join_file(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out
}

/// One damaged copy of the valid file `orig`.
fn mutate_safetensors(rng: &mut StdRng, orig: &[u8]) -> Vec<u8> {
    let (mut json, mut data) = split_file(orig);
    let names: Vec<String> = json
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    match rng.random_range(0..10) {
        // Generic damage anywhere.
        0..=2 => {
            let mut bytes = orig.to_vec();
            for _ in 0..rng.random_range(1..3) {
                mutate_bytes(rng, &mut bytes);
            }
            bytes
        }
        // Bit flips in the data only: a valid file with other values.
        3 => {
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..data.len());
                data[i] ^= 1 << rng.random_range(0..8);
            }
            join_file(&serde_json::to_vec(&json).unwrap(), &data)
        }
        // The header length field.
        4 => {
            let mut bytes = orig.to_vec();
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
            let v = edge_number(rng, n);
            bytes[..8].copy_from_slice(&v.to_le_bytes());
            bytes
        }
        // Edits inside the JSON header, re-serialised with a matching length field.
        5..=8 => {
            let name = &names[rng.random_range(0..names.len())];
            let entry = json.get_mut(name).unwrap().as_object_mut().unwrap();
            match rng.random_range(0..8) {
                0 => {
                    let dtypes = [
                        "F32", "F64", "U32", "I32", "I64", "F16", "BF16", "U8", "I8", "BOOL",
                        "U64", "F8_E4M3", "F4", "C64", "f32", "", "XYZ",
                    ];
                    entry["dtype"] = dtypes[rng.random_range(0..dtypes.len())].into();
                }
                1 => {
                    let shape = entry["shape"].as_array_mut().unwrap();
                    if shape.is_empty() {
                        shape.push(edge_number(rng, 1).into());
                    } else {
                        let i = rng.random_range(0..shape.len());
                        let near = shape[i].as_u64().unwrap();
                        shape[i] = edge_number(rng, near).into();
                    }
                }
                2 => {
                    // The same elements in another shape, more or fewer dimensions.
                    let shape = entry["shape"].as_array_mut().unwrap();
                    if rng.random_bool(0.5) {
                        for _ in 0..rng.random_range(1..12) {
                            shape.push(1.into());
                        }
                    } else if !shape.is_empty() {
                        let d = shape.remove(0).as_u64().unwrap();
                        if let Some(first) = shape.first_mut() {
                            *first = (first.as_u64().unwrap() * d).into();
                        }
                    }
                }
                3 => {
                    let off = entry["data_offsets"].as_array_mut().unwrap();
                    let i = rng.random_range(0..2);
                    let near = off[i].as_u64().unwrap();
                    off[i] = edge_number(rng, near).into();
                }
                4 => {
                    let values = [
                        Value::Null,
                        (-1).into(),
                        1.5.into(),
                        "8".into(),
                        Value::Array(vec![]),
                        Value::Array(vec![0.into(), 1.into(), 2.into()]),
                        serde_json::json!({}),
                    ];
                    let keys = ["dtype", "shape", "data_offsets"];
                    let key = keys[rng.random_range(0..3)];
                    if rng.random_bool(0.2) {
                        entry.remove(key);
                    } else {
                        entry[key] = values[rng.random_range(0..values.len())].clone();
                    }
                }
                5 => {
                    let v = json.remove(name).unwrap();
                    if rng.random_bool(0.5) {
                        json.insert(format!("{name}x"), v);
                    }
                }
                6 => {
                    json.insert(
                        "__metadata__".into(),
                        if rng.random_bool(0.5) {
                            serde_json::json!({"format": "pt"})
                        } else {
                            serde_json::json!({"format": 3})
                        },
                    );
                }
                _ => {
                    // Two tensors swap offsets (or a tensor takes another's).
                    let other = names[rng.random_range(0..names.len())].clone();
                    let a = json[name]["data_offsets"].clone();
                    let b = json[&other]["data_offsets"].clone();
                    json[name]["data_offsets"] = b;
                    if rng.random_bool(0.5) {
                        json[&other]["data_offsets"] = a;
                    }
                }
            }
            let mut header = serde_json::to_vec(&json).unwrap();
            // Padding as the format allows, sometimes.
            if rng.random_bool(0.2) {
                header.extend(std::iter::repeat_n(b' ', rng.random_range(1..8)));
            }
            join_file(&header, &data)
        }
        // Numbers in the header text replaced by huge, negative or fractional ones.
        _ => {
            let mut text = String::from_utf8(orig[8..orig.len() - data.len()].to_vec()).unwrap();
            let digits: Vec<usize> = text
                .char_indices()
                .filter(|(_, c)| c.is_ascii_digit())
                .map(|(i, _)| i)
                .collect();
            let at = digits[rng.random_range(0..digits.len())];
            let repl = [
                "18446744073709551616",
                "99999999999999999999999",
                "1e400",
                "-1",
                "0.5",
                "9223372036854775807",
                "4294967296",
                "00",
            ];
            text.replace_range(at..at + 1, repl[rng.random_range(0..repl.len())]);
            join_file(text.as_bytes(), &data)
        }
    }
}

/// Reads one damaged file with `read_safetensors` and with `io::load`, checking both
/// against the independent parse. Returns whether `io::load` loaded it.
fn check_safetensors_case(bytes: &[u8], path: &Path, what: &str) -> bool {
    std::fs::write(path, bytes).unwrap();
    let expected = parse(bytes);
    let read = no_panic(what, || wgrad::io::read_safetensors(path, &Device::cpu()));
    match (&read, &expected) {
        (Ok(got), Some(Ok(want))) => {
            assert_eq!(got.len(), want.len(), "{what}: tensor count");
            for ((n, t), (wn, wdt, wshape, wvals)) in got.iter().zip(want) {
                assert_eq!(n, wn, "{what}: names");
                assert_eq!(t.dtype(), *wdt, "{what}: {n} dtype");
                assert_eq!(t.shape(), &wshape[..], "{what}: {n} shape");
                assert!(tensor_words(t) == *wvals, "{what}: {n} values");
            }
        }
        (Ok(got), _) => panic!(
            "{what}: read_safetensors accepted a file the format refuses ({} tensors)",
            got.len()
        ),
        (Err(e), Some(Ok(_))) => panic!("{what}: read_safetensors refused a valid file: {e}"),
        (Err(_), _) => {}
    }

    let m = model();
    let before = snapshot(&m);
    let loaded = no_panic(what, || wgrad::io::load(&m, path));
    let after = snapshot(&m);
    match loaded {
        Err(_) => {
            assert!(before == after, "{what}: a failed load changed the model");
            false
        }
        Ok(()) => {
            // Exactly the file's values (an integer counter converted to f32).
            let Some(Ok(want)) = expected else {
                panic!("{what}: io::load accepted a file the format refuses")
            };
            for (name, shape, bits) in &after {
                let (_, dt, wshape, wvals) = want.iter().find(|w| &w.0 == name).unwrap();
                assert_eq!(shape, wshape, "{what}: {name} shape");
                let wbits: Vec<u32> = match dt {
                    DType::F32 => wvals.iter().map(|&v| v as u32).collect(),
                    DType::U32 => wvals.iter().map(|&v| (v as f32).to_bits()).collect(),
                    DType::F64 | DType::F16 | DType::BF16 => {
                        panic!("{what}: {name} loaded from {dt:?} into f32 parameters")
                    }
                };
                assert!(
                    *bits == wbits,
                    "{what}: {name} holds other values than the file"
                );
            }
            true
        }
    }
}

#[test]
fn damaged_safetensors_files_are_refused_or_read_exactly() {
    let path = tmp("case.safetensors");
    // The valid file: trained-looking values, and a counter that is not zero.
    let source = model();
    let dev = Device::cpu();
    source.train();
    source
        .forward(&Tensor::randn_seeded(&[5, 4], 3, &dev).unwrap())
        .unwrap();
    wgrad::io::save(&source, &path).unwrap();
    let orig = std::fs::read(&path).unwrap();
    assert!(check_safetensors_case(&orig, &path, "the valid file"));

    let n = cases();
    let mut rng = StdRng::seed_from_u64(seed());
    let (mut loaded, mut refused) = (0, 0);
    for case in 0..n {
        let bytes = mutate_safetensors(&mut rng, &orig);
        let what = format!("safetensors case {case} (seed {})", seed());
        if check_safetensors_case(&bytes, &path, &what) {
            loaded += 1;
        } else {
            refused += 1;
        }
    }
    println!("safetensors: {n} damaged files, {loaded} loaded exactly, {refused} refused");
    // The mix must exercise both outcomes.
    assert!(
        loaded > n / 50 && refused > n / 2,
        "{loaded} loaded, {refused} refused"
    );
}

// ---------------------------------------------------------------------------------
// IDX

/// The independent parse of an IDX file of unsigned bytes with magic `magic`: its
/// dimensions and data, or `None`.
fn parse_idx(bytes: &[u8], magic: u32) -> Option<(Vec<usize>, Vec<u8>)> {
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .ok()?;
        out
    } else {
        bytes.to_vec()
    };
    if u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) != magic {
        return None;
    }
    let ndims = (magic & 0xff) as usize;
    let dims: Vec<usize> = bytes
        .get(4..4 + 4 * ndims)?
        .chunks(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()) as usize)
        .collect();
    let len = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    let data = &bytes[4 + 4 * ndims..];
    (data.len() == len).then(|| (dims, data.to_vec()))
}

fn idx_file(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// One damaged copy of the valid IDX file `orig` (`ndims` dimensions): header edits,
/// generic damage, and sometimes gzip before or after the damage.
fn mutate_idx(rng: &mut StdRng, orig: &[u8], ndims: usize) -> Vec<u8> {
    let mut bytes = orig.to_vec();
    match rng.random_range(0..6) {
        0 => {
            let magics = [
                0x801u32,
                0x803,
                0x802,
                0x804,
                0x80d,
                0x903,
                0x1f8b_0803,
                rng.random(),
            ];
            let m = magics[rng.random_range(0..magics.len())];
            bytes[..4].copy_from_slice(&m.to_be_bytes());
        }
        1 => bytes[3] = rng.random(),
        2 | 3 => {
            let i = rng.random_range(0..ndims);
            let at = 4 + 4 * i;
            let near = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as u64;
            let v = edge_number(rng, near) as u32;
            bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
        }
        _ => mutate_bytes(rng, &mut bytes),
    }
    match rng.random_range(0..6) {
        0 => gzip(&bytes),
        1 => {
            let mut gz = gzip(orig);
            mutate_bytes(rng, &mut gz);
            gz
        }
        _ => bytes,
    }
}

fn check_idx_case(images: &[u8], labels: &[u8], dir: (&Path, &Path), what: &str) -> bool {
    std::fs::write(dir.0, images).unwrap();
    std::fs::write(dir.1, labels).unwrap();
    let want_img = parse_idx(images, 0x803);
    let want_lab = parse_idx(labels, 0x801);

    let got = no_panic(what, || load_idx_images(dir.0));
    match (&got, &want_img) {
        (Ok(g), Some((dims, data))) => {
            assert_eq!([g.count, g.rows, g.cols], dims[..], "{what}: image dims");
            assert!(g.pixels == *data, "{what}: pixels");
        }
        (Err(_), None) => {}
        (Ok(_), None) => panic!("{what}: load_idx_images accepted a damaged file"),
        (Err(e), Some(_)) => panic!("{what}: load_idx_images refused a valid file: {e}"),
    }
    let got = no_panic(what, || load_idx_labels(dir.1));
    match (&got, &want_lab) {
        (Ok(g), Some((_, data))) => assert!(g == data, "{what}: labels"),
        (Err(_), None) => {}
        (Ok(_), None) => panic!("{what}: load_idx_labels accepted a damaged file"),
        (Err(e), Some(_)) => panic!("{what}: load_idx_labels refused a valid file: {e}"),
    }

    let set = no_panic(what, || load_idx_classification(dir.0, dir.1, 10));
    let fits = match (&want_img, &want_lab) {
        (Some((dims, _)), Some((_, lab))) => dims[0] == lab.len() && lab.iter().all(|&l| l < 10),
        _ => false,
    };
    match set {
        Ok(set) => {
            assert!(
                fits,
                "{what}: load_idx_classification accepted damaged files"
            );
            let (dims, pixels) = want_img.unwrap();
            let labels = want_lab.unwrap().1;
            assert_eq!(set.len(), dims[0], "{what}: dataset length");
            assert_eq!(set.feature_shape(), [1, dims[1], dims[2]], "{what}");
            let features: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
            assert!(set.features() == features, "{what}: features");
            let want: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
            assert_eq!(set.labels(), Some(want), "{what}: labels");
            true
        }
        Err(e) => {
            assert!(
                !fits,
                "{what}: load_idx_classification refused valid files: {e}"
            );
            false
        }
    }
}

#[test]
fn damaged_idx_files_are_refused_or_read_exactly() {
    let (count, rows, cols) = (3u32, 4u32, 5u32);
    let pixels: Vec<u8> = (0..count * rows * cols)
        .map(|i| (i * 37 % 256) as u8)
        .collect();
    let images = idx_file(0x803, &[count, rows, cols], &pixels);
    let labels = idx_file(0x801, &[count], &[7, 0, 9]);
    let paths = (tmp("images-idx3-ubyte"), tmp("labels-idx1-ubyte"));
    let paths = (paths.0.as_path(), paths.1.as_path());
    assert!(check_idx_case(&images, &labels, paths, "the valid files"));
    assert!(check_idx_case(
        &gzip(&images),
        &gzip(&labels),
        paths,
        "the gzipped files"
    ));

    let n = cases();
    let mut rng = StdRng::seed_from_u64(seed() ^ 0x1D8);
    let (mut loaded, mut refused) = (0, 0);
    for case in 0..n {
        let what = format!("IDX case {case} (seed {})", seed());
        // Damage the images, the labels, or both.
        let which = rng.random_range(0..3);
        let img = if which != 1 {
            mutate_idx(&mut rng, &images, 3)
        } else {
            images.clone()
        };
        let lab = if which != 0 {
            mutate_idx(&mut rng, &labels, 1)
        } else {
            labels.clone()
        };
        if check_idx_case(&img, &lab, paths, &what) {
            loaded += 1;
        } else {
            refused += 1;
        }
    }
    println!("IDX: {n} damaged image/label pairs, {loaded} loaded exactly, {refused} refused");
    assert!(
        loaded > n / 50 && refused > n / 2,
        "{loaded} loaded, {refused} refused"
    );
}
