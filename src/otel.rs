//! OpenTelemetry export (feature `otel`): the layers' spans ([`crate::trace`]) and the
//! metrics registry ([`Metrics`]) sent over OTLP (HTTP, protobuf) to a collector.
//!
//! * Spans: [`Otel::layer`] is a `tracing-opentelemetry` layer to add to your
//!   `tracing_subscriber` registry; every span the layers open (and yours) is exported in
//!   batches, with its fields as attributes.
//! * Metrics: [`Otel::export_metrics`] reports every family of a [`Metrics`] registry,
//!   with the same names (counters without their `_total`, which OTLP-to-Prometheus
//!   bridges add back) and labels as attributes, read from the registry at each export
//!   (every 10 s unless [`OtelBuilder::metrics_every`] says otherwise). OTLP has no
//!   instrument that observes a histogram kept elsewhere, so a histogram goes as three
//!   cumulative counters, `<name>_bucket` (attribute `le`), `<name>_sum` and
//!   `<name>_count`: `histogram_quantile` works on the first as on the original.
//!
//! Plain `http://` only (a collector beside the service); the exporter runs on threads of
//! its own, so it needs no Tokio runtime and never blocks a request.
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//! use tenant_guard::{metrics::Metrics, otel::Otel};
//!
//! let metrics = Metrics::new();
//! let otel = Otel::builder("my-service").endpoint("http://127.0.0.1:4318").build()?;
//! otel.export_metrics(&metrics);
//! tracing_subscriber::registry().with(otel.layer()).init();
//! // ... serve; then, before exiting:
//! otel.shutdown();
//! # Ok::<(), tenant_guard::otel::OtelError>(())
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

use crate::metrics::{MetricKind, Metrics};

/// Why the exporters could not be built.
///
/// ```
/// use tenant_guard::otel::{Otel, OtelError};
///
/// let err = Otel::builder("svc").endpoint("https://collector:4318").build().unwrap_err();
/// assert!(matches!(&err, OtelError::Endpoint(url) if url == "https://collector:4318"));
/// assert!(err.to_string().contains("expected an http:// URL"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// The endpoint is not an `http://` URL.
    #[error("OTLP endpoint `{0}`: expected an http:// URL (e.g. http://127.0.0.1:4318)")]
    Endpoint(String),
    /// The OTLP exporter refused its settings.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
}

/// Builds an [`Otel`] ([`Otel::builder`]).
///
/// ```
/// use std::time::Duration;
/// use tenant_guard::otel::Otel;
///
/// let otel = Otel::builder("billing-api")
///     .endpoint("http://127.0.0.1:4318")
///     .metrics_every(Duration::from_secs(30))
///     .timeout(Duration::from_secs(2))
///     .build()
///     .unwrap();
/// otel.shutdown();
/// ```
#[derive(Debug, Clone)]
pub struct OtelBuilder {
    service: String,
    endpoint: Option<String>,
    metrics_every: Duration,
    timeout: Duration,
}

impl OtelBuilder {
    /// The collector's base URL (`http://host:4318`): spans go to `/v1/traces`, metrics
    /// to `/v1/metrics`. Default: `OTEL_EXPORTER_OTLP_ENDPOINT` (and the other standard
    /// `OTEL_EXPORTER_OTLP_*` variables), else `http://localhost:4318`.
    ///
    /// ```
    /// use tenant_guard::otel::Otel;
    /// // A base URL: `/v1/traces` and `/v1/metrics` are added to it.
    /// assert!(Otel::builder("svc").endpoint("http://otel-collector:4318/").build().is_ok());
    /// assert!(Otel::builder("svc").endpoint("otel-collector:4318").build().is_err()); // no http://
    /// ```
    pub fn endpoint(mut self, base: impl Into<String>) -> Self {
        self.endpoint = Some(base.into());
        self
    }

    /// How often metrics are exported (default 10 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::otel::Otel;
    /// let builder = Otel::builder("svc").metrics_every(Duration::from_secs(60));
    /// assert!(format!("{builder:?}").contains("metrics_every: 60s"));
    /// ```
    pub fn metrics_every(mut self, every: Duration) -> Self {
        self.metrics_every = every;
        self
    }

