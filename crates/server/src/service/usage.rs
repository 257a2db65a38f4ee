//! Usage: the periodic flush (ledger, allocator snapshot, heartbeat and time high-water mark
//! in one transaction) and the usage history the dashboard draws.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use leasehold_proto::Feature;
use leasehold_web::ApiError;

use super::{lock, read, LicenseServer};
use crate::history::{self, HistoryPoint};
use crate::store::{FlushWrite, Write};

impl LicenseServer {
    /// Persists usage counts, closes finished hours, lowers the persisted reservation bounds
    /// and records the time high-water mark, in one transaction.
    pub async fn flush(&self) -> Result<(), ApiError> {
        let now = self.clock.now();
        let mono = self.clock.monotonic_ms();
        self.high_water.observe(now);
        let guid = read(&self.bundle).guid;
        let (pending, snapshot, closed) = {
            let mut guard = lock(&self.leases);
            let s = &mut *guard;
            // Leases that lapsed end their license time now, even with no request coming.
            s.alloc.expire(mono);
            s.ledger.observe_all(now, |f| s.alloc.in_use(f));
            let (open, close) = s.ledger.take_flush(now).unwrap_or_default();
            let snapshot = s.alloc.snapshot();
            let write = FlushWrite {
                open,
                licensed: if close.is_empty() {
                    BTreeMap::new()
                } else {
                    s.licensed_counts()
                },
                history_from: (!close.is_empty())
                    .then(|| now - chrono::Duration::days(history::HISTORY_KEEP_DAYS)),
                close: close.clone(),
                guid,
                snapshot: snapshot.clone(),
                high_water: Some(self.high_water.get()),
                alive_at: Some(now),
            };
            // Queued under the lock, in order with the raises of the lease path.
            (
                self.writer.queue(Write::Flush(Box::new(write))),
                snapshot,
                close,
            )
        };
        match pending.wait().await {
            Ok(()) => {
                lock(&self.leases).alloc.mark_durable(&snapshot);
                Ok(())
            }
            Err(e) => {
                let mut s = lock(&self.leases);
                s.ledger.retry(closed);
                s.alloc.snapshot_failed(&snapshot);
                Err(e.into())
            }
        }
    }

    /// Closes the open hours under `guid` (the GUID they were recorded under) at once.
    pub(super) async fn close_hours(
        &self,
        guid: leasehold_proto::ServerGuid,
    ) -> Result<bool, ApiError> {
        let now = self.clock.now();
        let (close, licensed) = {
            let mut guard = lock(&self.leases);
            let s = &mut *guard;
            s.ledger.observe_all(now, |f| s.alloc.in_use(f));
            (s.ledger.take_all(), s.licensed_counts())
        };
        if close.is_empty() {
            return Ok(false);
        }
        self.writer
            .queue(Write::Flush(Box::new(FlushWrite {
                close,
                guid: Some(guid),
                licensed,
                ..FlushWrite::default()
            })))
            .wait()
            .await?;
        Ok(true)
    }

    /// Hourly usage from `since` on, of one feature or all: the stored closed hours merged
    /// with the hours still open in the ledger (those carry today's licensed count). Sorted
    /// by start, then feature.
    pub async fn usage_history(
        &self,
        feature: Option<&Feature>,
        since: DateTime<Utc>,
    ) -> Result<Vec<HistoryPoint>, ApiError> {
        let stored = self.store.usage_history(feature, since).await?;
        let open: Vec<HistoryPoint> = {
            let s = lock(&self.leases);
            let licensed = s.licensed_counts();
            s.ledger
                .current()
                .iter()
                .filter(|((f, hour), _)| {
                    feature.is_none_or(|want| want == f)
                        && *hour + chrono::Duration::seconds(i64::from(history::HOUR_SECS)) > since
                })
                .map(|((f, hour), c)| {
                    let l = licensed.get(f).copied().unwrap_or(0);
                    HistoryPoint::from_counts(f.clone(), *hour, history::HOUR_SECS, c, l, true)
                })
                .collect()
        };
        Ok(history::merge(stored, open))
    }

    /// The customer's usage report of the period `query` asks for (UTC days; the last 30 by
    /// default): one row per feature per hour. A bad period is refused (400) naming the
    /// parameter.
    pub async fn usage_export(
        &self,
        query: &crate::export::PeriodQuery,
    ) -> Result<leasehold_proto::api::server::UsageExport, ApiError> {
        let (from, to) = query
            .period(self.clock.now().date_naive())
            .map_err(ApiError::bad_request)?;
        let points = self
            .usage_history(None, crate::export::start_of(from))
            .await?;
        Ok(crate::export::report(&points, from, to))
    }

