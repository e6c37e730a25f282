//! The library's error type. Shape, dtype and device mistakes are found when an op is
//! called, before any kernel runs, and the message names the op and the shapes involved.

/// Everything that can go wrong in wgrad.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Shapes do not fit the op (`matmul: mat1 and mat2 shapes cannot be multiplied (32x64
    /// and 65x10)`).
    #[error("{op}: {msg}")]
    Shape {
        /// The op that refused the shapes.
        op: &'static str,
        /// What is wrong, naming the shapes.
        msg: String,
    },
    /// The tensors of one op live on different devices.
    #[error("{op}: tensors are on different devices ({a} and {b}); move one with `.to(&device)`")]
    DeviceMismatch {
        /// The op.
        op: &'static str,
        /// The first device.
        a: String,
        /// The second device.
        b: String,
    },
    /// The op does not accept the element type it was given.
    #[error("{op}: {msg}")]
    DType {
        /// The op.
        op: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// An argument outside its domain (a probability of 1.5, a dimension out of range).
    #[error("{op}: {msg}")]
    Argument {
        /// The op.
        op: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// Memory for a tensor cannot be had: more bytes than the device's largest buffer
    /// or than the allocator can give, or an element count that overflows.
    #[error("{op}: out of memory: {msg}")]
    OutOfMemory {
        /// The op (or `alloc`).
        op: &'static str,
        /// How much was asked for and what the limit is.
        msg: String,
    },
    /// No GPU adapter could be opened.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// The GPU failed while running or reading back work.
    #[error("GPU: {0}")]
    Gpu(String),
    /// Misuse of automatic differentiation (backward twice, backward from a non-scalar).
    #[error("autograd: {0}")]
    Autograd(String),

    /// A collective operation of data-parallel training failed (see
    /// [`crate::distributed`]).
    #[error("distributed: {0}")]
    Distributed(String),
    /// Parameters that do not fit a model (missing, unexpected, wrong shape or dtype).
    #[error("load_state_dict: {0}")]
    StateDict(String),
    /// A file that cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file whose contents are not what they should be (truncated, corrupt, wrong format).
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong with it.
        msg: String,
    },
}

/// `Result` with wgrad's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn shape_err<T>(op: &'static str, msg: impl Into<String>) -> Result<T> {
    Err(Error::Shape {
        op,
        msg: msg.into(),
    })
}

pub(crate) fn arg_err<T>(op: &'static str, msg: impl Into<String>) -> Result<T> {
    Err(Error::Argument {
        op,
        msg: msg.into(),
    })
}

pub(crate) fn oom_err<T>(op: &'static str, msg: impl Into<String>) -> Result<T> {
    Err(Error::OutOfMemory {
        op,
        msg: msg.into(),
    })
}
