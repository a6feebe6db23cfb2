//! Prometheus metrics: a registry per service with the request counters
//! and latency histograms every party exposes.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request: method, matched route (never the raw path, so
/// ids in paths cannot blow up the number of series) and status.
pub(crate) type RequestLabels = Vec<(&'static str, String)>;

type LatencyFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// A service's metrics registry with the HTTP request metrics registered.
/// Parties add their own metrics through [`HttpMetrics::registry_mut`]
/// before sharing it.
pub struct HttpMetrics {
    registry: Registry,
    recorder: Recorder,
}

/// The handles the request layer records into (cheap clones of the
/// families registered in the registry).
#[derive(Clone)]
pub(crate) struct Recorder {
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
}

impl HttpMetrics {
    /// A registry whose every series carries `service="<service>"`.
    pub fn new(service: &str) -> HttpMetrics {
        let labels = std::iter::once((Cow::Borrowed("service"), Cow::Owned(service.to_owned())));
        let mut registry = Registry::with_labels(labels);
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests answered, by method, route and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route",
            latency.clone(),
        );
        HttpMetrics { registry, recorder: Recorder { requests, latency } }
    }

    /// For parties to register their own metrics.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The OpenMetrics text exposition (Prometheus reads it).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }

    pub(crate) fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }
}

impl Recorder {
    pub(crate) fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let labels = vec![("method", method.to_owned()), ("route", route.to_owned()), ("status", status.to_string())];
        self.requests.get_or_create(&labels).inc();
        let labels = vec![("method", method.to_owned()), ("route", route.to_owned())];
        self.latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }
}

impl fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpMetrics").finish_non_exhaustive()
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}
