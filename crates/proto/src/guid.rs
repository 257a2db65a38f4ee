//! The server GUID: the identity of one license server deployment, never tied to hardware.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A license server's identity, printed as `{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerGuid([u8; 16]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuidError {
    #[error("server GUID {0:?} has the wrong shape: expected {{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}} (hex digits, braces optional)")]
    Shape(String),
    #[error("server GUID {0:?} has a character that is not a hex digit")]
    NotHex(String),
}

const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];

impl ServerGuid {
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The GUID without its braces (`DF9960A1-…-B1470BBD0B8E`): as a URL path segment,
    /// which takes no braces unencoded.
    pub fn bare(&self) -> String {
        let text = self.to_string();
        text[1..text.len() - 1].to_owned()
    }

    /// Parses the GUID in either case, with or without the surrounding braces.
    pub fn parse(input: &str) -> Result<Self, GuidError> {
        let shape = || GuidError::Shape(truncate(input));
        let trimmed = input.trim();
        let inner = match (trimmed.strip_prefix('{'), trimmed.strip_suffix('}')) {
            (Some(_), Some(_)) if trimmed.len() >= 2 => &trimmed[1..trimmed.len() - 1],
            (None, None) => trimmed,
            _ => return Err(shape()),
        };
        let parts: Vec<&str> = inner.split('-').collect();
        if parts.len() != GROUPS.len() {
            return Err(shape());
        }
        let mut hex_digits = String::with_capacity(32);
        for (part, len) in parts.iter().zip(GROUPS) {
            if part.len() != len {
                return Err(shape());
            }
            hex_digits.push_str(part);
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(&hex_digits, &mut bytes)
            .map_err(|_| GuidError::NotHex(truncate(input)))?;
        Ok(Self(bytes))
    }
}

fn truncate(input: &str) -> String {
    input.chars().take(64).collect()
}

impl fmt::Display for ServerGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode_upper(self.0);
        write!(
            f,
            "{{{}-{}-{}-{}-{}}}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

impl fmt::Debug for ServerGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerGuid({self})")
    }
}

impl FromStr for ServerGuid {
    type Err = GuidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ServerGuid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ServerGuid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_has_no_braces_and_parses_back() {
        let g = ServerGuid::parse("{df9960a1-7bd5-633b-f0f4-b1470bbd0b8e}").unwrap();
        assert_eq!(g.bare(), "DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E");
        assert_eq!(ServerGuid::parse(&g.bare()).unwrap(), g);
    }
    use proptest::prelude::*;

    const SAMPLE: &str = "{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}";

    #[test]
    fn parses_the_seed_example() {
        let g = ServerGuid::parse(SAMPLE).unwrap();
        assert_eq!(g.to_string(), SAMPLE);
        assert_eq!(g.as_bytes()[0], 0xDF);
        assert_eq!(g.as_bytes()[15], 0x8E);
    }

    #[test]
    fn accepts_lower_case_and_no_braces_and_prints_canonical() {
        for input in [
            "df9960a1-7bd5-633b-f0f4-b1470bbd0b8e",
            "{df9960a1-7bd5-633b-f0f4-b1470bbd0b8e}",
            "DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E",
            "  {Df9960A1-7bD5-633B-F0F4-B1470BBD0B8E}\n",
        ] {
            assert_eq!(
                ServerGuid::parse(input).unwrap().to_string(),
                SAMPLE,
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_malformed_input_with_a_clear_error() {
        let bad = [
            "",
            "{}",
            "{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E",
            "DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}",
            "DF9960A17BD5633BF0F4B1470BBD0B8E",
            "{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8}",
            "{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E0}",
            "{DF9960A1-7BD5-633B-F0F4B1470BBD0B8E}",
            "{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E-}",
            "{GF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}",
            "{DF9960A1_7BD5-633B-F0F4-B1470BBD0B8E}",
            "{+F9960A1-7BD5-633B-F0F4-B1470BBD0B8E}",
            "{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8É}",
        ];
        for input in bad {
            let err = ServerGuid::parse(input).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("server GUID"), "{input}: {msg}");
        }
    }

    #[test]
    fn serde_uses_the_canonical_string() {
        let g = ServerGuid::parse(SAMPLE).unwrap();
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(json, format!("\"{SAMPLE}\""));
        let back: ServerGuid =
            serde_json::from_str("\"df9960a1-7bd5-633b-f0f4-b1470bbd0b8e\"").unwrap();
        assert_eq!(back, g);
        assert!(serde_json::from_str::<ServerGuid>("\"nope\"").is_err());
    }

    proptest! {
        #[test]
        fn round_trips_any_guid(bytes in any::<[u8; 16]>(), lower in any::<bool>(), braces in any::<bool>()) {
            let g = ServerGuid::from_bytes(bytes);
            let mut text = g.to_string();
            if lower { text = text.to_lowercase(); }
            if !braces { text = text[1..text.len() - 1].to_string(); }
            prop_assert_eq!(ServerGuid::parse(&text).unwrap(), g);
        }

        #[test]
        fn never_panics_and_accepts_only_canonical_shapes(s in "\\PC{0,48}") {
            if let Ok(g) = ServerGuid::parse(&s) {
                prop_assert_eq!(g.to_string().to_lowercase(), {
                    let t = s.trim().to_lowercase();
                    if t.starts_with('{') { t } else { format!("{{{t}}}") }
                });
            }
        }
    }
}
