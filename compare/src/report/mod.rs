//! `foldlog-compare report`: turns benchmark results into docs/plots/*.svg and the generated parts of
//! docs/benchmarks.md.
//!
//! Inputs: the harness's CSV (`--csv`) and, optionally, criterion's output directory (`--criterion`,
//! usually target/criterion). Outputs: SVG plots drawn with plotters into `--plots`, and the text between
//! `<!-- BEGIN generated: NAME -->` and `<!-- END generated: NAME -->` in `--doc` for the sections plots,
//! machine, comparison and criterion; everything outside the markers is left as written. Without criterion
//! results the criterion section keeps its text and the criterion plots are left out.
//!
//! The DCB comparison (`--dcb`) writes a CSV of its own; `--dcb-csv` turns it into the `dcb` section. Either
//! CSV may be given alone: `--dcb-csv` alone rewrites the `dcb` section only (no plots), so a DCB run does not
//! need the long comparison run, and `--csv` alone leaves the `dcb` section as it was. The JetStream comparison
//! (`--jetstream`) likewise: `--jetstream-csv` rewrites the `jetstream` section only.
//!
//! ```sh
//! cargo run --release --manifest-path compare/Cargo.toml -- report --csv docs/benchmarks.csv \
//!     --criterion target/criterion --doc docs/benchmarks.md --plots docs/plots
//! ```

mod format;
mod input;
mod markdown;
mod plots;

use std::path::{Path, PathBuf};

use input::Row;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The engines in the order every table and plot lists them: foldlog, its physical limit, then the peers.
pub const ENGINES: [&str; 5] = ["foldlog", "raw", "sqlite", "redb", "fjall"];

const USAGE: &str =
    "usage: foldlog-compare report [--csv FILE] [--dcb-csv FILE] [--jetstream-csv FILE] [--criterion DIR] \
[--doc FILE] [--plots DIR] (at least one CSV)";

