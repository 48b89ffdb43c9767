//! Every way data can be wrong, each naming the file (and row) to look at.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "data set folder {path} does not exist (set SIM_DATA_DIR, or run `cargo xtask fetch-data`)"
    )]
    MissingRoot { path: PathBuf },
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}, row {row}: {message}")]
    Row {
        path: PathBuf,
        row: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("cannot decode image {path}: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("split of {dataset}: {message}")]
    Split { dataset: String, message: String },
    /// A setting of the study config that the data cannot meet; the message
    /// names the key.
    #[error("study config: {0}")]
    Setting(String),
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> DataError {
        DataError::Io {
            path: path.into(),
            error,
        }
    }

    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> DataError {
        DataError::File {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn row(path: impl Into<PathBuf>, row: usize, message: impl Into<String>) -> DataError {
        DataError::Row {
            path: path.into(),
            row,
            message: message.into(),
        }
    }
}
