//! `sextant-bench`'s library: what more than one of its benchmarks uses, so that each benchmark's folder
//! (`check/` for check-bench, `report/`, `pilot/`, `proxy/`) holds only its own code and no benchmark includes
//! another's files.
//!
//! * Measuring: CPU time of this process's thread groups ([`cpu`], from `/proc/self/task`) and of whole
//!   processes with their memory ([`process`], from `/proc/PID`); pinning threads and processes to CPUs
//!   ([`pin`]); the one-worker tokio runtimes a side of an in-process benchmark runs on ([`runtime`]).
//! * The in-process gRPC benchmarks (check-bench, report-bench): the shape of a closed-loop run and a client
//!   connection ([`load`]); the empty tonic Mixer they compare the hub with, and the hub itself ([`servers`]).
//! * Child processes (pilot-bench, proxy-bench): the `sextant` binary and the logs of what it starts
//!   ([`child`]), `sextant pilot` ([`pilot`]), a blocking HTTP GET for readiness probes and admin reads
//!   ([`http`]), sums over a Prometheus text exposition ([`prom`]).
//!
//! Nothing here asserts a goal or prints a table: each benchmark reports its own numbers.

pub mod child;
pub mod cpu;
pub mod http;
pub mod load;
pub mod pilot;
pub mod pin;
pub mod process;
pub mod prom;
pub mod runtime;
pub mod servers;
