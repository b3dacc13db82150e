//! `[[sources]]`: named scan targets (databases and object stores) with
//! their credentials, scope and limits. Secrets never sit in the file:
//! passwords and keys come from environment variables (`*_env`) or files
//! (`*_file`), and no secret is ever printed.
//!
//! ```toml
//! [[sources]]
//! name = "school-db"
//! url = "postgres://scanner@db.internal:5432/school"
//! password_env = "SCHOOL_DB_PASSWORD"
//! include = ["public.*", "enrol.*"]
//! exclude = ["public.audit_*"]
//! sample_rows = 1000
//! statement_timeout_secs = 300
//! concurrency = 4
//! watermarks = { "public.students" = "updated_at" }
//!
//! [[sources]]
//! name = "exports"
//! url = "s3://exports/daily/"
//! endpoint = "https://minio.internal:9000"
//! region = "us-east-1"
//! path_style = true
//! access_key_id_env = "EXPORTS_KEY_ID"
//! secret_access_key_file = "/run/secrets/exports_secret"
//! include = ["**/*.csv.gz", "**/*.parquet"]
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One named source.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Name used on the command line (`childguard scan @name` / `--source name`) and in reports.
    pub name: String,
    /// Target URL: `postgres://`, `postgresql://`, `mysql://`, `mariadb://`, `sqlite://path`,
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`, `file:///dir`.
    /// A local directory or file is accepted too (`path = "/var/log"`).
    /// Must not contain a password: use `password_env` or `password_file`.
    #[serde(alias = "path", alias = "target", alias = "uri")]
    pub url: String,
    /// Environment variable holding the database password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the database password (trailing newline ignored), e.g. a mounted secret.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Globs of what to scan: `schema.table` for databases (e.g. `public.*`), object keys
    /// relative to the prefix for object stores (e.g. `**/*.parquet`). Empty: everything.
    #[serde(default)]
    pub include: Vec<String>,
    /// Globs of what to skip; wins over `include`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Rows sampled per table when not `--full` (spread across the table).
    #[serde(default = "default_sample_rows")]
    pub sample_rows: u64,
    /// Per-statement timeout in seconds for database reads; a table that takes
    /// longer is reported and skipped.
    #[serde(default = "default_statement_timeout_secs")]
    pub statement_timeout_secs: u64,
    /// Tables or objects read at the same time (also the connection-pool size).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Watermark column per table (`"schema.table" = "updated_at"`): with `--incremental`
    /// only rows whose watermark is newer than the last scan's maximum are read.
    #[serde(default)]
    pub watermarks: BTreeMap<String, String>,
    /// Object stores: custom endpoint URL (MinIO, Ceph, moto, …); default: the provider's.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Object stores: region (S3).
    #[serde(default)]
    pub region: Option<String>,
    /// Object stores: path-style requests (`endpoint/bucket/key`) instead of virtual-hosted.
    #[serde(default)]
    pub path_style: bool,
    /// Object stores: allow plain `http://` endpoints (test and in-cluster servers).
    #[serde(default)]
    pub allow_http: bool,
    /// S3: environment variable holding the access key id.
    #[serde(default)]
    pub access_key_id_env: Option<String>,
    /// S3: file holding the access key id.
    #[serde(default)]
    pub access_key_id_file: Option<PathBuf>,
    /// S3: environment variable holding the secret access key.
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    /// S3: file holding the secret access key.
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// GCS: file holding the service-account JSON key. For a GCS-compatible
    /// server, a key with `"gcs_base_url": "http://host:port"` and
    /// `"disable_oauth": true` (with `allow_http` for plain HTTP).
    #[serde(default)]
    pub service_account_file: Option<PathBuf>,
    /// Azure: storage account name.
    #[serde(default)]
    pub account: Option<String>,
    /// Azure: environment variable holding the storage access key.
    #[serde(default)]
    pub access_key_env: Option<String>,
    /// Azure: file holding the storage access key.
    #[serde(default)]
    pub access_key_file: Option<PathBuf>,
    /// Object stores: objects larger than this many bytes are reported and skipped.
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: u64,
    /// Retries after a connection failure, with exponential backoff: object
    /// stores per request; databases per table (read again from its start).
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
    /// Databases: seconds to wait for a connection (the probe at start, and
    /// a table read while the server is unreachable) before the attempt fails.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
}

const fn default_sample_rows() -> u64 {
    1000
}
const fn default_statement_timeout_secs() -> u64 {
    600
}
const fn default_concurrency() -> usize {
    4
}
const fn default_max_object_bytes() -> u64 {
    64 << 30
}
const fn default_connect_timeout_secs() -> u64 {
    15
}
const fn default_max_retries() -> usize {
    5
}

/// Reading a secret failed: names the variable or file, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("source `{source_name}`: environment variable {var} is not set")]
    MissingEnv { source_name: String, var: String },
    #[error("source `{source_name}`: cannot read secret file {path}: {cause}")]
    File {
        source_name: String,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "source `{source_name}`: the url carries a password; use password_env or password_file"
    )]
    PasswordInUrl { source_name: String },
}

