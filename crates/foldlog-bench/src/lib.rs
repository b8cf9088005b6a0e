//! The benchmark harness behind `foldlog bench` (a short comparison of foldlog against the raw `write()` +
//! `fdatasync` baseline, run on the user's machine, printed as a table, see [`run`]) and the full comparison
//! harness (`compare/`): the workload, the scenarios, the `Engine` trait, the raw baseline and the foldlog
//! adapter live here once,
//! so the short run and the full run measure exactly the same things. The harness adds SQLite, redb and
//! fjall, repetitions and CSV output. Nothing here is timed as a test; the figures are only printed.
//!
//! The harness itself is Unix-only (the raw baseline reads and writes with positioned Unix calls); the
//! generator builds everywhere, since `foldlog demo` uses it too.

mod rng;
pub use rng::Rng;

#[cfg(unix)]
mod harness;
#[cfg(unix)]
pub use harness::*;
