//! Every metric the node exports, with its HELP text: the one list to extend when a
//! `counter!`, `gauge!` or `histogram!` is added (a unit test compares it with the source).

use leasehold_web::metrics::Description;
use metrics::Unit;

pub const METRICS: &[Description] = &[
    Description::counter(
        "leasehold_node_syncs_total",
        "Syncs answered, by result: ok or the refusal code (guid_in_use, unknown_server, context_mismatch, bad_request, ...).",
    ),
    Description::histogram(
        "leasehold_node_sync_duration_seconds",
        Some(Unit::Seconds),
        "Time to answer one sync, from the decoded upload to the signed bundle, its group commit included.",
    ),
    Description::histogram(
        "leasehold_node_sync_batch_size",
        Some(Unit::Count),
        "Syncs written in one group commit.",
    ),
    Description::gauge(
        "leasehold_node_db_connections",
        Some(Unit::Count),
        "Connections of the database pool, by state (in_use, idle).",
    ),
    Description::gauge(
        "leasehold_node_db_connections_max",
        Some(Unit::Count),
        "Most connections the database pool opens (max_connections).",
    ),
    Description::counter(
        "leasehold_node_usage_maintenance_total",
        "Usage maintenance passes (partitions, roll-up, retention), by result (ok, error).",
    ),
    Description::counter(
        "leasehold_node_usage_rows_rolled_up_total",
        "Hourly usage rows folded into daily rows.",
    ),
    Description::counter(
        "leasehold_node_usage_daily_rows_deleted_total",
        "Daily usage rows deleted past --usage-retention-days.",
    ),
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_the_node_records_is_described_and_nothing_else() {
        leasehold_testkit::metrics::assert_described(
            env!("CARGO_MANIFEST_DIR"),
            super::METRICS.iter().map(|d| d.name),
        );
    }
}
