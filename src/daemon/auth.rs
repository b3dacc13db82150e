//! Bearer-token authentication. Tokens are configured as SHA-256 hashes
//! (`sha256:<hex>`); a request's token is hashed and looked up. Roles are
//! ordered viewer < operator < approver < admin (CAC Order No. 4 Art. 15:
//! least privilege and approval).

use crate::config::daemon::{Role, TokenConfig};
use sha2::{Digest, Sha256};

/// Errors in the `[[tokens]]` configuration.
#[derive(Debug, thiserror::Error)]
pub enum TokenConfigError {
    #[error("token `{name}`: hash must be `sha256:` followed by 64 hex digits")]
    BadHash { name: String },
    #[error("token `{name}` is defined twice")]
    Duplicate { name: String },
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// `sha256:<hex>` of a token, the form stored in the config.
pub fn hash_token(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    entries: Vec<([u8; 32], Caller)>,
}

impl TokenSet {
    pub fn from_config(tokens: &[TokenConfig]) -> Result<Self, TokenConfigError> {
        let mut entries: Vec<([u8; 32], Caller)> = Vec::new();
        for t in tokens {
            let bad = || TokenConfigError::BadHash {
                name: t.name.clone(),
            };
            let hexpart = t.hash.strip_prefix("sha256:").ok_or_else(bad)?;
            let bytes = hex::decode(hexpart.to_ascii_lowercase()).map_err(|_| bad())?;
            let arr: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
            if entries.iter().any(|(_, c)| c.name == t.name) {
                return Err(TokenConfigError::Duplicate {
                    name: t.name.clone(),
                });
            }
            entries.push((
                arr,
                Caller {
                    name: t.name.clone(),
                    role: t.role,
                },
            ));
        }
        Ok(TokenSet { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller holding `token`, if any. Compares digests in constant time.
    pub fn check(&self, token: &str) -> Option<Caller> {
        let d: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (h, c) in &self.entries {
            let diff = h
                .iter()
                .zip(d.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(c.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_hashed_tokens() {
        let cfg = vec![
            TokenConfig {
                name: "ann".into(),
                hash: hash_token("secret-1"),
                role: Role::Viewer,
            },
            TokenConfig {
                name: "bob".into(),
                hash: hash_token("secret-2")
                    .to_uppercase()
                    .replace("SHA256:", "sha256:"),
                role: Role::Admin,
            },
        ];
        let s = TokenSet::from_config(&cfg).unwrap();
        assert_eq!(s.check("secret-1").unwrap().name, "ann");
        assert_eq!(s.check("secret-2").unwrap().role, Role::Admin);
        assert!(s.check("secret-3").is_none());
        assert!(s.check("").is_none());
        let bad = vec![TokenConfig {
            name: "x".into(),
            hash: "secret-1".into(),
            role: Role::Viewer,
        }];
        assert!(TokenSet::from_config(&bad)
            .unwrap_err()
            .to_string()
            .contains("token `x`"));
        assert_eq!(
            hash_token("password"),
            "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
    }
}
