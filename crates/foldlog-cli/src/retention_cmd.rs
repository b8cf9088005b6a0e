//! `foldlog retention`: lists the retention rules of a store, or sets one (issue 14, item 2). Setting writes
//! the rule's event to the log, so it takes the writer's lock and is refused while another process writes
//! the store, as `delete-stream` is; listing opens the store read-only and works beside a writer.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use foldlog::{Durability, Options, Retention, RetentionTarget, Store};

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

/// A `--max-age` value: a whole number and a unit, `s`, `m`, `h`, `d` or `w` (`30d`, `12h`).
#[derive(Clone, Copy, Debug)]
pub struct Age(pub Duration);

impl std::str::FromStr for Age {
    type Err = String;

    fn from_str(s: &str) -> Result<Age, String> {
        let bad = || format!("{s:?} is not an age: a whole number and a unit, s, m, h, d or w (as in 30d)");
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (n, unit) = s.split_at(split);
        let n: u64 = n.parse().map_err(|_| bad())?;
        let secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return Err(bad()),
        };
        n.checked_mul(secs).map(|s| Age(Duration::from_secs(s))).ok_or_else(bad)
    }
}

/// What `retention` was asked to do.
pub struct Change {
    pub target: RetentionTarget,
    pub rule: Retention,
}

/// Lists the rules (`change` is `None`), or sets one and lists the result.
pub fn retention(dir: &Path, change: Option<Change>) -> CliResult {
    let rules = match change {
        None => Store::open_with(dir, Options::default().read_only(true).create_if_missing(false))?
            .retention_rules()?,
        Some(Change { target, rule }) => {
            let options = Options::default().create_if_missing(false).durability(Durability::Always);
            let store = Store::open_with(dir, options)?;
            store.set_retention(&target, rule)?;
            let rules = store.retention_rules()?;
            store.close()?;
            rules
        }
    };
    let mut out = io::stdout().lock();
    if rules.is_empty() {
        writeln!(out, "no retention rules")?;
    }
    for (target, rule) in rules {
        writeln!(out, "{}", line(&target, rule))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One rule as `retention` and `stat` print it.
pub fn line(target: &RetentionTarget, rule: Retention) -> String {
    let what = match target {
        RetentionTarget::Stream(s) => format!("stream {}", crate::quoted(s)),
        RetentionTarget::Prefix(p) => format!("prefix {}", crate::quoted(p)),
    };
    let mut limits = Vec::new();
    if let Some(n) = rule.max_count {
        limits.push(format!("max count {n}"));
    }
    if let Some(age) = rule.max_age {
        limits.push(format!("max age {}", age_text(age)));
    }
    format!("{what}: {}", limits.join(", "))
}

/// An age in the largest unit that divides it.
fn age_text(age: Duration) -> String {
    let s = age.as_secs();
    if age.subsec_nanos() != 0 {
        return format!("{}us", age.as_micros());
    }
    for (unit, secs) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s > 0 && s.is_multiple_of(secs) {
            return format!("{}{unit}", s / secs);
        }
    }
    format!("{s}s")
}
