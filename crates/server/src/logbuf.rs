//! The last log lines, kept in memory for the dashboard and the support bundle.
//!
//! [`LogBuffer::layer`] is a `tracing_subscriber` layer to install next to the fmt layer; it
//! formats each event as one line (time, level, target, span names, message and fields) and
//! keeps the newest `capacity` lines. It stores exactly what the logs say, nothing more.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Lines longer than this are cut, so the buffer's memory stays bounded.
pub const MAX_LINE_CHARS: usize = 2000;
pub const DEFAULT_CAPACITY: usize = 500;

#[derive(Debug, Clone)]
pub struct LogBuffer {
    inner: Arc<Mutex<VecDeque<String>>>,
    capacity: usize,
}

impl Default for LogBuffer {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl LogBuffer {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            inner: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity,
        }
    }

    /// A layer writing into this buffer (clones share it).
    pub fn layer(&self) -> LogLayer {
        LogLayer {
            buffer: self.clone(),
        }
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds one line (also for callers that are not tracing events).
    pub fn push(&self, mut line: String) {
        if line.len() > MAX_LINE_CHARS {
            let mut cut = MAX_LINE_CHARS;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        let mut q = self.lock();
        while q.len() >= self.capacity {
            q.pop_front();
        }
        q.push_back(line);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// See [`LogBuffer::layer`].
#[derive(Debug, Clone)]
pub struct LogLayer {
    buffer: LogBuffer,
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

impl<S> Layer<S> for LogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = format!(
            "{} {:>5} {}",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            meta.level(),
            meta.target()
        );
        if let Some(scope) = ctx.event_scope(event) {
            let names: Vec<&str> = scope.from_root().map(|s| s.name()).collect();
            if !names.is_empty() {
                let _ = write!(line, " {}", names.join(":"));
            }
        }
        line.push_str(": ");
        line.push_str(&fields.message);
        line.push_str(&fields.rest);
        self.buffer.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn keeps_the_newest_lines_formatted() {
        let buf = LogBuffer::new(3);
        let subscriber = tracing_subscriber::registry().with(buf.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(feature = "tts", count = 3, "lease granted");
            let span = tracing::info_span!("sync");
            let _g = span.enter();
            tracing::warn!(error = %"node down", "sync failed");
            for i in 0..3 {
                tracing::debug!(i, "tick");
            }
        });
        let lines = buf.lines();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.contains("tick")), "{lines:?}");
        assert!(lines[2].contains("DEBUG"));
        assert!(lines[2].contains("i=2"));

        let buf = LogBuffer::new(10);
        let subscriber = tracing_subscriber::registry().with(buf.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(feature = "tts", count = 3, "lease granted");
            let span = tracing::info_span!("sync");
            let _g = span.enter();
            tracing::warn!(error = %"node down", "sync failed");
        });
        let lines = buf.lines();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].contains(
                " INFO leasehold_server::logbuf::tests: lease granted feature=\"tts\" count=3"
            ),
            "{}",
            lines[0]
        );
        assert!(
            lines[1]
                .contains("WARN leasehold_server::logbuf::tests sync: sync failed error=node down"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn long_lines_are_cut() {
        let buf = LogBuffer::new(2);
        buf.push("é".repeat(MAX_LINE_CHARS));
        let l = &buf.lines()[0];
        assert!(l.len() <= MAX_LINE_CHARS + '…'.len_utf8());
        assert!(l.ends_with('…'));
        assert_eq!(LogBuffer::new(0).capacity(), 1);
    }
}
