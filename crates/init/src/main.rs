//! The init process of a hutch container. Filled in by the container work.

fn main() {
    let _ = hutch_protocol::PROTOCOL_VERSION;
}
