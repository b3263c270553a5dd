//! Protecting the log, by capability: [`integrity`](crate::integrity) (digest, seals,
//! verification), [`retention`](crate::retention) and [`erasure`](crate::erasure). This module
//! keeps the paths it used to define (`audit_logs_core::protect::VerifyReport`, ...) working.

pub use crate::erasure::{RedactReport, RedactRequest, Subject, MIN_KEY_BYTES};
pub use crate::integrity::{Problem, ProblemKind, SealReport, VerifyOptions, VerifyReport};
pub use crate::retention::{MaintainOptions, MaintainReport, Settings};
