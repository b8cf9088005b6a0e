//! Fuzz target `frame_decode`: the body is `foldlog_testkit::frame_decode`, shared with `tests/fuzz_replay.rs` (see its docs
//! for the input layout and what is checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| foldlog_testkit::frame_decode(data));
