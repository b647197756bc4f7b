//! Raw bytes into the request decoders: they must return a value or an
//! error, never panic, and decoding into a reused exec request must agree
//! with decoding afresh.

#![no_main]

use hutch_protocol::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hutch_fuzz::decode::<Request>(data);
    hutch_fuzz::decode_reusing(data);
});
