//! What a vendor should look at, from the servers' rows: GUID conflicts (forks), context
//! rejections, servers whose grace period ended or ends within 14 days, and servers silent
//! for more than N days. Pure.

use chrono::{DateTime, Utc};

use crate::api::{EventKind, VendorEvent};
use crate::store::ServerRecord;

/// Days before the end of the grace period from which a server is reported.
pub const GRACE_WARNING_DAYS: i64 = 14;

/// The events of `servers` at `now`, most urgent kind first, then by server.
pub fn events(servers: &[ServerRecord], now: DateTime<Utc>, silent_days: u32) -> Vec<VendorEvent> {
    let mut out = Vec::new();
    for s in servers {
        let event = |kind, at, detail: String| VendorEvent {
            kind,
            server: s.guid,
            installation: s.installation.clone(),
            context: s.context,
            at,
            detail,
        };
        // A fork refused before the GUID was last reassigned was resolved by that reassign.
        let fork_open = match (s.last_fork, s.reassigned_at) {
            (Some(fork), Some(reassigned)) => fork > reassigned,
            (_, None) => s.forks_detected > 0,
            (None, Some(_)) => false,
        };
        if fork_open {
            out.push(event(
                EventKind::Fork,
                s.last_fork,
                format!(
                    "{} sync(s) of a second copy refused (a copied data directory or cloned VM); reassign the GUID if the server was replaced",
                    s.forks_detected
                ),
            ));
        }
        if s.context_rejections > 0 {
            out.push(event(
                EventKind::ContextRejection,
                s.last_context_rejection,
                format!(
                    "{} sync(s) refused: the server reported another context than {}",
                    s.context_rejections, s.context
                ),
            ));
        }
        let Some(last) = s.last_sync else { continue };
        let grace_end = last + chrono::Duration::days(i64::from(s.grace_days));
        if now >= grace_end {
            out.push(event(
                EventKind::GraceEnded,
                Some(grace_end),
                format!(
                    "no sync since {}: its licenses are suspended until it syncs",
                    last.format("%Y-%m-%d")
                ),
            ));
        } else if grace_end - now <= chrono::Duration::days(GRACE_WARNING_DAYS) {
            out.push(event(
                EventKind::GraceEnding,
                Some(grace_end),
                format!(
                    "no sync since {}: its licenses are suspended in {} day(s) unless it syncs",
                    last.format("%Y-%m-%d"),
                    (grace_end - now).num_days()
                ),
            ));
        }
        if now - last > chrono::Duration::days(i64::from(silent_days)) {
            out.push(event(
                EventKind::Silent,
                Some(last),
                format!(
                    "silent for {} days (last sync {})",
                    (now - last).num_days(),
                    last.format("%Y-%m-%d %H:%M UTC")
                ),
            ));
        }
    }
    out.sort_by_key(|e| (e.kind, e.server));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use leasehold_proto::{Context, InstallationId, ServerGuid};

    fn server(b: u8, last_sync_days_ago: Option<i64>, now: DateTime<Utc>) -> ServerRecord {
        ServerRecord {
            guid: ServerGuid::from_bytes([b; 16]),
            installation: InstallationId::from_random([b; 8]),
            context: Context::Production,
            grace_days: 60,
            sync_interval_secs: 86_400,
            instance_id: None,
            bundle_serial: 1,
            acked_usage_seq: 0,
            head_generation: 1,
            last_sync: last_sync_days_ago.map(|d| now - chrono::Duration::days(d)),
            software_version: None,
            forks_detected: 0,
            last_fork: None,
            context_rejections: 0,
            last_context_rejection: None,
            reassigned_at: None,
        }
    }

    #[test]
    fn forks_rejections_grace_and_silence_are_reported_and_a_healthy_server_is_not() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let mut forked = server(1, Some(0), now);
        forked.forks_detected = 2;
        forked.last_fork = Some(now);
        // A fork the vendor resolved by reassigning the GUID afterwards is not reported.
        let mut resolved = server(7, Some(0), now);
        resolved.forks_detected = 1;
        resolved.last_fork = Some(now - chrono::Duration::hours(2));
        resolved.reassigned_at = Some(now - chrono::Duration::hours(1));
        let mut wrong_context = server(2, Some(0), now);
        wrong_context.context_rejections = 1;
        let servers = vec![
            forked,
            wrong_context,
            server(3, Some(50), now), // grace ends in 10 days; silent too
            server(4, Some(61), now), // grace ended
            server(5, Some(1), now),  // healthy
            server(6, None, now),     // never synced: nothing to say yet
            resolved,
        ];
        let got: Vec<(EventKind, u8)> = events(&servers, now, 7)
            .iter()
            .map(|e| (e.kind, e.server.to_string().as_bytes()[1]))
            .collect();
        let want = |kind, b: u8| {
            (
                kind,
                ServerGuid::from_bytes([b; 16]).to_string().as_bytes()[1],
            )
        };
        assert_eq!(
            got,
            vec![
                want(EventKind::Fork, 1),
                want(EventKind::ContextRejection, 2),
                want(EventKind::GraceEnded, 4),
                want(EventKind::GraceEnding, 3),
                want(EventKind::Silent, 3),
                want(EventKind::Silent, 4),
            ]
        );
        let e = events(&servers, now, 7);
        assert!(e[3].detail.contains("in 10 day(s)"), "{}", e[3].detail);
        assert!(events(&servers[4..5], now, 0)
            .iter()
            .any(|e| e.kind == EventKind::Silent));
    }
}
