//! The lease API's request (`POST /v1/lease`): decoded as the handler decodes it
//! (`serde_json` into `LeaseRequest`), checked with `LeaseRequest::validate` as the server
//! checks it, then, like the server, handed to the allocator. The input is read as one
//! request (which must round-trip through JSON) and as a stream of requests, one JSON value
//! after another, from any number of clients, which two allocators answer in turn
//! (`leasehold_fuzz::answer_and_check`: the bookkeeping stays consistent and nothing beyond
//! the licensed count is reserved, whatever the clients claim, lie or repeat). The
//! `allocator` target sends the allocators requests made from raw bytes instead of JSON.
#![no_main]

use leasehold_fuzz::{allocators, answer_and_check};
use leasehold_proto::LeaseRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<LeaseRequest>(data) {
        let _ = req.validate();
        let json = serde_json::to_vec(&req).unwrap();
        let back = serde_json::from_slice::<LeaseRequest>(&json)
            .expect("a request that decoded does not decode after encoding");
        assert_eq!(back, req, "re-encoding changed the request");
    }

    let mut allocators = allocators();
    let requests = serde_json::Deserializer::from_slice(data).into_iter::<LeaseRequest>();
    for (i, req) in requests.enumerate() {
        let Ok(req) = req else { break };
        if req.validate().is_err() {
            continue;
        }
        for alloc in &mut allocators {
            answer_and_check(alloc, i, &req);
        }
    }
});
