//! keepalived.conf syntax: source files and spans, the lexer, the AST and its parser,
//! and file loading (`include`).

pub mod ast;
pub mod keywords;
pub mod lexer;
pub mod loader;
pub mod parser;
pub mod source;

pub use ast::{Block, Cond, Stmt, Word};
pub use loader::{FsLoader, MemLoader, SourceLoader};
pub use parser::{parse_file, parse_str, Parsed};
pub use source::{FileId, SourceMap, Span};