    /// The longest one export may take (default 5 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::otel::Otel;
    /// // Nothing listens on port 9 here: a flush gives up within the timeout and says so.
    /// let otel = Otel::builder("svc").endpoint("http://127.0.0.1:9").timeout(Duration::from_millis(500)).build().unwrap();
    /// otel.export_metrics(&tenant_guard::metrics::Metrics::new());
    /// assert!(otel.flush().is_err());
    /// otel.shutdown();
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The span and metric exporters. Nothing is sent until a span closes or metrics are
    /// due.
    ///
    /// ```
    /// use tenant_guard::otel::Otel;
    /// assert!(Otel::builder("svc").endpoint("ftp://x").build().is_err());
    /// ```
    pub fn build(self) -> Result<Otel, OtelError> {
        let url = |path: &str| -> Result<Option<String>, OtelError> {
            let Some(base) = &self.endpoint else {
                return Ok(None);
            };
            if !base.starts_with("http://") {
                return Err(OtelError::Endpoint(base.clone()));
            }
            Ok(Some(format!("{}{path}", base.trim_end_matches('/'))))
        };
        let exporter =
            |e: opentelemetry_otlp::ExporterBuildError| OtelError::Exporter(e.to_string());
        let resource = Resource::builder()
            .with_service_name(self.service.clone())
            .build();

        let mut spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_timeout(self.timeout);
        if let Some(u) = url("/v1/traces")? {
            spans = spans.with_endpoint(u);
        }
        let tracer_provider = SdkTracerProvider::builder()
            .with_batch_exporter(spans.build().map_err(exporter)?)
            .with_resource(resource.clone())
            .build();

        let mut metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_timeout(self.timeout);
        if let Some(u) = url("/v1/metrics")? {
            metrics = metrics.with_endpoint(u);
        }
        let reader = PeriodicReader::builder(metrics.build().map_err(exporter)?)
            .with_interval(self.metrics_every)
            .build();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        let tracer = tracer_provider.tracer("tenant-guard");
        Ok(Otel {
            tracer_provider,
            meter_provider,
            tracer,
        })
    }
}

/// The OTLP exporters of spans and metrics (see the [module docs](self)).
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
/// use tenant_guard::{metrics::Metrics, otel::Otel};
///
/// let otel = Otel::builder("billing-api").endpoint("http://127.0.0.1:4318").build().unwrap();
/// otel.export_metrics(&Metrics::new());
/// let subscriber = tracing_subscriber::registry().with(otel.layer());
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info_span!("checkout").in_scope(|| tracing::info!("paid"));
/// });
/// otel.shutdown();
/// ```
#[derive(Debug)]
pub struct Otel {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    tracer: Tracer,
}

impl Otel {
    /// A builder for the service named `service` (the `service.name` resource).
    ///
    /// ```
    /// let otel = tenant_guard::otel::Otel::builder("svc").endpoint("http://127.0.0.1:4318").build();
    /// assert!(otel.is_ok());
    /// ```
    pub fn builder(service: impl Into<String>) -> OtelBuilder {
        OtelBuilder {
            service: service.into(),
            endpoint: None,
            metrics_every: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }

    /// The exporters `OTEL_EXPORTER_OTLP_ENDPOINT` describes, or `None` when it is unset
    /// (nothing to export to).
    ///
    /// ```standalone_crate
    /// // Unset here: nothing to export to (a process of its own: nothing else reads it).
    /// # #[allow(unsafe_code)]
    /// # unsafe { std::env::remove_var("OTEL_EXPORTER_OTLP_ENDPOINT") };
    /// assert!(tenant_guard::otel::Otel::from_env("svc").unwrap().is_none());
    /// ```
    pub fn from_env(service: impl Into<String>) -> Result<Option<Self>, OtelError> {
        match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Ok(base) if !base.is_empty() => Self::builder(service).endpoint(base).build().map(Some),
            _ => Ok(None),
        }
    }