impl SourceConfig {
    /// A source for `url` with every default (used for targets given on the command line).
    pub fn from_url(url: &str) -> SourceConfig {
        SourceConfig {
            name: String::new(),
            url: url.to_string(),
            password_env: None,
            password_file: None,
            include: Vec::new(),
            exclude: Vec::new(),
            sample_rows: default_sample_rows(),
            statement_timeout_secs: default_statement_timeout_secs(),
            concurrency: default_concurrency(),
            watermarks: BTreeMap::new(),
            endpoint: None,
            region: None,
            path_style: false,
            allow_http: false,
            access_key_id_env: None,
            access_key_id_file: None,
            secret_access_key_env: None,
            secret_access_key_file: None,
            service_account_file: None,
            account: None,
            access_key_env: None,
            access_key_file: None,
            max_object_bytes: default_max_object_bytes(),
            max_retries: default_max_retries(),
            connect_timeout_secs: default_connect_timeout_secs(),
        }
    }

    /// The database password from `password_env` / `password_file`, if configured.
    pub fn password(&self) -> Result<Option<String>, SecretError> {
        self.secret(self.password_env.as_deref(), self.password_file.as_deref())
    }

    /// Resolve a secret from an env var or a file (env first).
    pub fn secret(
        &self,
        env: Option<&str>,
        file: Option<&Path>,
    ) -> Result<Option<String>, SecretError> {
        if let Some(var) = env {
            return match std::env::var(var) {
                Ok(v) => Ok(Some(v)),
                Err(_) => Err(SecretError::MissingEnv {
                    source_name: self.name.clone(),
                    var: var.to_string(),
                }),
            };
        }
        if let Some(path) = file {
            return match std::fs::read_to_string(path) {
                Ok(v) => Ok(Some(v.trim_end_matches(['\n', '\r']).to_string())),
                Err(cause) => Err(SecretError::File {
                    source_name: self.name.clone(),
                    path: path.to_path_buf(),
                    cause,
                }),
            };
        }
        Ok(None)
    }

    /// Reject a config whose url embeds a password (it would end up in files and shells).
    pub fn check(&self) -> Result<(), SecretError> {
        if let Ok(u) = url::Url::parse(&self.url) {
            if u.password().is_some() {
                return Err(SecretError::PasswordInUrl {
                    source_name: self.name.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults_and_secrets() {
        let c: SourceConfig = toml::from_str(
            r#"
            name = "db"
            url = "postgres://scanner@h/db"
            password_env = "CG_TEST_SOURCES_PW"
            include = ["public.*"]
            watermarks = { "public.t" = "updated_at" }
            "#,
        )
        .unwrap();
        assert_eq!(c.sample_rows, 1000);
        assert_eq!(c.concurrency, 4);
        assert_eq!(c.watermarks["public.t"], "updated_at");
        let err = c.password().unwrap_err().to_string();
        assert!(err.contains("CG_TEST_SOURCES_PW"), "{err}");
        std::env::set_var("CG_TEST_SOURCES_PW", "s3cret");
        assert_eq!(c.password().unwrap().as_deref(), Some("s3cret"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "filepw\n").unwrap();
        let c2 = SourceConfig {
            password_env: None,
            password_file: Some(f),
            ..c.clone()
        };
        assert_eq!(c2.password().unwrap().as_deref(), Some("filepw"));
        assert!(toml::from_str::<SourceConfig>("name='x'\nurl='s3://b'\nbogus=1").is_err());
        let bad = SourceConfig::from_url("postgres://u:pw@h/db");
        let msg = bad.check().unwrap_err().to_string();
        assert!(!msg.contains("pw@"), "{msg}");
    }
}

/// The source configuration for a target given on the command line: `@name`
/// (or a bare name) selects the `[[sources]]` entry of that name; a URL equal
/// to an entry's `url` uses that entry (its credentials and limits); any
/// other URL gets the defaults.
pub fn resolve(target: &str, sources: &[SourceConfig]) -> Option<SourceConfig> {
    let name = target.strip_prefix('@').unwrap_or(target);
    if let Some(s) = sources.iter().find(|s| s.name == name) {
        return Some(s.clone());
    }
    if let Some(s) = sources.iter().find(|s| s.url == target) {
        return Some(s.clone());
    }
    target
        .contains("://")
        .then(|| SourceConfig::from_url(target))
}

#[cfg(test)]
mod resolve_tests {
    use super::*;

    #[test]
    fn resolves_names_urls_and_plain_urls() {
        let mut a = SourceConfig::from_url("postgres://u@h/db");
        a.name = "school".into();
        a.sample_rows = 5;
        let list = vec![a];
        assert_eq!(resolve("@school", &list).unwrap().sample_rows, 5);
        assert_eq!(resolve("school", &list).unwrap().sample_rows, 5);
        assert_eq!(resolve("postgres://u@h/db", &list).unwrap().sample_rows, 5);
        assert_eq!(resolve("mysql://h/x", &list).unwrap().sample_rows, 1000);
        assert!(resolve("logs/", &list).is_none());
    }
}
