//! Optimizer state as named tensors and scalars, and the checks that run before a state
//! is loaded.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A hyper-parameter, step count or flag of an optimizer's state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    /// A real hyper-parameter (learning rate, momentum...).
    F64(f64),
    /// A count (Adam's step).
    U64(u64),
    /// A flag (Nesterov, a momentum buffer's first step done).
    Bool(bool),
}

impl Scalar {
    /// The value as an `f64`: a real, or a count (a file cannot tell `1.0` from `1`).
    pub fn as_f64(self) -> Option<f64> {
        match self {
            Scalar::F64(v) => Some(v),
            Scalar::U64(v) => Some(v as f64),
            Scalar::Bool(_) => None,
        }
    }
    /// The value as a count.
    pub fn as_u64(self) -> Option<u64> {
        match self {
            Scalar::U64(v) => Some(v),
            _ => None,
        }
    }
    /// The value as a flag.
    pub fn as_bool(self) -> Option<bool> {
        match self {
            Scalar::Bool(v) => Some(v),
            _ => None,
        }
    }
    /// Parses the text [`Scalar`]'s `Display` writes (`true`, `42`, `0.1`, `NaN`).
    pub fn parse(text: &str) -> Option<Scalar> {
        match text {
            "true" => Some(Scalar::Bool(true)),
            "false" => Some(Scalar::Bool(false)),
            _ => text
                .parse::<u64>()
                .map(Scalar::U64)
                .ok()
                .or_else(|| text.parse::<f64>().ok().map(Scalar::F64)),
        }
    }
}

impl std::fmt::Display for Scalar {
    /// The shortest text that parses back to the same value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::F64(v) => write!(f, "{v}"),
            Scalar::U64(v) => write!(f, "{v}"),
            Scalar::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// An optimizer's state, by PyTorch's names: per-parameter tensors and counts
/// (`state.0.momentum_buffer`, `state.2.exp_avg`, `state.2.step`) and the
/// hyper-parameters (`param_groups.0.lr`, `param_groups.0.betas.0`...). A checkpoint
/// stores the tensors as tensors and the scalars in the file's metadata.
#[derive(Clone, Debug, Default)]
pub struct OptimizerState {
    /// Tensors by name.
    pub tensors: Vec<(String, Tensor)>,
    /// Scalars by name.
    pub scalars: Vec<(String, Scalar)>,
}

impl OptimizerState {
    /// Adds a tensor.
    pub fn tensor(&mut self, name: impl Into<String>, t: Tensor) {
        self.tensors.push((name.into(), t));
    }
    /// Adds a scalar.
    pub fn scalar(&mut self, name: impl Into<String>, v: Scalar) {
        self.scalars.push((name.into(), v));
    }
    /// The parameter indices the per-parameter keys (`state.{i}.…`) name.
    fn indices(&self) -> BTreeSet<usize> {
        self.tensors
            .iter()
            .map(|(n, _)| n)
            .chain(self.scalars.iter().map(|(n, _)| n))
            .filter_map(|n| n.strip_prefix("state.")?.split('.').next()?.parse().ok())
            .collect()
    }
}

/// Reads an [`OptimizerState`] key by key, collecting every problem (missing and
/// unexpected keys, wrong kinds, shapes and dtypes) so that one error lists them all.
pub(crate) struct StateReader<'a> {
    state: &'a OptimizerState,
    used: BTreeSet<&'a str>,
    problems: Vec<String>,
}

impl<'a> StateReader<'a> {
    /// A reader of `state` for an optimizer of `params` parameters.
    pub(crate) fn new(state: &'a OptimizerState, params: usize) -> Self {
        let mut problems = Vec::new();
        let held = state.indices();
        if let Some(&last) = held.last() {
            if last + 1 != params {
                problems.push(format!(
                    "the state is for {} parameters, the optimizer has {params}",
                    last + 1
                ));
            }
        }
        StateReader {
            state,
            used: BTreeSet::new(),
            problems,
        }
    }

