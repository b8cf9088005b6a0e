//! The report's two inputs: the harness's CSV and criterion's output directory.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use super::Result;

/// One line of the harness's CSV: one engine's figure for one metric of one scenario, over all runs.
#[derive(Debug, Deserialize)]
pub struct Row {
    pub engine: String,
    pub scenario: String,
    pub metric: String,
    pub unit: String,
    pub higher_is_better: bool,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: u64,
    pub setting: String,
}

/// The `# key: value` lines at the top of the CSV: the machine, versions and command of the run.
pub type Meta = HashMap<String, String>;

/// Reads the harness's CSV: the commented metadata lines, then the rows under their header.
pub fn read_csv(path: &Path) -> Result<(Meta, Vec<Row>)> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (meta, table) = split_meta(&text);
    let rows = csv::Reader::from_reader(table.as_bytes())
        .deserialize()
        .collect::<std::result::Result<Vec<Row>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((meta, rows))
}

/// Separates the `#` lines (metadata, which the csv crate could only skip) from the table.
fn split_meta(text: &str) -> (Meta, String) {
    let mut meta = Meta::new();
    let mut table = String::new();
    for line in text.split_inclusive('\n') {
        match line.strip_prefix('#') {
            Some(rest) => {
                let rest = rest.trim();
                let (key, value) = rest.split_once(':').unwrap_or((rest, ""));
                meta.insert(key.trim().to_owned(), value.trim().to_owned());
            }
            None => table.push_str(line),
        }
    }
    (meta, table)
}

/// One criterion benchmark's result, as the report uses it.
#[derive(Debug, Clone)]
pub struct Bench {
    pub group: String,
    pub function: String,
    pub value: String,
    pub median_ns: f64,
    /// Events per iteration; `None` when criterion was given no element count (or zero, which shows none).
    pub elements: Option<u64>,
    pub bytes: Option<u64>,
}

/// criterion's `new/benchmark.json`: what was measured.
#[derive(Deserialize)]
struct BenchmarkJson {
    group_id: String,
    function_id: Option<String>,
    value_str: Option<String>,
    throughput: Option<ThroughputJson>,
    full_id: String,
}

/// A throughput this report can use, or any other kind (bits, decimal bytes, or one added later), which it
/// ignores rather than dropping the benchmark.
#[derive(Deserialize)]
#[serde(untagged)]
enum ThroughputJson {
    Known(Throughput),
    Other(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
enum Throughput {
    Elements(u64),
    Bytes(u64),
    ElementsAndBytes { elements: u64, bytes: u64 },
}

/// criterion's `new/estimates.json`: the statistics; the report shows the median.
#[derive(Deserialize)]
struct EstimatesJson {
    median: Estimate,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

/// Every benchmark under criterion's output directory, by full id. A missing directory gives none: the
/// comparison's tables do not need criterion, and its section of the document is then left as it was.
pub fn read_criterion(root: Option<&Path>) -> BTreeMap<String, Bench> {
    let mut out = BTreeMap::new();
    if let Some(root) = root.filter(|r| r.is_dir()) {
        walk(root, &mut out);
    }
    out
}

/// criterion keeps the latest result of each benchmark in a directory named `new` (`base` and `change`
/// hold older ones), so only those are read.
fn walk(dir: &Path, out: &mut BTreeMap<String, Bench>) {
    if dir.file_name().is_some_and(|n| n == "new") && dir.join("benchmark.json").is_file() {
        if let Some((id, bench)) = read_bench(dir) {
            out.insert(id, bench);
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&entry.path(), out);
        }
    }
}

/// One benchmark's result; `None` if either file is missing or unreadable (an interrupted run), which
/// skips that benchmark only.
fn read_bench(dir: &Path) -> Option<(String, Bench)> {
    let read = |name: &str| std::fs::read(dir.join(name)).ok();
    let b: BenchmarkJson = serde_json::from_slice(&read("benchmark.json")?).ok()?;
    let e: EstimatesJson = serde_json::from_slice(&read("estimates.json")?).ok()?;
    let (elements, bytes) = match b.throughput {
        Some(ThroughputJson::Known(Throughput::Elements(n))) => (Some(n), None),
        Some(ThroughputJson::Known(Throughput::Bytes(n))) => (None, Some(n)),
        Some(ThroughputJson::Known(Throughput::ElementsAndBytes { elements, bytes })) => {
            (Some(elements), Some(bytes))
        }
        Some(ThroughputJson::Other(_)) | None => (None, None),
    };
    let bench = Bench {
        group: b.group_id,
        function: b.function_id.unwrap_or_default(),
        value: b.value_str.unwrap_or_default(),
        median_ns: e.median.point_estimate,
        elements: elements.filter(|&n| n > 0),
        bytes: bytes.filter(|&n| n > 0),
    };
    Some((b.full_id, bench))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_lines_are_split_from_the_table() {
        let (meta, table) = split_meta("# date: 2026-11-27\n# cpu: AMD: EPYC\nengine,x\nfoldlog,1\n");
        assert_eq!(meta["date"], "2026-11-27");
        assert_eq!(meta["cpu"], "AMD: EPYC", "only the first colon separates");
        assert_eq!(table, "engine,x\nfoldlog,1\n");
    }

    #[test]
    fn criterion_results_are_read_from_new_directories() {
        let root = tempfile::tempdir().unwrap();
        let bench = |dir: &str, json: &str, median: f64| {
            let d = root.path().join(dir);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("benchmark.json"), json).unwrap();
            let est = format!(r#"{{"median":{{"point_estimate":{median},"standard_error":1.0}}}}"#);
            std::fs::write(d.join("estimates.json"), est).unwrap();
        };
        bench(
            "append_never/payload_128/batch_10/new",
            r#"{"group_id":"append/never","function_id":"payload_128","value_str":"batch_10",
                "throughput":{"ElementsAndBytes":{"elements":10,"bytes":1280}},
                "full_id":"append/never/payload_128/batch_10"}"#,
            3310.0,
        );
        bench(
            "replay/x/base",
            r#"{"group_id":"replay","function_id":null,"value_str":null,"throughput":null,"full_id":"replay/x"}"#,
            1.0,
        );
        bench(
            "odd/new",
            r#"{"group_id":"odd","function_id":null,"value_str":null,
                "throughput":{"BytesDecimal":5},"full_id":"odd"}"#,
            7.0,
        );
        let got = read_criterion(Some(root.path()));
        assert_eq!(got.len(), 2, "base/ results are not read: {got:?}");
        let b = &got["append/never/payload_128/batch_10"];
        assert_eq!((b.elements, b.bytes, b.median_ns), (Some(10), Some(1280), 3310.0));
        assert_eq!((got["odd"].elements, got["odd"].bytes, got["odd"].function.as_str()), (None, None, ""));
        assert!(read_criterion(Some(&root.path().join("absent"))).is_empty());
    }
}
