//! Fixed-size byte values that appear on the wire, in records and in the JS API.
//!
//! Each prints and (de)serializes as `0x`-prefixed lowercase hex, the way Fiber's
//! JSON-RPC writes them, so a record or an event can be read by a person.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a hex string could not be read as a fixed-size value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("expected a 0x-prefixed hex string")]
    MissingPrefix,
    #[error("invalid hex digit in {0:?}")]
    InvalidDigit(String),
    #[error("expected {expected} bytes, got {actual}")]
    WrongLength { expected: usize, actual: usize },
}

/// Decodes `0x`-prefixed hex of any length.
pub fn decode_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .ok_or(HexError::MissingPrefix)?;
    if digits.len() % 2 != 0 {
        return Err(HexError::InvalidDigit(text.to_owned()));
    }
    let mut out = Vec::with_capacity(digits.len() / 2);
    for pair in digits.as_bytes().chunks(2) {
        let high = hex_value(pair[0]).ok_or_else(|| HexError::InvalidDigit(text.to_owned()))?;
        let low = hex_value(pair[1]).ok_or_else(|| HexError::InvalidDigit(text.to_owned()))?;
        out.push(high << 4 | low);
    }
    Ok(out)
}

/// Encodes bytes as `0x`-prefixed lowercase hex.
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("0x");
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    out
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

macro_rules! fixed_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub const LEN: usize = $len;

            /// Reads exactly `LEN` bytes.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, HexError> {
                let array: [u8; $len] = bytes.try_into().map_err(|_| HexError::WrongLength {
                    expected: $len,
                    actual: bytes.len(),
                })?;
                Ok(Self(array))
            }

            pub fn from_hex(text: &str) -> Result<Self, HexError> {
                Self::from_slice(&decode_hex(text)?)
            }

            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&encode_hex(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), encode_hex(&self.0))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&encode_hex(&self.0))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::from_hex(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

fixed_bytes!(
    /// A 32-byte hash: channel ids, tx hashes, chain hashes.
    Hash256,
    32
);
fixed_bytes!(
    /// A compressed secp256k1 public key (node ids, funding keys, basepoints).
    Pubkey,
    33
);
fixed_bytes!(
    /// A MuSig2 public nonce: two compressed points, as the `musig2` crate serializes it.
    PubNonceBytes,
    66
);

/// The id of a channel: blake2b-256 of both tlc basepoints once accepted,
/// a temporary id derived from the opener's basepoint before that.
pub type ChannelId = Hash256;

/// A node is named by its public key, as in Fiber.
pub type NodeId = Pubkey;

/// Byte vectors (witnesses, encoded transactions) as `0x` hex in serde.
pub mod hex_bytes {
    use super::{decode_hex, encode_hex};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encode_hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        decode_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// `Vec<Vec<u8>>` as a list of `0x` hex strings in serde.
pub mod hex_bytes_list {
    use super::{decode_hex, encode_hex};
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(list: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(list.len()))?;
        for bytes in list {
            seq.serialize_element(&encode_hex(bytes))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        texts
            .iter()
            .map(|text| decode_hex(text).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Numbers as Fiber's JSON-RPC writes them: `0x`-prefixed hex without leading zeros.
pub mod hex_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{value:#x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub fn parse(text: &str) -> Result<u64, String> {
        let digits = text
            .strip_prefix("0x")
            .ok_or_else(|| format!("expected a 0x-prefixed hex number, got {text:?}"))?;
        u64::from_str_radix(digits, 16).map_err(|e| format!("invalid hex number {text:?}: {e}"))
    }
}

/// `u128` amounts as `0x` hex, as Fiber's JSON-RPC writes `funding_amount`.
pub mod hex_u128 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{value:#x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        let text = String::deserialize(deserializer)?;
        let digits = text
            .strip_prefix("0x")
            .ok_or_else(|| serde::de::Error::custom(format!("expected a 0x-prefixed hex number, got {text:?}")))?;
        u128::from_str_radix(digits, 16)
            .map_err(|e| serde::de::Error::custom(format!("invalid hex number {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_bad_input() {
        let hash = Hash256([0xab; 32]);
        assert_eq!(Hash256::from_hex(&hash.to_string()).unwrap(), hash);
        assert_eq!(decode_hex("0x"), Ok(vec![]));
        assert_eq!(decode_hex("ab"), Err(HexError::MissingPrefix));
        assert!(matches!(decode_hex("0xzz"), Err(HexError::InvalidDigit(_))));
        assert!(matches!(decode_hex("0xabc"), Err(HexError::InvalidDigit(_))));
        assert_eq!(
            Pubkey::from_hex("0x00"),
            Err(HexError::WrongLength {
                expected: 33,
                actual: 1
            })
        );
    }

    #[test]
    fn numbers_use_fiber_hex() {
        assert_eq!(hex_u64::parse("0x3e8"), Ok(1000));
        assert!(hex_u64::parse("1000").is_err());
    }
}
