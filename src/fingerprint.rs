//! Keyed fingerprints and masking: the only forms in which childguard keeps a
//! value it found. A fingerprint is HMAC-SHA256 over the normalized value with
//! a secret key, so findings can be joined across sources (for Art. 20
//! erasure) without childguard becoming a second copy of the data. This is
//! pseudonymization in the sense of PIPL Art. 73, not anonymization.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Environment variable holding the fingerprint key (hex or any string).
pub const KEY_ENV: &str = "CHILDGUARD_FINGERPRINT_KEY";
/// File name of the key inside the state directory.
pub const KEY_FILE: &str = "fingerprint.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("fingerprint key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("fingerprint key file {path} is empty")]
    Empty { path: PathBuf },
}

/// Computes keyed fingerprints. Cheap to clone.
#[derive(Clone)]
pub struct Fingerprinter {
    mac: Hmac<Sha256>,
    /// SHA-256 states after the key block XOR ipad / opad: a value of at
    /// most [`ONE_BLOCK`] bytes (every identifier) costs two compressions,
    /// without the generic HMAC's state copy, buffering and finalization
    /// (a fingerprint per hit: ~10% of the engine's time on PI-dense text).
    inner: [u32; 8],
    outer: [u32; 8],
}

/// The longest value whose padded inner message fits one 64-byte block.
const ONE_BLOCK: usize = 55;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// One compression of a 64-byte block into `state`.
fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    sha2::compress256(state, &[(*block).into()]);
}

/// Compress the last block of a message: `tail` (at most 55 bytes), 0x80,
/// zeros, and the message's bit length (`total` bytes in all).
fn compress_last(state: &mut [u32; 8], tail: &[u8], total: usize) {
    let mut block = [0u8; 64];
    block[..tail.len()].copy_from_slice(tail);
    block[tail.len()] = 0x80;
    block[56..].copy_from_slice(&((total as u64) * 8).to_be_bytes());
    compress(state, &block);
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprinter(<key>)")
    }
}

impl Fingerprinter {
    pub fn new(key: &[u8]) -> Self {
        use sha2::Digest;
        // RFC 2104: a key longer than the block is hashed first.
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let state = |pad: u8| {
            let mut st = SHA256_IV;
            compress(&mut st, &k.map(|b| b ^ pad));
            st
        };
        Fingerprinter {
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key size"),
            inner: state(0x36),
            outer: state(0x5c),
        }
    }

    /// Key from `CHILDGUARD_FINGERPRINT_KEY`, else from `<state_dir>/fingerprint.key`,
    /// created with 32 random bytes and mode 0600 when absent.
    pub fn load(state_dir: &Path) -> Result<Self, KeyError> {
        if let Ok(k) = std::env::var(KEY_ENV) {
            if !k.is_empty() {
                return Ok(Self::new(k.as_bytes()));
            }
        }
        let path = state_dir.join(KEY_FILE);
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let trimmed: Vec<u8> = bytes.trim_ascii().to_vec();
                if trimmed.is_empty() {
                    return Err(KeyError::Empty { path });
                }
                Ok(Self::new(&trimmed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(state_dir).map_err(io)?;
                let key: [u8; 32] = rand::random();
                let text = hex::encode(key);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                match opts.open(&path) {
                    Ok(mut f) => {
                        f.write_all(text.as_bytes()).map_err(io)?;
                        f.sync_all().map_err(io)?;
                        Ok(Self::new(text.as_bytes()))
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load(state_dir)
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Lowercase hex of HMAC-SHA256(key, `normalized`).
    pub fn fingerprint(&self, normalized: &str) -> String {
        hex_lower(&self.digest(normalized))
    }

    /// HMAC-SHA256(key, `normalized`): the bytes [`Self::fingerprint`] writes in hex.
    pub fn digest(&self, normalized: &str) -> [u8; 32] {
        let v = normalized.as_bytes();
        if v.len() > ONE_BLOCK {
            let mut m = self.mac.clone();
            m.update(v);
            return m.finalize().into_bytes().into();
        }
        // inner = H((K ^ ipad) || v), outer = H((K ^ opad) || inner)
        let digest = |mut st: [u32; 8], tail: &[u8]| {
            compress_last(&mut st, tail, 64 + tail.len());
            let mut d = [0u8; 32];
            for (o, w) in d.chunks_exact_mut(4).zip(st) {
                o.copy_from_slice(&w.to_be_bytes());
            }
            d
        };
        digest(self.outer, &digest(self.inner, v))
    }
}

/// A keyed fingerprint as the engine's hits carry it: the 32 digest bytes
/// inline (a hit is made per match, by the hundred thousand per chunk; a
/// hex `String` was an allocation each), or none when the scan counts
/// without fingerprints. [`Fp::hex`] gives the contract's
/// lowercase hex (64 digits; empty for none).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Fp(Option<[u8; 32]>);

impl Fp {
    /// No fingerprint (hits of a counting scan).
    pub const NONE: Fp = Fp(None);

    /// The fingerprint of digest bytes from [`Fingerprinter::digest`].
    pub const fn new(digest: [u8; 32]) -> Fp {
        Fp(Some(digest))
    }

    /// Lowercase hex, as findings store it; empty for none.
    pub fn hex(&self) -> String {
        self.0.map_or_else(String::new, |d| hex_lower(&d))
    }

    /// Whether there is no fingerprint.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl std::fmt::Debug for Fp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fp({})", self.hex())
    }
}

/// Lowercase hex of `bytes` (one per hit and one per finding id: a table
/// of the 256 digit pairs, a stack buffer for digests, one allocation).
pub fn hex_lower(bytes: &[u8]) -> String {
    const PAIRS: [[u8; 2]; 256] = {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut t = [[0u8; 2]; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = [DIGITS[i >> 4], DIGITS[i & 15]];
            i += 1;
        }
        t
    };
    let mut buf = [0u8; 64];
    let mut heap = Vec::new();
    let out: &mut [u8] = if bytes.len() <= 32 {
        &mut buf[..bytes.len() * 2]
    } else {
        heap.resize(bytes.len() * 2, 0);
        &mut heap
    };
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&PAIRS[b as usize]);
    }
    // Every byte written is an ASCII hex digit: valid UTF-8.
    std::str::from_utf8(out).unwrap_or_default().to_owned()
}

/// Default state directory: `$CHILDGUARD_STATE_DIR`, else `$XDG_STATE_HOME/childguard`,
/// else `~/.local/state/childguard`, else `./.childguard`.
pub fn default_state_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CHILDGUARD_STATE_DIR") {
        if !d.is_empty() {
            return PathBuf::from(d);
        }
    }
    if let Ok(d) = std::env::var("XDG_STATE_HOME") {
        if !d.is_empty() {
            return PathBuf::from(d).join("childguard");
        }
    }
    if let Ok(h) = std::env::var("HOME") {
        if !h.is_empty() {
            return PathBuf::from(h).join(".local/state/childguard");
        }
    }
    PathBuf::from(".childguard")
}

