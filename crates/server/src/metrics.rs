//! Every metric the license server exports, with its HELP text: the one list to extend
//! when a `counter!`, `gauge!` or `histogram!` is added (a unit test compares it with the
//! source). Registered when a server opens its data directory.

use leasehold_web::metrics::Description;
use metrics::Unit;

pub const METRICS: &[Description] = &[
    Description::gauge(
        "leasehold_server_licenses",
        Some(Unit::Count),
        "Licenses this server serves today, per feature (the licensed count).",
    ),
    Description::gauge(
        "leasehold_server_in_use",
        Some(Unit::Count),
        "Licenses in use per feature, as the clients last reported.",
    ),
    Description::gauge(
        "leasehold_server_quota_reserved",
        Some(Unit::Count),
        "Licenses per feature reserved by the quotas of unexpired client leases.",
    ),
    Description::gauge(
        "leasehold_server_grace_remaining_seconds",
        Some(Unit::Seconds),
        "Seconds until the bundle's not_after, after which the server serves no licenses until a sync succeeds (0 once passed).",
    ),
    Description::gauge(
        "leasehold_server_state",
        None,
        "1 for the server's state now (unconfigured, not_synced, ok, expired, clock_tampered), 0 for the others.",
    ),
    Description::gauge(
        "leasehold_server_context",
        None,
        "1 for the context of this server's bundle (production, backup, development), 0 for the others; all 0 before the first bundle.",
    ),
    Description::gauge(
        "leasehold_server_nodes",
        Some(Unit::Count),
        "License nodes this server syncs with (0: air-gapped, bundles come by file).",
    ),
    Description::gauge(
        "leasehold_server_last_sync_success_timestamp_seconds",
        Some(Unit::Seconds),
        "Unix time of the last bundle applied (a sync, or a file imported on an air-gapped site); absent before the first.",
    ),
    Description::gauge(
        "leasehold_server_storage_healthy",
        None,
        "1 when the last write of lease state and usage to the data directory succeeded, 0 while writes fail (a full disk, a read-only file system): licenses are still served, usage is kept in memory and retried.",
    ),
    Description::gauge(
        "leasehold_server_storage_failing_since_timestamp_seconds",
        Some(Unit::Seconds),
        "Unix time of the first failed write of the current failing spell; 0 while writes succeed.",
    ),
    Description::counter(
        "leasehold_server_syncs_total",
        "Syncs by result: ok (a bundle applied, from a node or an imported file) or error (no node gave a bundle that passes every check).",
    ),
    Description::histogram(
        "leasehold_server_sync_duration_seconds",
        Some(Unit::Seconds),
        "Time of one sync with the license nodes (every node tried until one answers), by result (ok, error).",
    ),
    Description::counter(
        "leasehold_server_lease_requests_total",
        "Lease requests (POST /v1/lease) by the server's state when they arrived.",
    ),
    Description::histogram(
        "leasehold_server_lease_request_duration_seconds",
        Some(Unit::Seconds),
        "Time to answer one lease request once decoded, the disk write of a raised reservation included.",
    ),
    Description::counter(
        "leasehold_server_grants_total",
        "Licenses acquired by application calls per feature, as the clients reported them.",
    ),
    Description::counter(
        "leasehold_server_denials_total",
        "Application calls refused for lack of a license per feature, as the clients reported them.",
    ),
    Description::counter(
        "leasehold_server_denials_while_free_total",
        "Of the denials, those reported while this server had licenses neither in use nor reserved (a deny-wait avoids them).",
    ),
    Description::counter(
        "leasehold_server_client_key_refusals_total",
        "Lease and release requests refused (401) for the client key, by reason (missing, wrong).",
    ),
    Description::counter(
        "leasehold_server_client_key_previous_total",
        "Lease and release requests accepted with a replaced client key still within --client-key-overlap.",
    ),
    Description::counter(
        "leasehold_server_client_id_refusals_total",
        "Requests refused because their client id is bound to another process's client secret (client_id_in_use).",
    ),
    Description::counter(
        "leasehold_server_clients_refused_total",
        "New client ids refused, by reason: too_many_clients (--max-clients) or rate_limited (--new-clients-per-minute).",
    ),
    Description::counter(
        "leasehold_server_state_commits_total",
        "Group commits of lease state (raised reservations, snapshots) to the data directory.",
    ),
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_the_server_records_is_described_and_nothing_else() {
        leasehold_testkit::metrics::assert_described(
            env!("CARGO_MANIFEST_DIR"),
            super::METRICS.iter().map(|d| d.name),
        );
    }
}
