//! Unit tests that need the crate-private `Arbitrary` derives.

mod roundtrip;
