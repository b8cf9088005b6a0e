//! The bank example: `cargo run --release --example bank [DIR]` (default `foldlog-data/bank`, wiped first).
//!
//! The domain and the story live in `src/demo_bank.rs`, shared with `foldlog demo`.

#[path = "../src/demo_bank.rs"]
mod demo_bank;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "foldlog-data/bank".into());
    demo_bank::run(std::path::Path::new(&dir))
}
