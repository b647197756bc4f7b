//! First byte: how many descriptors came with the frame (modulo
//! MAX_FDS_PER_FRAME + 1); the rest: a reply frame. Validation must never
//! panic, and a reply that validates must survive the round trip.

#![no_main]

use hutch_protocol::Reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hutch_fuzz::validate::<Reply>(data));
