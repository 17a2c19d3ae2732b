//! The process's `tracing` subscriber: log lines on stderr filtered by `RUST_LOG` (with the
//! layers' spans printed as they close when `RUST_LOG` is set), and, with the `otel`
//! feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans and metrics exported over OTLP.

use tenant_guard::metrics::Metrics;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// What stays alive while the process logs: the OTLP exporters, flushed on drop.
pub(crate) struct Telemetry {
    #[cfg(feature = "otel")]
    otel: Option<tenant_guard::otel::Otel>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(o) = self.otel.take() {
            o.shutdown();
        }
    }
}

/// Installs the subscriber. `default`: the filter when `RUST_LOG` is unset (`None`: no log
/// lines then, as for the demo, whose table is its output). `metrics`: the registry to
/// export over OTLP.
pub(crate) fn init(json: bool, default: Option<&str>, metrics: &Metrics) -> Telemetry {
    let explicit = std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty());
    let filter = match (EnvFilter::try_from_default_env(), default) {
        (Ok(f), _) => Some(f),
        (Err(_), Some(d)) => Some(EnvFilter::new(d)),
        (Err(_), None) => None,
    };
    let fmt = filter.map(|filter| {
        // Spans on close (with their fields and time) only when asked for by RUST_LOG: one
        // line per layer per request is too much by default.
        let spans = if explicit {
            FmtSpan::CLOSE
        } else {
            FmtSpan::NONE
        };
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_span_events(spans);
        let layer = if json {
            layer.json().boxed()
        } else {
            layer.boxed()
        };
        layer.with_filter(filter)
    });
    #[cfg(feature = "otel")]
    {
        let otel = match tenant_guard::otel::Otel::from_env("tenant-guard") {
            Ok(o) => o,
            Err(e) => {
                eprintln!("warning: no OTLP export: {e}");
                None
            }
        };
        if let Some(o) = &otel {
            o.export_metrics(metrics);
        }
        // Every span of the crate's at INFO goes to the collector, whatever RUST_LOG says.
        let exported = otel
            .as_ref()
            .map(|o| o.layer().with_filter(EnvFilter::new("tenant_guard=info")));
        let _ = tracing_subscriber::registry()
            .with(fmt)
            .with(exported)
            .try_init();
        Telemetry { otel }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = metrics;
        let _ = tracing_subscriber::registry().with(fmt).try_init();
        Telemetry {}
    }
}
