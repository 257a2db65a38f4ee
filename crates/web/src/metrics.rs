//! One Prometheus recorder per process. A node and a server running in one process (the
//! demo, the tests) must share it: a second recorder cannot be installed, so each service
//! asks here instead of installing its own.

use std::sync::OnceLock;

use metrics_exporter_prometheus::PrometheusBuilder;

pub use metrics_exporter_prometheus::PrometheusHandle;

/// The process-wide recorder's handle, installing it on first use. `None` only when some
/// other code installed a different recorder first.
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

/// The metrics in Prometheus text format.
pub fn render() -> String {
    prometheus().map(|h| h.render()).unwrap_or_default()
}
