//! The cluster configuration of a director group, in keepalived.conf's own language.
//!
//! Data flow inside this crate (no I/O except through [`syntax::loader::SourceLoader`]):
//!
//! ```text
//! text --lexer--> tokens --parser--> AST (with @node conditions, spans)
//!      --lower(node)--> typed Config (one per director) --validate--> diagnostics
//! Config x nodes --cluster::merge--> ClusterConfig --printer--> keepalived.conf text
//! ClusterConfig --canon--> canonical text --sha256--> content hash
//! (old, new) --diff--> semantic changes
//! ```
//!
//! Every other crate consumes [`model::Config`] (one director's view) and
//! [`cluster::ClusterConfig`] (all directors).

pub mod access;
pub mod api;
pub mod bundle;
pub mod canon;
pub mod cluster;
pub mod diag;
pub mod diff;
pub mod file_check;
pub mod keyed;
pub mod lower;
pub mod manpages;
pub mod model;
pub mod patch;
pub mod pki;
pub mod printer;
pub mod root_hash;
pub mod syntax;
pub mod time;
pub mod tls;
pub mod validate;

pub use cluster::ClusterConfig;
pub use diag::{Diagnostic, Diagnostics, Severity};
pub use model::Config;