struct Args {
    csv: Option<PathBuf>,
    dcb_csv: Option<PathBuf>,
    jetstream_csv: Option<PathBuf>,
    criterion: Option<PathBuf>,
    doc: PathBuf,
    plots: PathBuf,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args> {
    let (mut csv, mut dcb_csv, mut jetstream_csv, mut criterion) = (None, None, None, None);
    let (mut doc, mut plots) = (PathBuf::from("docs/benchmarks.md"), PathBuf::from("docs/plots"));
    while let Some(arg) = it.next() {
        let mut value =
            || it.next().map(PathBuf::from).ok_or_else(|| format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--csv" => csv = Some(value()?),
            "--dcb-csv" => dcb_csv = Some(value()?),
            "--jetstream-csv" => jetstream_csv = Some(value()?),
            "--criterion" => criterion = Some(value()?),
            "--doc" => doc = value()?,
            "--plots" => plots = value()?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    if csv.is_none() && dcb_csv.is_none() && jetstream_csv.is_none() {
        return Err(format!("--csv, --dcb-csv or --jetstream-csv is required\n{USAGE}").into());
    }
    Ok(Args { csv, dcb_csv, jetstream_csv, criterion, doc, plots })
}

/// Runs the report with the arguments that follow `report` on the command line.
pub fn run(args: impl Iterator<Item = String>) -> Result<()> {
    let a = parse_args(args)?;
    let mut doc = match std::fs::read_to_string(&a.doc) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => markdown::TEMPLATE.to_owned(),
        Err(e) => return Err(format!("{}: {e}", a.doc.display()).into()),
    };
    if let Some(csv) = &a.csv {
        let (meta, rows) = input::read_csv(csv)?;
        let res = Results::new(rows);
        let crit = input::read_criterion(a.criterion.as_deref());
        let made = plots::make_plots(&res, &crit, &a.plots)?;
        let rel = relative_path(&a.plots, a.doc.parent().unwrap_or(Path::new("")))?;
        doc = markdown::replace_section(&doc, "plots", &markdown::plots_section(&made, &rel))?;
        doc = markdown::replace_section(&doc, "machine", &markdown::machine_section(&meta))?;
        doc = markdown::replace_section(&doc, "comparison", &markdown::comparison_section(&meta, &res))?;
        if !crit.is_empty() {
            doc = markdown::replace_section(&doc, "criterion", &markdown::criterion_section(&crit))?;
        }
    }
    if let Some(csv) = &a.dcb_csv {
        let (meta, rows) = input::read_csv(csv)?;
        doc = markdown::replace_section(&doc, "dcb", &markdown::dcb_section(&meta, &Results::new(rows)))?;
    }
    if let Some(csv) = &a.jetstream_csv {
        let (meta, rows) = input::read_csv(csv)?;
        let res = Results::with_engines(rows, &crate::jetstream::ENGINES);
        doc = markdown::replace_section(&doc, "jetstream", &markdown::jetstream_section(&meta, &res))?;
    }
    std::fs::write(&a.doc, doc).map_err(|e| format!("{}: {e}", a.doc.display()))?;
    match a.csv {
        Some(_) => println!("wrote {} and {}/*.svg", a.doc.display(), a.plots.display()),
        None => println!("wrote {}", a.doc.display()),
    }
    Ok(())
}

/// The `jetstream` section for a run's figures as they are, before any CSV: what `--jetstream` prints, so the
/// terminal shows the table the document will.
pub fn jetstream_text(meta: &[(String, String)], summaries: &[foldlog_bench::Summary]) -> String {
    let meta: input::Meta = meta.iter().cloned().collect();
    let rows = summaries
        .iter()
        .map(|s| Row {
            engine: s.measure.engine.to_owned(),
            scenario: s.measure.scenario.to_owned(),
            metric: s.measure.metric.to_owned(),
            unit: s.measure.unit.to_owned(),
            higher_is_better: s.measure.higher_is_better,
            median: s.median,
            min: s.min,
            max: s.max,
            runs: s.runs as u64,
            setting: s.measure.setting.clone(),
        })
        .collect();
    markdown::jetstream_section(&meta, &Results::with_engines(rows, &crate::jetstream::ENGINES))
}

/// The rows of one comparison run, and the engines that appear in them.
pub struct Results {
    rows: Vec<Row>,
    engines: Vec<&'static str>,
}

impl Results {
    fn new(rows: Vec<Row>) -> Self {
        Results::with_engines(rows, &ENGINES)
    }

    /// The rows of a run whose engines are `order` (the JetStream comparison has engines of its own).
    fn with_engines(rows: Vec<Row>, order: &[&'static str]) -> Self {
        let engines = order.iter().copied().filter(|e| rows.iter().any(|r| r.engine == *e)).collect();
        Results { rows, engines }
    }

    /// One engine's figure for a metric of a scenario (the first, should the CSV repeat one).
    pub fn get(&self, engine: &str, scenario: &str, metric: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.engine == engine && r.scenario == scenario && r.metric == metric)
    }

    /// A scenario's metrics, in the order the harness wrote them.
    pub fn metrics(&self, scenario: &str) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for r in self.rows.iter().filter(|r| r.scenario == scenario) {
            if !seen.contains(&r.metric.as_str()) {
                seen.push(&r.metric);
            }
        }
        seen
    }
}

/// The plots directory as the document links it: relative to the document's own directory. Both are
/// made absolute and normalised by text only (no symlinks resolved), since the plots may not exist yet.
fn relative_path(target: &Path, base: &Path) -> Result<String> {
    let (target, base) = (normalise(target)?, normalise(base)?);
    let common = target.iter().zip(base.iter()).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..base.iter().count() {
        rel.push("..");
    }
    rel.extend(target.iter().skip(common));
    let rel = rel.to_string_lossy().into_owned();
    Ok(if rel.is_empty() { ".".into() } else { rel })
}

fn normalise(p: &Path) -> Result<PathBuf> {
    use std::path::Component;
    let mut out = PathBuf::new();
    // A bare file name's parent is the empty path, which is the current directory.
    let p = if p.as_os_str().is_empty() { Path::new(".") } else { p };
    for c in std::path::absolute(p)?.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_linked_relative_to_the_document() {
        let rel = |t: &str, b: &str| relative_path(Path::new(t), Path::new(b)).unwrap();
        assert_eq!(rel("docs/plots", "docs"), "plots");
        assert_eq!(rel("target/bench-quick/plots", "target/bench-quick"), "plots");
        assert_eq!(rel("/tmp/a/plots", "/tmp/b"), "../a/plots");
        assert_eq!(rel("docs/./x/../plots", "docs/"), "plots");
        assert_eq!(rel("docs", "docs"), ".");
        assert_eq!(rel("plots", ""), "plots");
    }
}
