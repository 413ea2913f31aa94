//! Configuration errors that say where and what.

use std::fmt;

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// A key is missing, unknown, of the wrong type or holds a bad value.
    #[error("{at}: {path}: {message}")]
    Invalid {
        /// File, and line and column where known.
        at: Location,
        /// Dotted key path, `.` for the document itself.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Where in which file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name as given.
    pub file: String,
    /// 1-based line and column, when the parser knows them.
    pub line_col: Option<(usize, usize)>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_col {
            Some((l, c)) => write!(f, "{}:{l}:{c}", self.file),
            None => write!(f, "{}", self.file),
        }
    }
}

impl ConfigError {
    /// An invalid value at `path` in `file`, without a line number.
    pub fn invalid(file: &str, path: &str, message: impl fmt::Display) -> Self {
        ConfigError::Invalid {
            at: Location {
                file: file.to_string(),
                line_col: None,
            },
            path: path.to_string(),
            message: message.to_string(),
        }
    }
}

/// Deserializes YAML text into `T`, turning serde's error into a
/// [`ConfigError`] with the key path and the line.
pub fn from_yaml<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T, ConfigError> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line_col = inner.location().map(|l| (l.line(), l.column()));
        let mut message = inner.to_string();
        // The YAML error repeats the location at the end; it is already in front.
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        // Nested errors start with (part of) the path again.
        if let Some((head, rest)) = message.split_once(": ")
            && path.starts_with(head)
        {
            message = rest.to_string();
        }
        ConfigError::Invalid {
            at: Location {
                file: file.to_string(),
                line_col,
            },
            path,
            message,
        }
    })
}

/// A configuration file as read: its text, its name for errors, and the
/// folder paths inside it are relative to.
pub(crate) struct ConfigText<'a> {
    pub(crate) text: String,
    pub(crate) file: String,
    pub(crate) base: &'a std::path::Path,
}

/// The largest configuration file read (a million SAs fit in a few
/// hundred MB); a path to something endless (`/dev/zero`) is refused at
/// this size instead of eating memory.
pub(crate) const MAX_CONFIG_BYTES: u64 = 1 << 30;
/// The largest key file read.
pub(crate) const MAX_KEY_BYTES: u64 = 4096;

/// Reads a text file of at most `limit` bytes.
pub(crate) fn read_bounded(path: &std::path::Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(text)
}

/// Reads a configuration file, or says which one could not be read.
pub(crate) fn read_config(path: &std::path::Path) -> Result<ConfigText<'_>, ConfigError> {
    let file = path.display().to_string();
    let text = read_bounded(path, MAX_CONFIG_BYTES).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    Ok(ConfigText {
        text,
        file,
        base: path.parent().unwrap_or(std::path::Path::new(".")),
    })
}
