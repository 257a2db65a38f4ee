//! A stub license server on loopback: plain std sockets, one thread, granting a fixed quota
//! of every feature asked. For tests and benchmarks that need a client's cache filled but
//! not a real server (the client's allocation test and its `acquire` benchmark).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::str::FromStr;

use leasehold_proto::{Context, FeatureQuota, LeaseRequest, LeaseResponse, ServerGuid};

/// Starts the stub; it runs until the process ends.
pub fn start(quota: u32) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let Ok(read_half) = conn.try_clone() else {
                continue;
            };
            let mut r = BufReader::new(read_half);
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let post = line.starts_with("POST ");
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.trim().eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            let reply = if post {
                let Ok(req) = serde_json::from_slice::<LeaseRequest>(&body) else {
                    continue;
                };
                let resp = LeaseResponse {
                    server_guid: ServerGuid::from_str("{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}")
                        .expect("guid"),
                    context: Context::Production,
                    lease_secs: 120,
                    features: req
                        .features
                        .keys()
                        .map(|f| {
                            (
                                f.clone(),
                                FeatureQuota {
                                    quota,
                                    code: None,
                                    reason: None,
                                    keep: quota,
                                    counted_acquired: 0,
                                    counted_denied: 0,
                                },
                            )
                        })
                        .collect(),
                    epoch: 1,
                };
                let json = serde_json::to_string(&resp).expect("json");
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                    json.len()
                )
            } else {
                "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n".to_string()
            };
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    addr
}
