//! Fuzz target `dir_damage`: the body is `foldlog_testkit::dir_damage`, shared with `tests/fuzz_replay.rs` (see its docs
//! for the input layout and what is checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| foldlog_testkit::dir_damage(data));
