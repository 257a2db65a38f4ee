//! Newtypes for every identifier that crosses a process boundary. Each parses with a clear
//! error, so a malformed id is refused at the edge and never reaches storage.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not valid: {rule}")]
pub struct IdError {
    pub what: &'static str,
    pub value: String,
    pub rule: &'static str,
}

/// Defines a string identifier `prefix` + `hex_len` lower-case hex digits.
macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $prefix:literal, $bytes:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Number of random bytes behind one id.
            pub const RANDOM_BYTES: usize = $bytes;

            pub fn from_random(bytes: [u8; $bytes]) -> Self {
                Self(format!("{}{}", $prefix, hex::encode(bytes)))
            }

            pub fn parse(input: &str) -> Result<Self, IdError> {
                let err = |rule| IdError { what: $what, value: input.chars().take(80).collect(), rule };
                let rest = input
                    .strip_prefix($prefix)
                    .ok_or_else(|| err(concat!("must start with \"", $prefix, "\"")))?;
                if rest.len() != $bytes * 2
                    || !rest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err(err(concat!("must be \"", $prefix, "\" followed by ", stringify!($bytes), " bytes of lower-case hex")));
                }
                Ok(Self(input.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::openapi::hex_id_schema($what, $prefix, $bytes)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}

hex_id!(
    /// One customer installation at the vendor: a production or development server plus backups.
    InstallationId, "installation id", "inst_", 8
);
hex_id!(
    /// One entitlement at the vendor.
    LicenseId, "license id", "lic_", 8
);
hex_id!(
    /// Made once per license server data directory; the node binds a GUID to it.
    InstanceId, "instance id", "inst-", 16
);
hex_id!(
    /// The link of the sync-token chain a bundle hands to the server for its next sync.
    SyncToken, "sync token", "st_", 16
);
hex_id!(
    /// A client process, random per process: never a hostname or an address.
    ClientId, "client id", "c_", 16
);
hex_id!(
    /// A vendor staff account at the license nodes.
    AccountId, "account id", "acct_", 8
);
hex_id!(
    /// One personal API token of a vendor account (the id shown in lists; the token itself
    /// is a secret shown once).
    ApiTokenId, "token id", "tok_", 8
);

/// A licensed feature name such as `asr.en-US` or `tts`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Feature(String);

impl Feature {
    pub const MAX_LEN: usize = 64;

    pub fn parse(input: &str) -> Result<Self, IdError> {
        let err = |rule| IdError {
            what: "feature",
            value: input.chars().take(80).collect(),
            rule,
        };
        if input.is_empty() || input.len() > Self::MAX_LEN {
            return Err(err("must be 1 to 64 characters long"));
        }
        if !input.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(err("must start with a letter or digit"));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(err("may hold only letters, digits, '.', '-' and '_'"));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Feature({})", self.0)
    }
}

impl FromStr for Feature {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Feature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Feature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_other_shapes() {
        let id = LicenseId::from_random([1, 2, 3, 4, 5, 6, 7, 0xab]);
        assert_eq!(id.as_str(), "lic_01020304050607ab");
        assert_eq!(LicenseId::parse(id.as_str()).unwrap(), id);
        for bad in [
            "",
            "lic_",
            "lic_01020304050607AB",
            "lic_0102030405060",
            "inst_0102030405060708",
            "lic_01020304050607zz",
        ] {
            let e = LicenseId::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("license id"), "{e}");
        }
        let inst = InstanceId::from_random([7; 16]);
        assert_eq!(InstanceId::parse(inst.as_str()).unwrap(), inst);
        assert!(InstallationId::parse(inst.as_str()).is_err());
    }

    #[test]
    fn features_follow_the_naming_rule() {
        for ok in ["asr.en-US", "tts", "a", "x_1.2-3"] {
            assert_eq!(Feature::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", ".asr", "asr en", "asr/en", "ä", &"a".repeat(65)] {
            assert!(Feature::parse(bad).is_err(), "{bad}");
        }
    }
}
