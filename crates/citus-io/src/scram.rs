//! SCRAM-SHA-256 verifiers with a chosen iteration count, in the form PostgreSQL keeps in
//! `pg_authid.rolpassword` and stores as it is when it gets one in `PASSWORD '...'`
//! (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, RFC 5802 and RFC 7677).
//!
//! postgres-protocol's `password::scram_sha_256` always uses PostgreSQL's default of 4096
//! iterations. Every login pays that many HMAC rounds on the client's side: the tool's, the
//! test runner's and each connection Citus opens from one node to another. The local backend
//! gives new data directories a verifier with `[local] scram_iterations` instead (default
//! [`citus_config::DEFAULT_SCRAM_ITERATIONS`]; docs/performance.md has the measurements).
//!
//! ```
//! let v = citus_io::scram::verifier("commcarehq", 16);
//! assert!(v.starts_with("SCRAM-SHA-256$16:"));
//! ```

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Length of the random salt, as PostgreSQL's own (`SCRAM_DEFAULT_SALT_LEN`).
const SALT_LEN: usize = 16;

/// A verifier of `password` with a new random salt and `iterations` rounds (at least 1).
pub fn verifier(password: &str, iterations: u32) -> String {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).expect("the operating system's random source failed");
    verifier_with_salt(password, &salt, iterations)
}

/// A verifier of `password` with the given salt and `iterations` rounds (at least 1).
pub fn verifier_with_salt(password: &str, salt: &[u8], iterations: u32) -> String {
    assert!(iterations >= 1, "SCRAM needs at least one iteration");
    // PostgreSQL (and libpq, and postgres-protocol) normalise the password with SASLprep
    // and use it as it is when it is not valid for SASLprep.
    let prepared = stringprep::saslprep(password).map_or_else(|_| password.to_owned(), |p| p.into_owned());
    let salted: [u8; 32] = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(prepared.as_bytes(), salt, iterations);
    let key = |label: &[u8]| {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&salted).expect("HMAC takes a key of any length");
        mac.update(label);
        mac.finalize().into_bytes()
    };
    let stored_key = Sha256::digest(key(b"Client Key"));
    let server_key = key(b"Server Key");
    format!("SCRAM-SHA-256${iterations}:{}${}:{}", STANDARD.encode(salt), STANDARD.encode(stored_key), STANDARD.encode(server_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed independently, with Python's hashlib.pbkdf2_hmac and hmac
    // (the formula of PostgreSQL's scram_build_secret).
    #[test]
    fn matches_an_independent_computation() {
        let salt = b"0123456789abcdef";
        assert_eq!(verifier_with_salt("commcarehq", salt, 4096), EXPECTED_4096);
        assert_eq!(verifier_with_salt("commcarehq", salt, 16), EXPECTED_16);
    }

    #[test]
    fn saslprep_applies_as_in_postgresql() {
        let salt = b"0123456789abcdef";
        // SASLprep maps a soft hyphen to nothing and a no-break space to a space.
        assert_eq!(verifier_with_salt("commcare\u{ad}hq", salt, 16), EXPECTED_16);
        assert_eq!(verifier_with_salt("a\u{a0}b", salt, 16), verifier_with_salt("a b", salt, 16));
        // A password SASLprep refuses (a left-to-right letter beside a Hebrew one) is used
        // byte for byte (the expected value hashes its UTF-8 bytes unchanged).
        assert!(stringprep::saslprep("a\u{5d0}1").is_err());
        assert_eq!(verifier_with_salt("a\u{5d0}1", salt, 16), EXPECTED_RAW_16);
    }

    #[test]
    fn each_verifier_gets_its_own_salt() {
        let (a, b) = (verifier("commcarehq", 16), verifier("commcarehq", 16));
        assert_ne!(a, b);
        let salt = a.split(['$', ':']).nth(2).unwrap();
        assert_eq!(STANDARD.decode(salt).unwrap().len(), SALT_LEN);
    }

    const EXPECTED_4096: &str =
        "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$Dt/okEtt1yBWD75PPvcmLN15lSlzXRxq6lSG/rf1nwo=:Ab284D8I1VihBlaSJI4xTXH3Iu6MCxPoAZvuN3IZiqg=";
    const EXPECTED_RAW_16: &str =
        "SCRAM-SHA-256$16:MDEyMzQ1Njc4OWFiY2RlZg==$Wg2qSHUTaQrEYlXFr2gUrkLXKKt5t6IA5tjIE86v0gw=:YbYEzf+Kz/3Vl2z9xPXGNdunGQcJagJijz9BP3S5f08=";
    const EXPECTED_16: &str =
        "SCRAM-SHA-256$16:MDEyMzQ1Njc4OWFiY2RlZg==$bolhz0VL1jKNMQtlYcOwg5S+pf6EYtKShJVXxmtFmgM=:gCVnSOuLQuIuBAXTH0Lp4fR0svlSdZuNWWMSgH9qe2s=";
}
