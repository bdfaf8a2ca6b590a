//! One error type for the whole crate: every failure a user can cause is a value with a sentence.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong in brainsynth, each with enough context to say what and where.
#[derive(Debug)]
pub enum Error {
    /// Shapes that an op cannot combine; `op` names the op, `msg` the shapes involved.
    Shape { op: &'static str, msg: String },
    /// Tensors of different element types given to one op.
    DType { op: &'static str, msg: String },
    /// Tensors on different devices, or a device that is not available.
    Device { op: &'static str, msg: String },
    /// An argument outside its valid range (negative stride, zero groups, ...).
    Invalid { op: &'static str, msg: String },
    /// Autograd misuse (backward of a non-scalar without a seed, ...).
    Autograd(String),
    /// A file that could not be read or written.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file that was read but whose contents are wrong (malformed NIfTI, corrupt store, ...).
    Format { path: PathBuf, msg: String },
    /// A checkpoint that does not fit the model it is loaded into.
    Checkpoint { path: PathBuf, msg: String },
    /// Input data that is well-formed but unusable (empty dataset, no tumour slices, ...).
    Data(String),
    /// The CUDA driver, device or memory.
    Cuda(String),
    /// A run stopped by SIGINT/SIGTERM after saving its state; the message says how to resume.
    Interrupted(String),
}

impl Error {
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid {
            op,
            msg: msg.into(),
        }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape { op, msg } => write!(f, "{op}: incompatible shapes: {msg}"),
            Error::DType { op, msg } => write!(f, "{op}: element types differ: {msg}"),
            Error::Device { op, msg } => write!(f, "{op}: device problem: {msg}"),
            Error::Invalid { op, msg } => write!(f, "{op}: invalid argument: {msg}"),
            Error::Autograd(msg) => write!(f, "autograd: {msg}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Format { path, msg } => write!(f, "{}: {msg}", path.display()),
            Error::Checkpoint { path, msg } => write!(f, "checkpoint {}: {msg}", path.display()),
            Error::Data(msg) => write!(f, "data: {msg}"),
            Error::Cuda(msg) => write!(f, "CUDA: {msg}"),
            Error::Interrupted(msg) => write!(f, "interrupted: {msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
