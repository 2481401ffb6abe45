//! clsync's rule grammar. (Stub: API only.)

use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Anything that is not a directory: files, symlinks, fifos, devices.
    File,
    Dir,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Walk,
    Monitor,
    Sync,
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{origin}:{line}: {message}")]
    Bad {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("cannot read rules file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, Default)]
pub struct Rules {}

impl Rules {
    pub fn allow_all() -> Self {
        Rules {}
    }
    pub fn parse(_text: &[u8], _origin: &str) -> Result<Self, RulesError> {
        Ok(Rules {})
    }
    pub fn from_file(_path: &Path) -> Result<Self, RulesError> {
        Ok(Rules {})
    }
    pub fn permits(&self, _path: &[u8], _kind: Kind, _action: Action) -> bool {
        true
    }
    pub fn is_empty(&self) -> bool {
        true
    }
}
