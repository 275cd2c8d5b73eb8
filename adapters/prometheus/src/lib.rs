//! Sextant adapter `prometheus`: records the hub's metric batches into the hub's own Prometheus registry
//! (exposed on the hub's `:42422/metrics`).
//!
//! Each family of a batch is defined once through `metrics.define` (handles are cached by family name) and
//! all the batch's samples go in one `metrics.record` call. Config (all optional):
//!
//! ```json
//! { "prefix": "mesh_" }
//! ```

use sextant_adapter_sdk::{
    Adapter, AdapterError, Batch, Capabilities, FamilyHandle, FamilyRef, Host, Level, MetricFamily,
    SampleWriter, parse_config,
};

/// The adapter's configuration.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Prepended to every family name (must keep the name a valid Prometheus name).
    #[serde(default)]
    pub prefix: String,
}

/// A family as defined in the registry: a batch's family with the same name but another shape is
/// defined again (and refused by the registry if the name is taken).
#[derive(Debug)]
struct Defined {
    name: String,
    family: MetricFamily,
    handle: Result<FamilyHandle, String>,
}

/// The adapter.
#[derive(Debug)]
pub struct Prometheus {
    config: Config,
    families: Vec<Defined>,
    samples: SampleWriter,
}

impl Prometheus {
    /// The handle of `f`, defining it on first use (or again when the batch's family changed shape).
    fn handle(&mut self, f: &FamilyRef<'_, '_>, host: &Host) -> Result<FamilyHandle, String> {
        let name = f.name();
        let same_shape = |d: &Defined| {
            d.name == name
                && d.family.kind == f.kind()
                && d.family
                    .label_names
                    .iter()
                    .map(String::as_str)
                    .eq(f.label_names())
                && d.family.buckets == f.buckets()
        };
        if let Some(d) = self.families.iter().find(|d| same_shape(d)) {
            return d.handle.clone();
        }
        let family = MetricFamily::new(
            format!("{}{name}", self.config.prefix),
            f.help(),
            f.kind(),
            f.label_names(),
        )
        .with_buckets(f.buckets());
        let handle = host.metrics().define(&family);
        match &handle {
            Ok(_) => host.log(
                Level::Debug,
                &format!("defined metric family {}", family.name),
            ),
            Err(e) => host.log(Level::Warn, &format!("metric family {}: {e}", family.name)),
        }
        self.families.retain(|d| d.name != name);
        self.families.push(Defined {
            name: name.to_owned(),
            family,
            handle: handle.clone(),
        });
        handle
    }
}

impl Adapter for Prometheus {
    fn init(config: &str, _host: &Host) -> Result<Self, String> {
        let config: Config = parse_config(config)?;
        Ok(Self {
            config,
            families: Vec::new(),
            samples: SampleWriter::new(),
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::METRICS
    }

    fn handle_metrics(&mut self, batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
        let mut samples = std::mem::take(&mut self.samples);
        samples.clear();
        let mut refused = None;
        for m in batch.metrics() {
            match self.handle(&m.family(), host) {
                Ok(h) => samples.sample(h.0, m.value(), m.label_values()),
                Err(e) => refused = Some(e),
            }
        }
        let recorded = host.metrics().record(&samples);
        self.samples = samples;
        recorded.map_err(|e| AdapterError::permanent(format!("metrics.record: {e}")))?;
        // The other families' samples are recorded; retrying would not make the registry accept this one.
        match refused {
            Some(e) => Err(AdapterError::permanent(e)),
            None => Ok(()),
        }
    }
}

sextant_adapter_sdk::export_adapter!(Prometheus);

#[cfg(test)]
mod tests;
