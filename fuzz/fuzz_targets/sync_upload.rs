//! The sync upload a node takes from a license server: decoded as the node's API decodes it
//! (`serde_json` into `SyncUpload`), then `SyncUpload::validate`, which the node runs before
//! it stores anything. Neither may panic, and an upload that decodes must encode to JSON
//! that decodes to the same upload and validates the same way.
#![no_main]

use leasehold_proto::SyncUpload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(upload) = serde_json::from_slice::<SyncUpload>(data) else {
        return;
    };
    let valid = upload.validate();
    let json = serde_json::to_vec(&upload).unwrap();
    match serde_json::from_slice::<SyncUpload>(&json) {
        Ok(back) => {
            assert_eq!(back, upload, "re-encoding changed the upload");
            assert_eq!(back.validate(), valid);
        }
        Err(e) => panic!(
            "an upload that decoded does not decode after encoding ({e}): {}",
            String::from_utf8_lossy(&json)
        ),
    }
});
