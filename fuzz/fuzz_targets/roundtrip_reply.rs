//! Every frame that decodes as a reply must survive encode and decode unchanged,
//! and encode to the same bytes twice.

#![no_main]

use hutch_protocol::Reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hutch_fuzz::round_trip::<Reply>(data));
