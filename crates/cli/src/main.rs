//! The `hutch` command.

#![forbid(unsafe_code)]

fn main() {
    eprintln!("hutch {}", env!("CARGO_PKG_VERSION"));
}
