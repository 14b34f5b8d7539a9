//! The Prometheus recorder. Every crate records through the `metrics` facade; this module installs
//! the one recorder of the process and renders the text exposition for `/metrics`, adding process
//! metrics (CPU, memory, open fds) and whatever gauges the binary samples at scrape time (pool
//! sizes).

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: fine-grained below 100 ms, where the service's targets are.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A gauge sampler run at every scrape, e.g. to publish connection-pool sizes.
pub type Sampler = Arc<dyn Fn() + Send + Sync>;

/// Renders the process's metrics.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    process: Arc<metrics_process::Collector>,
    samplers: Vec<Sampler>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("samplers", &self.samplers.len()).finish()
    }
}

impl Metrics {
    /// The process-wide recorder, installed on first use. Tests build several applications in one
    /// process; they share it.
    ///
    /// # Errors
    /// When another recorder was installed by code outside this module.
    pub fn install() -> Result<Self, MetricsError> {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        let handle = match HANDLE.get() {
            Some(h) => h.clone(),
            None => {
                let handle = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                    .map_err(|e| MetricsError(e.to_string()))?
                    .install_recorder()
                    .map_err(|e| MetricsError(e.to_string()))?;
                HANDLE.get_or_init(|| handle).clone()
            }
        };
        let process = metrics_process::Collector::default();
        process.describe();
        Ok(Self { handle, process: Arc::new(process), samplers: Vec::new() })
    }

    /// Adds a sampler run before each render.
    #[must_use]
    pub fn with_sampler(mut self, sampler: Sampler) -> Self {
        self.samplers.push(sampler);
        self
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.process.collect();
        for sample in &self.samplers {
            sample();
        }
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// The recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct MetricsError(String);
