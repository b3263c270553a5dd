//! Tamper evidence: seals (a hash chain over the rows, made in the database by `audit.seal()`)
//! and verification, which recomputes the chain itself so that it trusts no function stored in
//! the database.
//!
//! [`digest`] holds the canonical serialization, shared with the SQL side; [`seal`] makes a
//! seal; [`verify`] checks the chain and reports.

pub mod digest;
#[cfg(feature = "database")]
pub mod seal;
#[cfg(feature = "database")]
pub mod verify;

#[cfg(feature = "database")]
pub use seal::SealReport;
#[cfg(feature = "database")]
pub use verify::{Problem, ProblemKind, VerifyOptions, VerifyReport};