    /// Usage from `since` on in five-minute slots where this process recorded them (the last
    /// day at most), hourly before that; for the 24-hour chart. Slots carry today's licensed
    /// count.
    pub async fn usage_recent(
        &self,
        feature: Option<&Feature>,
        since: DateTime<Utc>,
    ) -> Result<Vec<HistoryPoint>, ApiError> {
        let hourly = self.usage_history(feature, since).await?;
        let slot = i64::from(history::RECENT_SLOT_SECS);
        let now_slot = history::slot_of(self.clock.now());
        let (recent, recent_from) = {
            let s = lock(&self.leases);
            let licensed = s.licensed_counts();
            let recent: Vec<HistoryPoint> = s
                .ledger
                .recent()
                .iter()
                .filter(|(start, _)| **start + chrono::Duration::seconds(slot) > since)
                .flat_map(|(start, features)| {
                    features
                        .iter()
                        .filter(|(f, _)| feature.is_none_or(|want| want == *f))
                        .map(|(f, c)| {
                            let l = licensed.get(f).copied().unwrap_or(0);
                            HistoryPoint::from_counts(
                                f.clone(),
                                *start,
                                history::RECENT_SLOT_SECS,
                                c,
                                l,
                                *start >= now_slot,
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            (recent, s.ledger.recent_from())
        };
        Ok(history::recent_series(hourly, recent, recent_from))
    }

    /// Features to offer in the usage charts: those with history, those in use this hour
    /// and those licensed now.
    pub async fn history_features(&self) -> Result<Vec<Feature>, ApiError> {
        let mut out: BTreeSet<Feature> = self.store.history_features().await?.into_iter().collect();
        let s = lock(&self.leases);
        out.extend(s.ledger.current().keys().map(|(f, _)| f.clone()));
        out.extend(s.licensed_counts().into_keys());
        Ok(out.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::{TimeZone, Timelike};
    use leasehold_proto::{Clock, ManualClock, ServerGuid, TrustedKeys};

    use super::*;
    use crate::allocator::PoolLicense;
    use crate::ledger::Counts;
    use crate::service::ServerOptions;

    #[tokio::test]
    async fn usage_history_merges_closed_and_open_hours() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 28, 9, 10, 0).unwrap();
        let clock = Arc::new(ManualClock::new(t0));
        let options = ServerOptions {
            data_dir: dir.path().to_path_buf(),
            nodes: vec![],
            trusted_keys: TrustedKeys::new(),
            guid: None,
            node_timeout: Duration::from_secs(1),
            client_key_overlap: crate::client_key::DEFAULT_OVERLAP,
            client_limits: crate::ClientLimits::default(),
            node_connection: Default::default(),
        };
        let server = LicenseServer::open(options.clone(), clock.clone())
            .await
            .unwrap();
        let tts = Feature::parse("tts").unwrap();
        let asr = Feature::parse("asr.en-US").unwrap();
        lock(&server.leases).alloc.set_licenses(&[PoolLicense {
            feature: tts.clone(),
            count: 8,
            maintenance_until: t0.date_naive(),
        }]);
        let record = |f: &Feature, in_use: u32, denials: u64| {
            let c = Counts {
                grants: 1,
                denials,
                ..Counts::default()
            };
            lock(&server.leases)
                .ledger
                .record(f, clock.now(), in_use, &c);
        };
        record(&tts, 5, 0);
        record(&asr, 1, 0);
        clock.advance(chrono::Duration::minutes(20));
        record(&tts, 7, 2);
        server.flush().await.unwrap();
        // 10:05: 09:00 closes (licensed 8 recorded), 10:00 is open.
        clock.advance(chrono::Duration::minutes(35));
        record(&tts, 3, 0);
        server.flush().await.unwrap();

        let since = t0 - chrono::Duration::hours(24);
        let h = server.usage_history(Some(&tts), since).await.unwrap();
        let got: Vec<(u32, u32, u64, u32, bool)> = h
            .iter()
            .map(|p| (p.start.hour(), p.peak_in_use, p.denials, p.licensed, p.open))
            .collect();
        assert_eq!(got, vec![(9, 7, 2, 8, false), (10, 3, 0, 8, true)]);
        assert_eq!(server.usage_history(None, since).await.unwrap().len(), 3);
        assert_eq!(
            server.history_features().await.unwrap(),
            vec![asr.clone(), tts.clone()]
        );
        // Five-minute slots where recorded, hourly before.
        let r = server.usage_recent(Some(&tts), since).await.unwrap();
        assert_eq!(r.len(), 3, "{r:#?}");
        assert!(r.iter().all(|p| p.secs == history::RECENT_SLOT_SECS));
        assert_eq!(r[1].denials, 2);
        assert!(r[2].open && !r[0].open);

        // The history survives a restart and outlives acknowledgement (buckets are deleted on
        // ack, the history is not); hourly only after a restart.
        let guid = ServerGuid::from_bytes([1; 16]);
        server.store.ack_usage(guid, u64::MAX).await.unwrap();
        server.close().await;
        drop(server);
        let server = LicenseServer::open(options.clone(), clock.clone())
            .await
            .unwrap();
        let h = server.usage_history(Some(&tts), since).await.unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].peak_in_use, h[0].licensed), (7, 8));
        assert_eq!(server.usage_recent(Some(&tts), since).await.unwrap(), h);

        // Pruned after 35 days.
        clock.advance(chrono::Duration::days(36));
        let one = Counts {
            grants: 1,
            ..Counts::default()
        };
        lock(&server.leases)
            .ledger
            .record(&tts, clock.now(), 1, &one);
        server.flush().await.unwrap();
        clock.advance(chrono::Duration::hours(1));
        server.flush().await.unwrap();
        let h = server.usage_history(Some(&tts), since).await.unwrap();
        assert_eq!(h.len(), 1, "{h:#?}");
        assert_eq!(
            h[0].start,
            leasehold_proto::usage::hour_of(clock.now() - chrono::Duration::hours(1))
        );
        server.close().await;
    }
}