/// Keep the first `keep_start` and last `keep_end` characters, replace the
/// rest by `*` (one per character; spaces and hyphens of printed forms stay).
/// A value no longer than what would be kept is masked entirely.
pub fn mask_keep(value: &str, keep_start: usize, keep_end: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let (ks, ke) = if keep_start + keep_end >= n {
        (0, 0)
    } else {
        (keep_start, keep_end)
    };
    let mut out = String::with_capacity(value.len());
    for (i, c) in chars.iter().enumerate() {
        if i < ks || i >= n - ke {
            out.push(*c);
        } else if c.is_whitespace() || *c == '-' {
            out.push(*c);
        } else {
            out.push('*');
        }
    }
    out
}

/// Mask every character but the first (names, schools, addresses keep their
/// first character only so a reviewer can tell values apart without learning them).
pub fn mask_all_but_first(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        out.push(if i == 0 { c } else { '*' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_id_and_phone() {
        assert_eq!(mask_keep("652925201503079084", 6, 4), "652925********9084");
        assert_eq!(mask_keep("13812345678", 3, 4), "138****5678");
        assert_eq!(mask_keep("ab", 6, 4), "**");
        assert_eq!(mask_all_but_first("张小明"), "张**");
    }

    #[test]
    fn hex_lower_matches_hex_crate() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(hex_lower(&all), hex::encode(&all));
        assert_eq!(hex_lower(&all[..32]), hex::encode(&all[..32]));
        assert_eq!(hex_lower(&[]), "");
    }

    #[test]
    fn one_block_path_is_hmac_sha256() {
        // RFC 4231 test case 2, then every value length around the block
        // edge and keys shorter, equal to and longer than the block,
        // against the generic HMAC.
        let f = Fingerprinter::new(b"Jefe");
        assert_eq!(
            f.fingerprint("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        for key in [&b"k"[..], &[7u8; 64], &[9u8; 65], &[1u8; 200]] {
            let f = Fingerprinter::new(key);
            for len in 0..130 {
                let v: String = (0..len)
                    .map(|i| char::from(b'0' + (i % 10) as u8))
                    .collect();
                let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
                m.update(v.as_bytes());
                assert_eq!(
                    f.fingerprint(&v),
                    hex::encode(m.finalize().into_bytes()),
                    "{len}"
                );
            }
        }
    }

    #[test]
    fn fingerprint_is_keyed_and_stable() {
        let a = Fingerprinter::new(b"k1");
        let b = Fingerprinter::new(b"k2");
        assert_eq!(a.fingerprint("x"), a.fingerprint("x"));
        assert_ne!(a.fingerprint("x"), b.fingerprint("x"));
        assert_eq!(a.fingerprint("x").len(), 64);
    }

    #[test]
    fn key_file_created_0600() {
        let d = tempfile::tempdir().unwrap();
        std::env::remove_var(KEY_ENV);
        let f1 = Fingerprinter::load(d.path()).unwrap();
        let f2 = Fingerprinter::load(d.path()).unwrap();
        assert_eq!(f1.fingerprint("v"), f2.fingerprint("v"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
