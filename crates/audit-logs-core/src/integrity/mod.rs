//! Tamper evidence: seals (a hash chain over the rows, made in the database by `audit.seal()`)
//! and verification, which recomputes the chain itself so that it trusts no function stored in
//! the database.
//!
//! - [`digest`]: the canonical serialization, shared with the SQL side;
//! - [`seal`]: [`AuditLogs::seal`](crate::AuditLogs::seal);
//! - [`verify`]: [`AuditLogs::verify`](crate::AuditLogs::verify) and its report.

pub mod digest;
pub mod seal;
pub mod verify;

pub use seal::SealReport;
pub use verify::{Problem, ProblemKind, VerifyOptions, VerifyReport};
