//! The configuration file (`config/childguard.toml`): sources, the purpose
//! inventory (`[[datasets]]`), schedules, API tokens, state location.

pub mod daemon;
pub mod inventory;

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Top-level configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for the embedded store, the fingerprint key and journals.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// PostgreSQL URL of a shared store (teams, several daemons); SQLite under `state_dir` when unset.
    #[serde(default)]
    pub state_url: Option<String>,
    /// Age under which a person is a child (CAC Order No. 4 Art. 2: 14).
    #[serde(default = "default_child_age")]
    pub child_age: u32,
    /// The purpose inventory.
    #[serde(default)]
    pub datasets: Vec<inventory::Dataset>,
    /// Scheduled jobs run by `childguard serve`.
    #[serde(default)]
    pub schedules: Vec<daemon::ScheduleConfig>,
    /// API bearer tokens (hashed) and their roles.
    #[serde(default)]
    pub tokens: Vec<daemon::TokenConfig>,
    /// HTTP server settings of `childguard serve`.
    #[serde(default)]
    pub server: daemon::ServerConfig,
    /// Anything not yet typed by a stage: kept so `config check` can name it.
    #[serde(flatten)]
    pub rest: toml::Table,
}

const fn default_child_age() -> u32 {
    14
}

/// Errors loading the configuration, each with the file and location.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.into(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Invalid { path: path.into(), message: e.to_string() })
    }
}