    /// A `tracing` layer that exports every span it sees.
    ///
    /// ```
    /// use tracing_subscriber::layer::SubscriberExt;
    /// let otel = tenant_guard::otel::Otel::builder("svc").endpoint("http://127.0.0.1:4318").build().unwrap();
    /// let subscriber = tracing_subscriber::registry().with(otel.layer());
    /// tracing::subscriber::with_default(subscriber, || tracing::info_span!("work").in_scope(|| ()));
    /// otel.shutdown();
    /// ```
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, Tracer>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.tracer.clone())
    }

    /// Reports the families of `metrics` at every metrics export (see the [module
    /// docs](self)): those registered now, with a sample yet or not.
    ///
    /// ```
    /// let otel = tenant_guard::otel::Otel::builder("svc").endpoint("http://127.0.0.1:4318").build().unwrap();
    /// otel.export_metrics(&tenant_guard::metrics::Metrics::new());
    /// otel.shutdown();
    /// ```
    pub fn export_metrics(&self, metrics: &Metrics) {
        let meter = self.meter_provider.meter("tenant-guard");
        let snapshot = Arc::new(Snapshot::new(metrics.clone()));
        for (name, kind) in families(metrics) {
            let read = snapshot.clone();
            let series = name.clone();
            let observe = move |o: &dyn AsyncInstrument<f64>| {
                for (labels, value) in read.series(&series) {
                    o.observe(value, &labels);
                }
            };
            match kind {
                Kind::Counter => {
                    let n = name.strip_suffix("_total").unwrap_or(&name).to_owned();
                    meter
                        .f64_observable_counter(n)
                        .with_callback(observe)
                        .build();
                }
                Kind::Gauge => {
                    meter
                        .f64_observable_gauge(name)
                        .with_callback(observe)
                        .build();
                }
            }
        }
    }

    /// Sends what is buffered now (spans, then metrics); an error when the collector could
    /// not be reached.
    ///
    /// ```
    /// // Nothing listens on port 9 here: the metrics export fails and says so.
    /// let otel = tenant_guard::otel::Otel::builder("svc").endpoint("http://127.0.0.1:9").build().unwrap();
    /// otel.export_metrics(&tenant_guard::metrics::Metrics::new());
    /// assert!(otel.flush().is_err());
    /// otel.shutdown();
    /// ```
    pub fn flush(&self) -> Result<(), OtelError> {
        let err = |e: opentelemetry_sdk::error::OTelSdkError| OtelError::Exporter(e.to_string());
        self.tracer_provider.force_flush().map_err(err)?;
        self.meter_provider.force_flush().map_err(err)
    }

    /// Sends what is buffered and stops the exporters' threads (see [`layer`](Self::layer)).
    ///
    /// ```
    /// use tenant_guard::otel::Otel;
    /// let otel = Otel::builder("svc").endpoint("http://127.0.0.1:4318").build().unwrap();
    /// otel.shutdown();
    /// // The exporters are stopped: nothing more can be flushed.
    /// assert!(otel.flush().is_err());
    /// ```
    pub fn shutdown(&self) {
        let _ = self.tracer_provider.shutdown();
        let _ = self.meter_provider.shutdown();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// The series of `metrics`' families, each with the kind of instrument that reports it: a
/// counter's `<family>_total`, a gauge's `<family>`, a histogram's `_bucket`, `_sum` and
/// `_count` (cumulative: counters).
fn families(metrics: &Metrics) -> Vec<(String, Kind)> {
    let mut out = Vec::new();
    for (name, kind) in metrics.families() {
        match kind {
            MetricKind::Counter => out.push((format!("{name}_total"), Kind::Counter)),
            MetricKind::Gauge => out.push((name, Kind::Gauge)),
            MetricKind::Histogram => {
                for part in ["_bucket", "_sum", "_count"] {
                    out.push((format!("{name}{part}"), Kind::Counter));
                }
            }
            _ => {}
        }
    }
    out
}

/// One sample line: `name{a="x",b="y"} value` or `name value`.
fn sample(line: &str) -> Option<(&str, Vec<KeyValue>, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let Some((name, labels)) = head.split_once('{') else {
        return Some((head, Vec::new(), value));
    };
    let mut kv = Vec::new();
    let mut rest = labels.strip_suffix('}')?;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        // The value runs to the first quote not escaped by a backslash.
        let mut text = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()? {
                    (_, 'n') => text.push('\n'),
                    (_, c) => text.push(c),
                },
                (i, '"') => break i,
                (_, c) => text.push(c),
            }
        };
        kv.push(KeyValue::new(key.to_owned(), text));
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some((name, kv, value))
}

