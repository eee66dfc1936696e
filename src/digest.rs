//! Hex digests and tokens: session tokens are minted signed and stored hashed, lesson
//! files are recognised by their content hash. One hex encoder for all of them.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Lower-case hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// SHA-256 of some bytes, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `N` random bytes from the operating system, in hex.
pub fn random_hex<const N: usize>() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    Ok(hex(&bytes))
}

/// Signs the session tokens this deployment issues, so a token it never issued is
/// recognised without a database lookup: a token is 32 random bytes and their
/// HMAC-SHA256 under the deployment's secret, 128 hex digits in all. Instances that
/// share a database share the secret (the `session_secret` setting, or the file in a
/// shared data directory).
pub struct TokenKey {
    key: [u8; 32],
}

/// Random bytes in a token, and the length of its signature.
const TOKEN_RANDOM_BYTES: usize = 32;
pub const TOKEN_HEX_LEN: usize = (TOKEN_RANDOM_BYTES + 32) * 2;

impl TokenKey {
    /// A key from a secret of any length (hashed to 32 bytes).
    pub fn from_secret(secret: &[u8]) -> TokenKey {
        TokenKey {
            key: Sha256::digest(secret).into(),
        }
    }

    fn mac(&self, random_hex: &str) -> Hmac<Sha256> {
        // HMAC accepts a key of any length; this one is always 32 bytes.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(random_hex.as_bytes());
        mac
    }

    /// A new token: random, then signed.
    pub fn mint(&self) -> Result<String, getrandom::Error> {
        let random = random_hex::<TOKEN_RANDOM_BYTES>()?;
        let tag = hex(&self.mac(&random).finalize().into_bytes());
        Ok(random + &tag)
    }

    /// True only for a token this key signed (compared in constant time).
    pub fn verify(&self, token: &str) -> bool {
        if token.len() != TOKEN_HEX_LEN || !token.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return false;
        }
        let (random, tag) = token.split_at(TOKEN_RANDOM_BYTES * 2);
        let Some(tag) = unhex(tag) else { return false };
        self.mac(random).verify_slice(&tag).is_ok()
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(*pair.first()?)? << 4 | digit(*pair.get(1)?)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_and_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(sha256_hex(b"abc").len(), 64);
        assert_ne!(random_hex::<8>().unwrap(), random_hex::<8>().unwrap());
    }

    #[test]
    fn only_tokens_this_key_signed_verify() {
        let key = TokenKey::from_secret(b"one deployment");
        let token = key.mint().unwrap();
        assert_eq!(token.len(), TOKEN_HEX_LEN);
        assert!(key.verify(&token));
        assert_ne!(key.mint().unwrap(), token);
        // Another deployment's token, a changed digit, a forged random one, odd input.
        assert!(!TokenKey::from_secret(b"another").verify(&token));
        let mut flipped = token.clone().into_bytes();
        flipped[3] = if flipped[3] == b'0' { b'1' } else { b'0' };
        assert!(!key.verify(&String::from_utf8(flipped).unwrap()));
        assert!(!key.verify(&random_hex::<64>().unwrap()));
        assert!(!key.verify(&"a".repeat(64)));
        assert!(!key.verify(&token.to_uppercase()));
        assert!(!key.verify(""));
    }
}