    fn scalar(&mut self, key: &str) -> Option<Scalar> {
        if let Some((n, v)) = self.state.scalars.iter().find(|(n, _)| n == key) {
            self.used.insert(n.as_str());
            return Some(*v);
        }
        // A count (or flag) kept on the device is a one-element tensor, as PyTorch's
        // `step`: read back, a count when it is a whole number.
        if let Some((n, t)) = self.state.tensors.iter().find(|(n, _)| n == key) {
            self.used.insert(n.as_str());
            return match t.to_f64_vec() {
                Ok(v) if v.len() == 1 => Some(match v[0] {
                    c if c >= 0.0 && c.fract() == 0.0 => Scalar::U64(c as u64),
                    x => Scalar::F64(x),
                }),
                Ok(v) => {
                    self.problems
                        .push(format!("{key}: a tensor of {} elements, not one", v.len()));
                    None
                }
                Err(e) => {
                    self.problems.push(format!("{key}: {e}"));
                    None
                }
            };
        }
        self.missing(key);
        None
    }

    /// Notes `key` as missing.
    pub(crate) fn missing(&mut self, key: &str) {
        self.problems.push(format!("missing key {key}"));
    }

    /// A real hyper-parameter (0 when missing or of the wrong kind; the problem is noted).
    pub(crate) fn f64(&mut self, key: &str) -> f64 {
        let v = self.scalar(key);
        v.and_then(Scalar::as_f64).unwrap_or_else(|| {
            if let Some(v) = v {
                self.problems
                    .push(format!("{key}: expected a number, got {v}"));
            }
            0.0
        })
    }

    /// A count (0 when missing or of the wrong kind).
    pub(crate) fn u64(&mut self, key: &str) -> u64 {
        let v = self.scalar(key);
        v.and_then(Scalar::as_u64).unwrap_or_else(|| {
            if let Some(v) = v {
                self.problems
                    .push(format!("{key}: expected a count, got {v}"));
            }
            0
        })
    }

    /// A flag (false when missing or of the wrong kind).
    pub(crate) fn bool(&mut self, key: &str) -> bool {
        let from_tensor = !self.state.scalars.iter().any(|(n, _)| n == key);
        let v = self.scalar(key);
        if from_tensor {
            // A flag kept on the device as a count: true past zero steps.
            if let Some(Scalar::U64(c)) = v {
                return c > 0;
            }
        }
        v.and_then(Scalar::as_bool).unwrap_or_else(|| {
            if let Some(v) = v {
                self.problems
                    .push(format!("{key}: expected true or false, got {v}"));
            }
            false
        })
    }

    /// True when the state has a tensor named `key`.
    pub(crate) fn has_tensor(&self, key: &str) -> bool {
        self.state.tensors.iter().any(|(n, _)| n == key)
    }

    /// The tensor `key`, which must be shaped and typed like `like`.
    pub(crate) fn tensor(&mut self, key: &str, like: &Tensor) -> Option<Tensor> {
        if !self.has_tensor(key) {
            self.missing(key);
            return None;
        }
        self.optional_tensor(key, like)
    }

    /// The tensor `key` if the state has it, which must be shaped and typed like `like`.
    pub(crate) fn optional_tensor(&mut self, key: &str, like: &Tensor) -> Option<Tensor> {
        let (n, t) = self.state.tensors.iter().find(|(n, _)| n == key)?;
        self.used.insert(n.as_str());
        if t.shape() != like.shape() {
            self.problems.push(format!(
                "{key}: shape {:?} in the state, {:?} for the parameter",
                t.shape(),
                like.shape()
            ));
            return None;
        }
        if t.dtype() != like.dtype() {
            self.problems.push(format!(
                "{key}: dtype {:?} in the state, {:?} for the parameter",
                t.dtype(),
                like.dtype()
            ));
            return None;
        }
        Some(t.clone())
    }

    /// Fails, listing every problem, unless all keys were read and fit.
    pub(crate) fn finish(mut self) -> Result<()> {
        let names = self
            .state
            .tensors
            .iter()
            .map(|(n, _)| n)
            .chain(self.state.scalars.iter().map(|(n, _)| n));
        for n in names {
            if !self.used.contains(n.as_str()) {
                self.problems.push(format!("unexpected key {n}"));
            }
        }
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(Error::StateDict(self.problems.join("; ")))
        }
    }
}
