//! Raw bytes into the request decoder: it must return a value or an error, never panic.

#![no_main]

use hutch_protocol::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hutch_fuzz::decode::<Request>(data));
