//! Sextant adapter `prometheus`: records the hub's metric batches into the hub's own Prometheus registry
//! (exposed on the hub's `:42422/metrics`).
//!
//! Each family of a batch is defined once through `metrics.define` (handles are cached by family name) and
//! all the batch's samples go in one `metrics.record` call, each distinct label set of the batch written once
//! and referred to by the samples that repeat it, in any family (found by the records' label bytes within
//! their segment, without reading label strings), so the host reads and hashes it once per batch. Config (all optional):
//!
//! ```json
//! { "prefix": "mesh_" }
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use sextant_adapter_sdk::{
    Adapter, AdapterError, Batch, Capabilities, FamilyHandle, FamilyId, FamilyRef, Host, LabelSet,
    Level, MetricFamily, SampleWriter, parse_config,
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
        // Per batch (bounded by its records): the handle of each family declaration, the label set of each
        // distinct label values of a segment (Istio's metrics share their labels: one set serves the
        // request counter and the three histograms of a request).
        let mut handles: Vec<(FamilyId, Result<FamilyHandle, String>)> = Vec::new();
        let mut sets: HashMap<(u32, &[u8]), LabelSet, BuildHasherDefault<Fx>> =
            HashMap::with_capacity_and_hasher(batch.len().min(1024), BuildHasherDefault::default());
        // The hub writes a request's records one after the other with the same labels: the previous record's
        // set is tried before the map.
        let mut last: Option<((u32, &[u8]), LabelSet)> = None;
        for m in batch.metrics() {
            let id = m.family_id();
            let handle = match handles.iter().find(|(f, _)| *f == id) {
                Some((_, h)) => h.clone(),
                None => {
                    let h = self.handle(&m.family(), host);
                    handles.push((id, h.clone()));
                    h
                }
            };
            match handle {
                Ok(h) => {
                    let series = m.series_key();
                    let key = (id.segment(), series.label_bytes());
                    let known = match last {
                        Some((k, set)) if k == key => Some(set),
                        _ => sets.get(&key).copied(),
                    };
                    let set = match known {
                        Some(set) => {
                            samples.sample_with(h.0, m.value(), set);
                            set
                        }
                        None => {
                            let set = samples.sample(h.0, m.value(), m.label_values());
                            sets.insert(key, set);
                            set
                        }
                    };
                    last = Some((key, set));
                }
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

/// A small multiplicative hasher for series keys (a few integers and a short byte string made by the hub,
/// not chosen by a client): far cheaper than SipHash in a Wasm guest.
#[derive(Debug, Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Fx {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

sextant_adapter_sdk::export_adapter!(Prometheus);

#[cfg(test)]
mod tests;
