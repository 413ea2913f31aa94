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
    /// 1-based line and column of the value at fault, when known: always
    /// for an error in a configuration text's contents, not for one about
    /// its use (an SA file's direction where the other is needed).
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
    /// An invalid value at `path` in `file`, without a line number (see
    /// [`ConfigError::placed_in`]).
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

    /// This error with the line and column its key path has in `text`, the
    /// YAML of `file`, if it is about `file` and has none yet: where the
    /// value at the path starts or, for a key that is missing, where the
    /// nearest entry or section holding it starts. The checks after
    /// reading know the key path only; the text is read again to find it.
    pub(crate) fn placed_in(self, text: &str, file: &str) -> Self {
        match self {
            ConfigError::Invalid {
                at:
                    Location {
                        file: at_file,
                        line_col: None,
                    },
                path,
                message,
            } if at_file == file => ConfigError::Invalid {
                at: Location {
                    line_col: line_col_of(text, &path),
                    file: at_file,
                },
                path,
                message,
            },
            other => other,
        }
    }
}

/// One step of a key path: a key of a mapping or an index into a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The steps of a key path as errors write it (`sas[2].mirror.quantity`;
/// `.` for the document); `None` for a path not written so.
fn steps(path: &str) -> Option<Vec<Step<'_>>> {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut indices) = part.split_once('[').map_or((part, ""), |(k, i)| (k, i));
        if !key.is_empty() {
            steps.push(Step::Key(key));
        }
        while !indices.is_empty() {
            let (index, rest) = indices.split_once(']')?;
            steps.push(Step::Index(index.parse().ok()?));
            indices = rest.strip_prefix('[').unwrap_or(rest);
        }
    }
    Some(steps)
}

/// The 1-based line and column where the value at `path` starts in `text`,
/// or the nearest value holding it that is there.
fn line_col_of(text: &str, path: &str) -> Option<(usize, usize)> {
    let steps = steps(path)?;
    (0..=steps.len()).rev().find_map(|n| {
        let e = serde::de::DeserializeSeed::deserialize(
            Probe(&steps[..n]),
            serde_norway::Deserializer::from_str(text),
        )
        .err()?;
        let at = e.location()?;
        e.to_string()
            .contains(FOUND)
            .then(|| (at.line(), at.column()))
    })
}

/// The error [`Probe`] stops the reader with where the path leads: the
/// reader marks it with the line and column of the value it was reading
/// (and puts the path in front).
const FOUND: &str = "the value at the path";

/// Walks YAML along a key path and fails at its end, reading past
/// everything else; a path that is not there reads through.
struct Probe<'p>(&'p [Step<'p>]);

impl Probe<'_> {
    fn found<E: serde::de::Error>(&self) -> Result<(), E> {
        if self.0.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.found()
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.found()
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.found()
    }

    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<(), E> {
        self.found()
    }

    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<(), E> {
        self.found()
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.found()
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.found()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.found()
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.found()
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.0.split_first() else {
            return self.found();
        };
        for i in 0.. {
            let more = if *first == Step::Index(i) {
                seq.next_element_seed(Probe(rest))?.is_some()
            } else {
                seq.next_element::<serde::de::IgnoredAny>()?.is_some()
            };
            if !more {
                break;
            }
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.0.split_first() else {
            return self.found();
        };
        while let Some(key) = map.next_key::<serde_norway::Value>()? {
            if matches!(first, Step::Key(k) if key.as_str() == Some(*k)) {
                map.next_value_seed(Probe(rest))?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_path_reads_as_keys_and_indices() {
        assert_eq!(
            steps("sas[2].mirror.quantity"),
            Some(vec![
                Step::Key("sas"),
                Step::Index(2),
                Step::Key("mirror"),
                Step::Key("quantity")
            ])
        );
        assert_eq!(steps("."), Some(vec![]));
        assert_eq!(
            steps("a[1][0]"),
            Some(vec![Step::Key("a"), Step::Index(1), Step::Index(0)])
        );
        assert_eq!(steps("a[x]"), None);
    }

    /// Block and flow style, lists and maps, a key that is missing (its
    /// entry's place), a key written twice in the path's name elsewhere.
    #[test]
    fn a_path_is_found_where_its_value_starts() {
        let text = "\
a: 1
list:
  - { b: 2, c: [x, y] }
  - b: 3
    c: 4
tail: { list: 5 }
";
        for (path, at) in [
            ("a", Some((1, 4))),
            ("list", Some((3, 3))),
            ("list[0].b", Some((3, 10))),
            ("list[0].c[1]", Some((3, 20))),
            ("list[1].c", Some((5, 8))),
            ("list[1].missing", Some((4, 5))),
            ("list[7].b", Some((3, 3))),
            ("tail.list", Some((6, 15))),
            (".", Some((1, 1))),
        ] {
            assert_eq!(line_col_of(text, path), at, "{path}");
        }
    }

    #[test]
    fn only_an_error_of_that_file_without_a_line_is_placed() {
        let text = "x: 1\ny: 2\n";
        let placed = |e: ConfigError| e.placed_in(text, "f.yaml").to_string();
        assert_eq!(
            placed(ConfigError::invalid("f.yaml", "y", "bad")),
            "f.yaml:2:4: y: bad"
        );
        assert_eq!(
            placed(ConfigError::invalid("other.yaml", "y", "bad")),
            "other.yaml: y: bad"
        );
    }
}
