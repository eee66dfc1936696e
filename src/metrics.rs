//! What an operator's Prometheus scrapes from `/metrics` (docs/deploy.md): one
//! registry per app instance, with typed handles that the relay, the socket and the
//! cross-instance bus record into.
//!
//! A registry per instance rather than a process-global recorder: the integration
//! tests run several apps in one process, and each must count only its own answers.
//! Recording is an atomic add (counters) or a few (histograms: a bucket, the count and
//! the sum), cheap enough for every token the relay forwards.

use std::time::Duration;

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::protocol::{ErrorCode, ServerFrame, EndReason};

/// How an answer can end, the values of `tutor_answers_ended_total{how}`: the `end`
/// frame's reasons, then an answer that failed and one cut by a shutdown.
pub const ENDINGS: [&str; 6] = ["complete", "length", "content_filter", "stopped", "error", "interrupted"];

/// The metrics of one app instance.
pub struct Metrics {
    registry: Registry,
    open_sockets: IntGauge,
    answers_streaming: IntGauge,
    first_token: Histogram,
    relay_latency: Histogram,
    tokens_relayed: IntCounter,
    answers_ended: IntCounterVec,
    errors: IntCounterVec,
    upstream_responses: IntCounterVec,
    db_writes: Histogram,
    notification_lag: Histogram,
    takeovers: IntCounter,
    notifications_sent: IntCounter,
}

