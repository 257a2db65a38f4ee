//! Every identifier parser (`ServerGuid::parse`, the ids of `leasehold_proto::ids`,
//! `Feature::parse`, `Context`'s `FromStr`, `parse_public_key`) on the input as text. Each
//! value that parses must print to text that parses back to the same value, and its JSON
//! (serde) form must round-trip and agree with `parse`.
#![no_main]

use std::fmt::{Debug, Display};

use leasehold_proto::{
    parse_public_key, public_key_to_string, ClientId, Context, Feature, InstallationId, InstanceId,
    LicenseId, ServerGuid, SyncToken,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// `value` (parsed from `input`) prints to what parses back to it, also through JSON, and
/// the JSON string `input` decodes exactly when `parse` accepts it.
fn round_trip<T, E: Debug>(input: &str, value: Result<T, E>, parse: impl Fn(&str) -> Result<T, E>)
where
    T: Display + Debug + PartialEq + Serialize + DeserializeOwned,
{
    let json_input = serde_json::to_string(input).unwrap();
    let from_json = serde_json::from_str::<T>(&json_input);
    match value {
        Ok(v) => {
            let printed = v.to_string();
            match parse(&printed) {
                Ok(back) => assert_eq!(back, v, "{input:?} printed as {printed:?}"),
                Err(e) => panic!("{input:?} parsed as {v:?}, printed as {printed:?}, which does not parse: {e:?}"),
            }
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), v, "JSON {json}");
            assert_eq!(
                from_json.ok(),
                Some(v),
                "serde and parse disagree on {input:?}"
            );
        }
        Err(_) => assert!(
            from_json.is_err(),
            "serde accepts {input:?}, parse refuses it"
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    round_trip(input, ServerGuid::parse(input), ServerGuid::parse);
    if let Ok(g) = ServerGuid::parse(input) {
        // Either case, braces or not.
        let printed = g.to_string();
        assert_eq!(ServerGuid::parse(&printed.to_lowercase()), Ok(g));
        assert_eq!(ServerGuid::parse(&printed[1..printed.len() - 1]), Ok(g));
    }
    round_trip(input, InstallationId::parse(input), InstallationId::parse);
    round_trip(input, LicenseId::parse(input), LicenseId::parse);
    round_trip(input, InstanceId::parse(input), InstanceId::parse);
    round_trip(input, SyncToken::parse(input), SyncToken::parse);
    round_trip(input, ClientId::parse(input), ClientId::parse);
    round_trip(input, Feature::parse(input), Feature::parse);
    if let Ok(c) = input.parse::<Context>() {
        assert_eq!(c.to_string().parse::<Context>(), Ok(c));
        assert_eq!(c.as_str().parse::<Context>(), Ok(c));
    }
    if let Ok(key) = parse_public_key(input) {
        let printed = public_key_to_string(&key);
        assert_eq!(
            parse_public_key(&printed),
            Ok(key),
            "{input:?} printed as {printed:?}"
        );
    }
});
