//! proxy-bench's mesh setup (issue 16): the latency two sidecars add at a fixed rate, with the hub and
//! without. [`config`] writes the mesh (two sidecars, the hub's configuration), [`run`] runs every variant,
//! [`report`] prints its tables and goals. This module holds no items of its own.

pub mod config;
pub mod report;
pub mod run;
