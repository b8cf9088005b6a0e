//! `projection_sqlite STORE_DIR DB_PATH [--until POSITION]`: a projector in a process of its own.
//!
//! It follows a foldlog store that another process writes, through a read-only handle, and keeps the bank's
//! balances in a SQLite database: per account stream, how many events it has and the balance they add up to.
//! Each SQLite transaction holds a batch's rows and the position of the batch's last event together, so the
//! read model and the position it claims never disagree, whatever kills the process and when; on restart it
//! resumes after the saved position. The argument is in this crate's README.md.
//!
//! Exit codes: 0 when `--until` was reached (without it, it follows the store until killed), 1 when the store
//! or the database failed or disagree, 2 on a usage error.

mod failure;
mod projector;
mod read_model;

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use failure::Failure;

const USAGE: &str = "usage: projection_sqlite STORE_DIR DB_PATH [--until POSITION]

Follows the foldlog store in STORE_DIR (read-only, beside its writer) and keeps the bank's balances in the
SQLite database DB_PATH (created if missing): table balances(stream, events, total), and the position of the
last event they count in projection_position(name, position). Resumes after that position.

  --until POSITION   exit 0 once every event up to POSITION (inclusive) is projected; without it, follow
                     the store until killed";

/// What the command line asked for.
#[derive(Debug)]
struct Args {
    store_dir: PathBuf,
    db_path: PathBuf,
    until: Option<u64>,
}

enum Parsed {
    Run(Args),
    Help,
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, Failure> {
    let mut paths = Vec::new();
    let mut until = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("-h" | "--help") => return Ok(Parsed::Help),
            Some("--until") => {
                let value = args.next().ok_or_else(|| Failure::usage("--until needs a POSITION"))?;
                if until.replace(position(&value)?).is_some() {
                    return Err(Failure::usage("--until given twice"));
                }
            }
            Some(flag) if flag.starts_with('-') && flag.len() > 1 => {
                return Err(Failure::usage(format!("unknown option {flag}")));
            }
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    let mut paths = paths.into_iter();
    match (paths.next(), paths.next(), paths.next()) {
        (Some(store_dir), Some(db_path), None) => Ok(Parsed::Run(Args { store_dir, db_path, until })),
        (_, _, Some(extra)) => Err(Failure::usage(format!("unexpected argument {}", extra.display()))),
        _ => Err(Failure::usage("STORE_DIR and DB_PATH are required")),
    }
}

fn position(value: &OsString) -> Result<u64, Failure> {
    value.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
        Failure::usage(format!(
            "--until takes a position (a whole number from 0), not {}",
            value.to_string_lossy()
        ))
    })
}

fn main() -> ExitCode {
    let outcome = parse(std::env::args_os().skip(1)).and_then(|parsed| match parsed {
        Parsed::Help => {
            // Not `println!`, which panics when stdout is closed.
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            Ok(())
        }
        Parsed::Run(args) => projector::run(&args.store_dir, &args.db_path, args.until),
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ Failure::Usage(_)) => {
            let synopsis = USAGE.lines().next().unwrap_or_default();
            eprintln!("projection_sqlite: {e}\n{synopsis} (--help says more)");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("projection_sqlite: {e}");
            ExitCode::from(1)
        }
    }
}
