//! The bank example: `cargo run --release --example bank [DIR] [--replace]`.
//!
//! The story's store goes into `DIR/bank` (default `foldlog-data/bank-example/bank`). `DIR` follows the demo's
//! directory rules (docs/operations.md): it must be new, empty or made by an earlier demo or example run, whose
//! store is replaced automatically in the default directory and with `--replace` in one you name.
//!
//! The domain and the story live in this crate's `src/lib.rs`, shared with `foldlog demo`.

use foldlog_bank as demo_bank;
use foldlog_bank::demo_dir;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let replace_flag = args.iter().any(|a| a == "--replace");
    let named = args.iter().find(|a| !a.starts_with("--"));
    let dir = std::path::PathBuf::from(named.map_or("foldlog-data/bank-example", String::as_str));
    let owned = demo_dir::claim(&dir, replace_flag || named.is_none(), &["bank"])?;
    demo_bank::run(&owned.dir.join("bank"))
}