/// Seconds, from 0.5 ms to 30 s: each histogram takes the slice of these it needs.
const FIRST_TOKEN_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0];
const RELAY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
const DB_WRITE_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const LAG_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("a valid metric name");
            registry.register(Box::new(gauge.clone())).expect("registered once");
            gauge
        };
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("a valid metric name");
            registry.register(Box::new(counter.clone())).expect("registered once");
            counter
        };
        let counters = |name: &str, help: &str, label: &str| {
            let counters = IntCounterVec::new(Opts::new(name, help), &[label]).expect("a valid metric name");
            registry.register(Box::new(counters.clone())).expect("registered once");
            counters
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let histogram = Histogram::with_opts(opts).expect("a valid metric name");
            registry.register(Box::new(histogram.clone())).expect("registered once");
            histogram
        };
        let metrics = Metrics {
            open_sockets: gauge("tutor_open_sockets", "Chat WebSockets open on this instance."),
            answers_streaming: gauge("tutor_answers_streaming", "Answers this instance is streaming now."),
            first_token: histogram(
                "tutor_first_token_seconds",
                "From an answer's task starting (the model request) to its first token.",
                FIRST_TOKEN_BUCKETS,
            ),
            relay_latency: histogram(
                "tutor_relay_latency_seconds",
                "From a token arriving from the model to its frame written to a follower's socket.",
                RELAY_BUCKETS,
            ),
            tokens_relayed: counter("tutor_tokens_relayed_total", "Chunks (model deltas) published to answers' followers."),
            answers_ended: counters("tutor_answers_ended_total", "Answers by how they ended.", "how"),
            errors: counters("tutor_errors_total", "Error frames sent to clients, by code.", "code"),
            upstream_responses: counters(
                "tutor_upstream_responses_total",
                "Responses of the model API to answer requests, by HTTP status.",
                "status",
            ),
            db_writes: histogram(
                "tutor_db_write_seconds",
                "Answer-row writes (a checkpoint batch or a batch of ends), one transaction each.",
                DB_WRITE_BUCKETS,
            ),
            notification_lag: histogram(
                "tutor_notification_lag_seconds",
                "From a cross-instance notification being sent to this instance acting on it.",
                LAG_BUCKETS,
            ),
            takeovers: counter(
                "tutor_takeovers_total",
                "Answers this instance took over from an instance that stopped renewing their lease.",
            ),
            notifications_sent: counter(
                "tutor_bus_notifications_sent_total",
                "Notifications this instance sent on the instances' bus (PostgreSQL NOTIFY).",
            ),
            registry,
        };
        // Every ending shows from the start (at 0), so a rate over it is defined.
        for how in ENDINGS {
            metrics.answers_ended.with_label_values(&[how]);
        }
        metrics
    }

    /// The first token of an answer came `wait` after its task started.
    pub fn first_token(&self, wait: Duration) {
        self.first_token.observe(wait.as_secs_f64());
    }

    /// A chunk reached a follower's socket `latency` after the model sent it.
    pub fn relay_latency(&self, latency: Duration) {
        self.relay_latency.observe(latency.as_secs_f64());
    }

    /// A chunk was published to an answer's followers (once, however many follow).
    pub fn token_relayed(&self) {
        self.tokens_relayed.inc();
    }

    /// An answer ended with `last`, its `end` or `error` frame.
    pub fn answer_ended(&self, last: &ServerFrame) {
        let how = match last {
            ServerFrame::End { reason, .. } => match reason {
                EndReason::Complete => "complete",
                EndReason::Length => "length",
                EndReason::ContentFilter => "content_filter",
                EndReason::Stopped => "stopped",
            },
            ServerFrame::Error { code: ErrorCode::Interrupted, .. } => "interrupted",
            _ => "error",
        };
        self.answers_ended.with_label_values(&[how]).inc();
    }

    /// An error frame with `code` went to a client (an answer's error counts once,
    /// however many sockets follow it).
    pub fn error_sent(&self, code: ErrorCode) {
        self.errors.with_label_values(&[code.as_str()]).inc();
    }

    /// The model API answered an answer request with HTTP `status`.
    pub fn upstream_status(&self, status: u16) {
        self.upstream_responses.with_label_values(&[&status.to_string()]).inc();
    }

    /// One answer-row transaction took `took`.
    pub fn db_write(&self, took: Duration) {
        self.db_writes.observe(took.as_secs_f64());
    }

    /// For the cross-instance bus: a notification sent by another instance was acted
    /// on here `lag` after it was sent.
    pub fn record_notification_lag(&self, lag: Duration) {
        self.notification_lag.observe(lag.as_secs_f64());
    }

    /// For the cross-instance bus: this instance took over an answer whose instance
    /// stopped renewing its lease.
    /// One notification sent on the instances' bus.
    pub fn notification_sent(&self) {
        self.notifications_sent.inc();
    }

    pub fn record_takeover(&self) {
        self.takeovers.inc();
    }

    /// The Prometheus text format, with the two gauges read now (they are counts the
    /// server keeps anyway: open sockets, running answers).
    pub fn render(&self, open_sockets: usize, answers_streaming: usize) -> String {
        self.open_sockets.set(i64::try_from(open_sockets).unwrap_or(i64::MAX));
        self.answers_streaming.set(i64::try_from(answers_streaming).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "cannot encode the metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of one sample line, `name{labels} value`, in rendered text.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|value| value.parse().ok())
    }

    #[test]
    fn the_bus_metrics_and_every_ending_show_at_zero() {
        let text = Metrics::new().render(0, 0);
        assert_eq!(sample(&text, "tutor_takeovers_total"), Some(0.0));
        assert_eq!(sample(&text, "tutor_notification_lag_seconds_count"), Some(0.0));
        for how in ENDINGS {
            assert_eq!(sample(&text, &format!("tutor_answers_ended_total{{how=\"{how}\"}}")), Some(0.0), "{how}");
        }
    }

    #[test]
    fn recordings_show_in_the_text() {
        let metrics = Metrics::new();
        metrics.record_takeover();
        metrics.record_notification_lag(Duration::from_millis(30));
        metrics.upstream_status(500);
        metrics.error_sent(ErrorCode::Busy);
        metrics.first_token(Duration::from_millis(300));
        let text = metrics.render(3, 2);
        assert_eq!(sample(&text, "tutor_takeovers_total"), Some(1.0));
        assert_eq!(sample(&text, "tutor_notification_lag_seconds_bucket{le=\"0.025\"}"), Some(0.0));
        assert_eq!(sample(&text, "tutor_notification_lag_seconds_bucket{le=\"0.05\"}"), Some(1.0));
        assert_eq!(sample(&text, "tutor_upstream_responses_total{status=\"500\"}"), Some(1.0));
        assert_eq!(sample(&text, "tutor_errors_total{code=\"busy\"}"), Some(1.0));
        assert_eq!(sample(&text, "tutor_first_token_seconds_count"), Some(1.0));
        assert_eq!(sample(&text, "tutor_open_sockets"), Some(3.0));
        assert_eq!(sample(&text, "tutor_answers_streaming"), Some(2.0));
    }
}
