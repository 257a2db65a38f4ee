//! The OpenAPI schemas of the identifiers (feature `openapi`): each is a JSON string whose
//! form the schema states as a pattern, so an integrator's validator refuses what the
//! services would refuse.

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use crate::{Feature, KeyId, ServerGuid};

/// A string schema: what it is, the pattern it matches and one example.
pub(crate) fn string_schema(description: &str, pattern: &str, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .examples([example])
        .build()
        .into()
}

/// The schema of a `prefix` + lower-case hex identifier of `bytes` random bytes.
pub(crate) fn hex_id_schema(what: &str, prefix: &str, bytes: usize) -> RefOr<Schema> {
    let digits = bytes * 2;
    string_schema(
        &format!("A {what}: \"{prefix}\" followed by {digits} lower-case hex digits."),
        &format!("^{prefix}[0-9a-f]{{{digits}}}$"),
        &format!("{prefix}{}", "0f".repeat(bytes)),
    )
}

/// `ToSchema` for a type that is a string of the given form on the wire.
macro_rules! string_schema_of {
    ($type:ty, $description:literal, $pattern:literal, $example:literal) => {
        impl utoipa::PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                string_schema($description, $pattern, $example)
            }
        }

        impl utoipa::ToSchema for $type {}
    };
}

string_schema_of!(
    ServerGuid,
    "A license server's GUID: 32 hex digits in groups of 8-4-4-4-12, either case, braces optional; answers print it upper case with braces.",
    r"^\s*(\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})\s*$",
    "{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}"
);
string_schema_of!(
    Feature,
    "A licensed feature name: 1 to 64 letters, digits, '.', '-' and '_', starting with a letter or digit.",
    "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
    "asr.en-US"
);
string_schema_of!(
    KeyId,
    "Names the vendor key that signed an envelope: the first 8 bytes of SHA-256 of the public key, in lower-case hex.",
    "^[0-9a-f]{16}$",
    "4d8cbb9336f82eef"
);

#[cfg(test)]
mod tests {
    use crate::{ClientId, Feature, KeyId, LicenseId, ServerGuid};

    /// The schema of `T` is an anchored string pattern whose example `parses`.
    fn check<T: utoipa::PartialSchema>(parses: fn(&str) -> bool) {
        let schema = serde_json::to_value(T::schema()).unwrap();
        assert_eq!(schema["type"], "string", "{schema}");
        let pattern = schema["pattern"].as_str().unwrap_or_default();
        assert!(
            pattern.starts_with('^') && pattern.ends_with('$'),
            "{schema}"
        );
        let example = schema["examples"][0].as_str().unwrap_or_default();
        assert!(parses(example), "{schema}");
    }

    /// Every identifier's example matches its own pattern and parses: the description
    /// cannot drift from the parser.
    #[test]
    fn identifier_examples_parse_and_patterns_are_anchored() {
        check::<ClientId>(|s| ClientId::parse(s).is_ok());
        check::<LicenseId>(|s| LicenseId::parse(s).is_ok());
        check::<ServerGuid>(|s| ServerGuid::parse(s).is_ok());
        check::<Feature>(|s| Feature::parse(s).is_ok());
        check::<KeyId>(|s| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