/// The registry's samples by series, read at most once a second (every instrument's
/// callback of an export round asks for its series) rather than once per family.
struct Snapshot {
    metrics: Metrics,
    parsed: Mutex<(Option<Instant>, Series)>,
}

/// Series name -> its samples (labels, value).
type Series = HashMap<String, Vec<(Vec<KeyValue>, f64)>>;

impl Snapshot {
    fn new(metrics: Metrics) -> Self {
        Self {
            metrics,
            parsed: Mutex::new((None, HashMap::new())),
        }
    }

    /// The samples of series `name` now.
    fn series(&self, name: &str) -> Vec<(Vec<KeyValue>, f64)> {
        let mut p = self.parsed.lock().unwrap_or_else(PoisonError::into_inner);
        if p.0.is_none_or(|at| at.elapsed() > Duration::from_secs(1)) {
            let mut by_name: Series = HashMap::new();
            for (n, kv, v) in self.metrics.render().lines().filter_map(sample) {
                by_name.entry(n.to_owned()).or_default().push((kv, v));
            }
            *p = (Some(Instant::now()), by_name);
        }
        p.1.get(name).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_with_their_labels() {
        let (n, kv, v) = sample(r#"tg_x_total{op="get",why="a \"b\"\\c"} 3"#).unwrap();
        assert_eq!((n, v), ("tg_x_total", 3.0));
        assert_eq!(kv[0], KeyValue::new("op", "get"));
        assert_eq!(kv[1], KeyValue::new("why", "a \"b\"\\c"));
        assert_eq!(sample("tg_up 1").unwrap().2, 1.0);
        let (n, kv, v) = sample(r#"tg_h_bucket{op="get",le="+Inf"} 4"#).unwrap();
        assert_eq!(
            (n, v, kv[1].clone()),
            ("tg_h_bucket", 4.0, KeyValue::new("le", "+Inf"))
        );
        assert!(sample("# HELP tg_up up").is_none());
        assert!(sample(r#"tg_x{op="unterminated} 1"#).is_none());
    }

    #[test]
    fn label_values_with_spaces_braces_commas_and_quotes_survive() {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        let m = Metrics::new();
        let f: Family<Vec<(String, String)>, Counter> = Family::default();
        m.register("odd", "odd labels", f.clone());
        let odd = "a b{c},d=\"e\" \\ 1";
        f.get_or_create(&vec![("rule".into(), odd.into())])
            .inc_by(7);
        let snap = Snapshot::new(m);
        let got = snap.series("tenant_guard_odd_total");
        assert_eq!(got, vec![(vec![KeyValue::new("rule", odd)], 7.0)]);
    }

    #[test]
    fn families_of_the_registry() {
        let m = Metrics::new();
        let f = families(&m);
        assert!(
            f.iter()
                .any(|(n, k)| n.ends_with("_total") && *k == Kind::Counter)
        );
        assert!(f.iter().any(|(_, k)| *k == Kind::Gauge));
        let h = "tenant_guard_redis_command_duration_seconds";
        for part in ["_bucket", "_sum", "_count"] {
            assert!(f.contains(&(format!("{h}{part}"), Kind::Counter)), "{f:?}");
        }
        assert!(
            f.iter().all(|(n, _)| n.starts_with("tenant_guard_")),
            "{f:?}"
        );
    }
}
