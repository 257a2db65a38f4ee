//! The signed envelope a server stores and loads (`SignedEnvelope::from_json`, `verify`,
//! `open_bundle`). Two inputs in one:
//! - the bytes as a stored envelope: parsing and opening never panic, an envelope that
//!   parses prints back to itself, one that verifies is exactly what the fixture key makes
//!   of its payload (the seeds are signed with it; the fuzzer can only copy signatures,
//!   never forge or re-encode one), and one that opens is for the GUID and context asked;
//! - the bytes XOR'd into the text of a real signed envelope (the first two bytes say where):
//!   the result opens only if it parses to the very same envelope.
#![no_main]

use std::sync::OnceLock;

use chrono::{NaiveDate, TimeZone, Utc};
use leasehold_proto::{
    BundlePayload, Context, Feature, InstallationId, License, LicenseId, ServerGuid,
    SignedEnvelope, SyncToken, TrustedKeys, VendorSigningKey,
};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    key: VendorSigningKey,
    keys: TrustedKeys,
    guid: ServerGuid,
    bundle: BundlePayload,
    envelope: SignedEnvelope,
    text: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = VendorSigningKey::from_secret_bytes([7; 32]);
        let guid = ServerGuid::from_bytes([0xDF; 16]);
        let issued = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
        let bundle = BundlePayload {
            serial: 7,
            server_guid: guid,
            context: Context::Production,
            installation_id: InstallationId::from_random([3; 8]),
            issued_at: issued,
            not_after: issued + chrono::Duration::days(60),
            sync_interval_secs: 86_400,
            next_sync_token: SyncToken::from_random([9; 16]),
            acked_usage_seq: 12,
            licenses: vec![License {
                id: LicenseId::from_random([1; 8]),
                feature: Feature::parse("tts").unwrap(),
                count: 10,
                context: Context::Production,
                maintenance_until: NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
                expires: None,
                backs_up: None,
            }],
        };
        let envelope = key.sign_bundle(&bundle);
        let text = envelope.to_json().into_bytes();
        Fixture {
            keys: TrustedKeys::new().with(key.verifying_key()),
            key,
            guid,
            bundle,
            envelope,
            text,
        }
    })
}

const CONTEXTS: [Option<Context>; 4] = [
    None,
    Some(Context::Production),
    Some(Context::Backup),
    Some(Context::Development),
];

fuzz_target!(|data: &[u8]| {
    let f = fixture();

    if let Ok(envelope) = SignedEnvelope::from_json(data) {
        let again = SignedEnvelope::from_json(envelope.to_json().as_bytes())
            .expect("an envelope that parsed does not parse after printing");
        assert_eq!(again, envelope, "printing changed the envelope");
        if let Ok(payload) = envelope.verify(&f.keys) {
            // Signing is deterministic: an envelope that verifies is exactly what the key
            // makes of its payload (no second signature, no other encoding of either).
            assert_eq!(
                f.key.sign_bytes(&payload),
                envelope,
                "an envelope the key did not make verified"
            );
        }
        for context in CONTEXTS {
            if let Ok(bundle) = envelope.open_bundle(&f.keys, f.guid, context) {
                assert_eq!(bundle.server_guid, f.guid);
                assert!(context.is_none_or(|c| c == bundle.context));
            }
        }
    }

    if data.len() > 2 {
        let at = usize::from(u16::from_le_bytes([data[0], data[1]])) % f.text.len();
        let mut text = f.text.clone();
        for (i, b) in data[2..].iter().enumerate() {
            let Some(c) = text.get_mut(at + i) else { break };
            *c ^= b;
        }
        let opened = SignedEnvelope::from_json(&text).and_then(|e| {
            e.open_bundle(&f.keys, f.guid, Some(Context::Production))
                .map(|b| (e, b))
        });
        if let Ok((envelope, bundle)) = opened {
            assert_eq!(envelope, f.envelope, "a changed envelope opened");
            assert_eq!(bundle, f.bundle);
        }
    }
});
