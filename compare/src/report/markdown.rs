//! The generated sections of docs/benchmarks.md: plots, machine, comparison, dcb, jetstream and criterion.

use std::collections::BTreeMap;

use super::format::{esc, fixed, fmt, fmt_ns, natural_cmp};
use super::input::{Bench, Meta, Row};
use super::plots::Plot;
use super::{Result, Results};

/// The peers foldlog is held against in the "best peer" target.
const PEERS: [&str; 3] = ["sqlite", "redb", "fjall"];

/// The scenarios in the order the document presents them, with the heading of each.
pub const SCENARIOS: [(&str, &str); 12] = [
    ("append_group", "Append, 1 event per call, group commit every 1,000 calls"),
    ("append_nosync", "Append, 1 event per call, no sync"),
    ("append_always", "Append, 1 event per call, sync every call (time-bounded)"),
    ("batch100_nosync", "Append, 100 events (100-byte payloads) per call, no sync"),
    ("batch100_group", "Append, 100 events (100-byte payloads) per call, sync every 10 calls"),
    ("read_stream", "1,000 random stream reads (whole stream)"),
    ("read_100", "1,000 reads of the first 100 events of a random stream with at least 100"),
    ("replay", "Full replay in global order"),
    ("reopen", "Reopen and read the first event of the hottest stream"),
    ("read_stream_reopened", "The same 1,000 whole-stream reads on the reopened handle"),
    ("read_100_reopened", "The same 1,000 reads of the first 100 events on the reopened handle"),
    ("disk", "Bytes on disk after the 1,000,000-event group-commit run (allocated blocks)"),
];

/// The criterion groups with a table each, in this order; other groups are not shown.
const CRITERION_GROUPS: [&str; 7] =
    ["append/never", "append/group", "append/always", "streams", "read_stream", "replay", "recovery"];

/// A new document's skeleton, for a first run into an empty directory.
pub const TEMPLATE: &str = "# foldlog benchmarks

<!-- BEGIN generated: plots -->
<!-- END generated: plots -->

## Machine

<!-- BEGIN generated: machine -->
<!-- END generated: machine -->

## Comparison

<!-- BEGIN generated: comparison -->
<!-- END generated: comparison -->

## DCB: read-decide-append

<!-- BEGIN generated: dcb -->
<!-- END generated: dcb -->

## JetStream: the cost of going distributed

<!-- BEGIN generated: jetstream -->
<!-- END generated: jetstream -->

## Criterion

<!-- BEGIN generated: criterion -->
<!-- END generated: criterion -->
";

/// Replaces the body of every `name` section; a document without its markers is an error, since writing
/// it anyway would drop the section silently.
pub fn replace_section(doc: &str, name: &str, body: &str) -> Result<String> {
    let begin = format!("<!-- BEGIN generated: {name} -->\n");
    let end = format!("<!-- END generated: {name} -->");
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    let mut found = false;
    while let Some(b) = rest.find(&begin) {
        let inner = b + begin.len();
        let Some(e) = rest[inner..].find(&end) else { break };
        out.push_str(&rest[..inner]);
        out.push_str(body.trim_end());
        out.push('\n');
        out.push_str(&end);
        rest = &rest[inner + e + end.len()..];
        found = true;
    }
    if !found {
        return Err(format!("report: no '{name}' markers in the document").into());
    }
    out.push_str(rest);
    Ok(out)
}

/// An image link per plot drawn, `rel` being the plots directory relative to the document.
pub fn plots_section(made: &[Plot], rel: &str) -> String {
    made.iter().map(|p| format!("![{}]({rel}/{})", p.alt, p.file)).collect::<Vec<_>>().join("\n\n")
}

/// The run's machine, versions and command, as a two-column table.
pub fn machine_section(meta: &Meta) -> String {
    let keys = [
        "date",
        "cpu",
        "memory",
        "kernel",
        "filesystem",
        "rustc",
        "foldlog commit",
        "engines",
        "workload",
        "command",
    ];
    let mut lines = vec!["| | |".to_owned(), "|---|---|".to_owned()];
    for k in keys {
        if let Some(v) = meta.get(k) {
            lines.push(format!("| {k} | {} |", esc(v)));
        }
    }
    lines.join("\n")
}

/// A table per scenario (every engine, and how foldlog compares with each), its settings, its targets.
pub fn comparison_section(meta: &Meta, res: &Results) -> String {
    let default_cmd = "cargo run --release --manifest-path compare/Cargo.toml --";
    let cmd = meta.get("command").map_or(default_cmd, String::as_str);
    let mut lines = vec![
        format!("Reproduce every table in this section: `{cmd}` (or `scripts/bench.sh`)."),
        String::new(),
        "Each cell is the median of the runs, with min–max in brackets. The `fl ÷ X` columns say how many \
         times better foldlog is than X in that row (> 1: foldlog wins, < 1: foldlog is behind), whichever \
         direction is better for the metric."
            .to_owned(),
        String::new(),
    ];
    let targets = targets(res);
    for (scenario, title) in SCENARIOS {
        let metrics = res.metrics(scenario);
        if metrics.is_empty() {
            continue;
        }
        lines.push(format!("#### {title}"));
        lines.push(String::new());
        scenario_table(&mut lines, res, scenario, &metrics);
        lines.push(String::new());
        scenario_settings(&mut lines, res, scenario, metrics[0]);
        let mine: Vec<&Target> = targets.iter().filter(|t| t.scenario == scenario).collect();
        for t in &mine {
            lines.push(format!("- Target {}: **{}**.", t.text, if t.met { "met" } else { "missed" }));
        }
        if !mine.is_empty() {
            lines.push(String::new());
        }
    }
    lines.join("\n")
}

fn scenario_table(lines: &mut Vec<String>, res: &Results, scenario: &str, metrics: &[&str]) {
    let others: Vec<&str> = res.engines.iter().copied().filter(|e| *e != "foldlog").collect();
    let mut head = vec!["metric".to_owned()];
    head.extend(res.engines.iter().map(|e| e.to_string()));
    head.extend(others.iter().map(|o| format!("fl ÷ {o}")));
    lines.push(format!("| {} |", head.join(" | ")));
    lines.push(format!("|{}", "---|".repeat(head.len())));
    for &m in metrics {
        // The unit is the metric's, whichever engine's row names it first.
        let unit = res.rows.iter().find(|r| r.scenario == scenario && r.metric == m).map_or("", |r| &r.unit);
        let mut cells = vec![format!("{m} ({unit})")];
        cells.extend(res.engines.iter().map(|e| cell(res.get(e, scenario, m))));
        let f = res.get("foldlog", scenario, m);
        for o in &others {
            cells.push(match advantage(f, res.get(o, scenario, m)) {
                None => "–".to_owned(),
                // Bold where foldlog is behind, so the rows that need work stand out.
                Some(a) if a < 1.0 => format!("**{} ×**", fixed(a, 2)),
                Some(a) => format!("{} ×", fixed(a, 2)),
            });
        }
        lines.push(format!("| {} |", cells.join(" | ")));
    }
}

/// The DCB table's rows: scenario, metric, label. The sync-every-command rows first, as in the issue.
const DCB_ROWS: [(&str, &str, &str); 7] = [
    ("dcb_always", "throughput", "DCB commands/s, sync every command"),
    ("dcb_always", "p50", "… p50 per command (µs)"),
    ("dcb_always", "p99", "… p99 per command (µs)"),
    ("dcb_plain_always", "throughput", "plain appends/s of the same events, sync every append"),
    ("dcb_group", "throughput", "DCB commands/s, group commit (a sync every 1,000 appends)"),
    ("dcb_plain_group", "throughput", "plain appends/s of the same events, group commit"),
    ("dcb_group", "appended", "commands that appended, group commit (%)"),
];

/// The best rate the Python eventsourcing library's DCB speedrun reports (commands/s, durable, on UmaDB and
/// PostgreSQL); issue 17 asks for 100 × it with group commit.
const PYTHON_SPEEDRUN_BEST: f64 = 3904.0;

/// The DCB comparison (`--dcb`, its own CSV): one table of both modes, DCB against plain appends, the
/// settings and the targets.
pub fn dcb_section(meta: &Meta, res: &Results) -> String {
    let get = |k: &str| meta.get(k).map_or("?", String::as_str);
    let mut lines = vec![
        format!(
            "Measured on {} at {} ({}; {}). Reproduce: `{}` (or `scripts/bench.sh --dcb`).",
            get("date"),
            get("foldlog commit"),
            get("cpu"),
            get("filesystem"),
            get("command")
        ),
        String::new(),
        format!("Workload: {}.", get("workload")),
        String::new(),
    ];
    let mut head = vec!["".to_owned()];
    head.extend(res.engines.iter().map(|e| e.to_string()));
    let others: Vec<&str> = res.engines.iter().copied().filter(|e| *e != "foldlog").collect();
    head.extend(others.iter().map(|o| format!("fl ÷ {o}")));
    lines.push(format!("| {} |", head.join(" | ")));
    lines.push(format!("|{}", "---|".repeat(head.len())));
    for (scenario, metric, label) in DCB_ROWS {
        if res.engines.iter().all(|e| res.get(e, scenario, metric).is_none()) {
            continue;
        }
        let mut cells = vec![label.to_owned()];
        cells.extend(res.engines.iter().map(|e| cell(res.get(e, scenario, metric))));
        let f = res.get("foldlog", scenario, metric);
        for o in &others {
            cells.push(match advantage(f, res.get(o, scenario, metric)) {
                // The share of commands that appended is a check that both did the same work, not a race.
                _ if metric == "appended" => "–".to_owned(),
                None => "–".to_owned(),
                Some(a) if a < 1.0 => format!("**{} ×**", fixed(a, 2)),
                Some(a) => format!("{} ×", fixed(a, 2)),
            });
        }
        lines.push(format!("| {} |", cells.join(" | ")));
    }
    let val = |e: &str, s: &str| res.get(e, s, "throughput").map(|r| r.median).filter(|v| *v != 0.0);
    // Each run's DCB rate over the plain rate of the run beside it, then the median of those; the ratio of
    // the medians only where the CSV lacks the paired figure.
    let per_plain = |e: &str, dcb: &str, plain: &str| match res.get(e, dcb, "per_plain") {
        Some(r) => Some((r.median, (r.runs > 1).then_some((r.min, r.max)))),
        None => Some((val(e, dcb)? / val(e, plain)?, None)),
    };
    for (label, dcb, plain) in [
        ("DCB commands ÷ plain appends, sync every command", "dcb_always", "dcb_plain_always"),
        ("DCB commands ÷ plain appends, group commit", "dcb_group", "dcb_plain_group"),
    ] {
        let mut cells = vec![label.to_owned()];
        cells.extend(res.engines.iter().map(|e| match per_plain(e, dcb, plain) {
            Some((m, Some((lo, hi)))) => format!("{} × [{}–{}]", fixed(m, 2), fixed(lo, 2), fixed(hi, 2)),
            Some((m, None)) => format!("{} ×", fixed(m, 2)),
            None => "–".to_owned(),
        }));
        cells.extend(others.iter().map(|_| "–".to_owned()));
        lines.push(format!("| {} |", cells.join(" | ")));
    }
    lines.push(String::new());
    for (mode, scenario) in [("sync every command", "dcb_always"), ("group commit", "dcb_group")] {
        let settings: Vec<String> = res
            .engines
            .iter()
            .filter_map(|e| res.get(e, scenario, "throughput").map(|r| format!("{e}: {}", r.setting)))
            .collect();
        if !settings.is_empty() {
            lines.push(format!("Settings, {mode} (the same promise for both): {}.", settings.join("; ")));
            lines.push(String::new());
        }
    }
    if let Some((ratio, _)) = per_plain("foldlog", "dcb_always", "dcb_plain_always") {
        lines.push(format!(
            "- Target: DCB commands with a sync each ≥ 0.9 × foldlog's plain sync-every-append rate (is {} ×): \
             **{}**.",
            fixed(ratio, 2),
            if ratio >= 0.9 { "met" } else { "missed" }
        ));
    }
    if let Some(d) = val("foldlog", "dcb_group") {
        let goal = 100.0 * PYTHON_SPEEDRUN_BEST;
        lines.push(format!(
            "- Target: DCB commands with group commit ≥ {} commands/s, 100 × the Python library's speedrun (is {}, \
             {} ×): **{}**.",
            fmt(goal),
            fmt(d),
            fixed(d / PYTHON_SPEEDRUN_BEST, 0),
            if d >= goal { "met" } else { "missed" }
        ));
    }
    lines.join("\n")
}

/// The JetStream comparison's columns: scenario, metric, heading.
const JETSTREAM_COLUMNS: [(&str, &str, &str); 4] = [
    ("js_append_one", "per_event", "append, 1 event per call (exact expected version)"),
    ("js_append_batched", "per_event", "append, 100 per call, per event"),
    ("js_read_stream", "per_read", "read a 20-event stream"),
    ("js_replay", "per_event", "replay, per event"),
];

/// What each engine of the JetStream comparison is, for the table's first column.
fn jetstream_engine(engine: &str) -> &str {
    match engine {
        "foldlog-always" => "embedded, Durability::Always",
        "foldlog-never" => "embedded, Durability::Never",
        "jetstream-r1" => "JetStream, replicas 1",
        "jetstream-r3" => "JetStream, replicas 3 (3 nodes)",
        other => other,
    }
}

/// The JetStream comparison (`--jetstream`, its own CSV): one row per engine, times per call or event, then
/// each JetStream engine as a multiple of the embedded store with the same calls.
pub fn jetstream_section(meta: &Meta, res: &Results) -> String {
    let get = |k: &str| meta.get(k).map_or("?", String::as_str);
    let mut lines = vec![
        format!(
            "Measured on {} at {} ({}; {}; {}). Reproduce: `{}` (or `scripts/bench.sh --jetstream`).",
            get("date"),
            get("foldlog commit"),
            get("cpu"),
            get("filesystem"),
            get("engines"),
            get("command")
        ),
        String::new(),
        format!("Workload: {}. Medians over the runs, [min–max] when there were several.", get("workload")),
        String::new(),
    ];
    if let Some(why) = meta.get("skipped") {
        lines.push(format!("Not measured in this run: {why}."));
        lines.push(String::new());
    }
    let head: Vec<&str> = std::iter::once("backend").chain(JETSTREAM_COLUMNS.iter().map(|c| c.2)).collect();
    lines.push(format!("| {} |", head.join(" | ")));
    lines.push(format!("|{}", "---|".repeat(head.len())));
    let micros = |v: f64| fmt_ns(v * 1e3);
    for e in &res.engines {
        let mut cells = vec![jetstream_engine(e).to_owned()];
        cells.extend(JETSTREAM_COLUMNS.iter().map(
            |(scenario, metric, _)| match res.get(e, scenario, metric) {
                None => "–".to_owned(),
                Some(r) if r.runs > 1 => {
                    format!("{} [{}–{}]", micros(r.median), micros(r.min), micros(r.max))
                }
                Some(r) => micros(r.median),
            },
        ));
        lines.push(format!("| {} |", cells.join(" | ")));
    }
    for base in ["foldlog-always", "foldlog-never"] {
        for e in res.engines.iter().filter(|e| e.starts_with("jetstream")) {
            let ratios: Vec<String> = JETSTREAM_COLUMNS
                .iter()
                .map(|(scenario, metric, _)| {
                    let (j, b) = (res.get(e, scenario, metric), res.get(base, scenario, metric));
                    match (j, b) {
                        (Some(j), Some(b)) if b.median > 0.0 => format!("{} ×", fmt(j.median / b.median)),
                        _ => "–".to_owned(),
                    }
                })
                .collect();
            if ratios.iter().any(|r| r != "–") {
                lines.push(format!(
                    "| {} ÷ {} | {} |",
                    jetstream_engine(e),
                    jetstream_engine(base),
                    ratios.join(" | ")
                ));
            }
        }
    }
    lines.push(String::new());
    if lines.iter().any(|l| l.contains(" ÷ ")) {
        lines.push(
            "The rows with ÷ divide a JetStream engine's time by the embedded store's: above 1, JetStream takes that \
             many times longer; below 1, less (the embedded store's sync is in its time, JetStream's page cache is \
             not)."
                .to_owned(),
        );
        lines.push(String::new());
    }
    lines.push("Settings:".to_owned());
    lines.push(String::new());
    for e in &res.engines {
        if let Some(r) = JETSTREAM_COLUMNS.iter().find_map(|(s, m, _)| res.get(e, s, m)) {
            lines.push(format!("- {}: {}.", jetstream_engine(e), r.setting));
        }
    }
    lines.join("\n")
}

/// A median, with the min–max range when there was more than one run.
fn cell(r: Option<&Row>) -> String {
    match r {
        None => "–".to_owned(),
        Some(r) if r.runs > 1 => format!("{} [{}–{}]", fmt(r.median), fmt(r.min), fmt(r.max)),
        Some(r) => fmt(r.median),
    }
}

/// Each engine's setting in an append row, where the settings are what make the rows comparable.
fn scenario_settings(lines: &mut Vec<String>, res: &Results, scenario: &str, metric: &str) {
    if !(scenario.starts_with("append") || scenario.starts_with("batch")) {
        return;
    }
    let settings: Vec<String> = res
        .engines
        .iter()
        .filter_map(|e| res.get(e, scenario, metric).map(|r| format!("{e}: {}", r.setting)))
        .collect();
    if !settings.is_empty() {
        lines.push(format!("Settings (the same durability promise in this row): {}.", settings.join("; ")));
        lines.push(String::new());
    }
}

/// How many times better foldlog is than the other engine (> 1: foldlog better), in whichever direction
/// is better for the metric; `None` when either is missing or zero.
fn advantage(f: Option<&Row>, o: Option<&Row>) -> Option<f64> {
    let (f, o) = (f?, o?);
    if f.median == 0.0 || o.median == 0.0 {
        return None;
    }
    Some(if f.higher_is_better { f.median / o.median } else { o.median / f.median })
}

/// A target of issue 5 that the comparison measures, with the figure that meets or misses it.
struct Target {
    scenario: &'static str,
    text: String,
    met: bool,
}

/// Every target whose figures are in the run, in the order the document lists them.
fn targets(res: &Results) -> Vec<Target> {
    // A zero median means the scenario measured nothing, so it counts as missing, like an absent row.
    let val = |e: &str, s: &str, m: &str| res.get(e, s, m).map(|r| r.median).filter(|v| *v != 0.0);
    let mut out = Vec::new();
    let mut add = |scenario, text: String, met| out.push(Target { scenario, text, met });

    let (f, raw) = (val("foldlog", "append_group", "throughput"), val("raw", "append_group", "throughput"));
    if let (Some(f), Some(raw)) = (f, raw) {
        add("append_group", format!("≥ 1.0 × raw (is {} ×)", fixed(f / raw, 2)), f >= raw);
    }
    let best = PEERS.iter().filter_map(|p| val(p, "append_group", "throughput")).reduce(f64::max);
    if let (Some(f), Some(best)) = (f, best) {
        add("append_group", format!("≥ 6 × best peer (is {} ×)", fixed(f / best, 1)), f >= 6.0 * best);
    }
    let (f, raw) = (val("foldlog", "append_always", "throughput"), val("raw", "append_always", "throughput"));
    if let (Some(f), Some(raw)) = (f, raw) {
        add("append_always", format!("≥ 0.95 × raw (is {} ×)", fixed(f / raw, 2)), f >= 0.95 * raw);
    }
    let (f, raw) = (val("foldlog", "append_always", "p50"), val("raw", "append_always", "p50"));
    if let (Some(f), Some(raw)) = (f, raw) {
        let text = format!("≤ 1.1 × a bare write+fdatasync (raw p50; is {} ×)", fixed(f / raw, 2));
        add("append_always", text, f <= 1.1 * raw);
    }
    if let Some(f) = val("foldlog", "append_nosync", "throughput") {
        add("append_nosync", format!("≥ 2 M events/s (is {})", fmt(f)), f >= 2e6);
    }
    if let Some(f) = val("foldlog", "batch100_nosync", "throughput") {
        add("batch100_nosync", format!("≥ 5 M events/s (is {})", fmt(f)), f >= 5e6);
    }
    let (f, raw) = (val("foldlog", "replay", "throughput"), val("raw", "replay", "throughput"));
    if let Some(f) = f {
        add("replay", format!("≥ 20 M events/s (is {})", fmt(f)), f >= 20e6);
    }
    if let (Some(f), Some(raw)) = (f, raw) {
        add("replay", format!("≥ 1.3 × raw framed read (is {} ×)", fixed(f / raw, 2)), f >= 1.3 * raw);
    }
    if let Some(f) = val("foldlog", "read_100", "p50") {
        add("read_100", format!("< 5 µs (is {} µs)", fmt(f)), f < 5.0);
    }
    if let Some(f) = val("foldlog", "read_100", "p99") {
        add("read_100", format!("< 20 µs (is {} µs)", fmt(f)), f < 20.0);
    }
    if let Some(f) = val("foldlog", "reopen", "open_first_read") {
        add("reopen", format!("≤ 2 ms at 1 M events (is {} ms)", fmt(f)), f <= 2.0);
    }
    if let Some(f) = val("foldlog", "disk", "per_logical") {
        add("disk", format!("≤ 1.15 × logical bytes (is {} ×)", fixed(f, 2)), f <= 1.15);
    }
    out
}

/// A table per criterion group: median time per iteration and the throughput it implies.
pub fn criterion_section(crit: &BTreeMap<String, Bench>) -> String {
    let mut lines = vec![
        "Median time per iteration (criterion's estimate) and the throughput it implies. Details, \
         distributions and history: criterion's HTML report at `target/criterion/report/index.html` after \
         `cargo bench` ([local link](../target/criterion/report/index.html))."
            .to_owned(),
        String::new(),
    ];
    for group in CRITERION_GROUPS {
        let mut items: Vec<&Bench> = crit.values().filter(|b| b.group == group).collect();
        if items.is_empty() {
            continue;
        }
        items.sort_by(|a, b| natural_cmp(&a.function, &b.function).then(natural_cmp(&a.value, &b.value)));
        lines.push(format!("**{group}**"));
        lines.push(String::new());
        lines.push("| benchmark | median time | events/s | MiB/s |".to_owned());
        lines.push("|---|---|---|---|".to_owned());
        lines.extend(items.into_iter().map(criterion_row));
        lines.push(String::new());
    }
    lines.join("\n")
}

fn criterion_row(b: &Bench) -> String {
    let secs = b.median_ns / 1e9;
    let eps = b.elements.map_or("–".to_owned(), |n| fmt(n as f64 / secs));
    let mibs = b.bytes.map_or("–".to_owned(), |n| fixed(n as f64 / secs / (1u64 << 20) as f64, 0));
    let name = [b.function.as_str(), b.value.as_str()].into_iter().filter(|s| !s.is_empty());
    format!("| {} | {} | {eps} | {mibs} |", name.collect::<Vec<_>>().join("/"), fmt_ns(b.median_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_between_their_markers_only() {
        let doc = "intro\n<!-- BEGIN generated: x -->\nold\n<!-- END generated: x -->\nprose\n";
        let got = replace_section(doc, "x", "new\n\n").unwrap();
        assert_eq!(got, "intro\n<!-- BEGIN generated: x -->\nnew\n<!-- END generated: x -->\nprose\n");
        assert!(replace_section(doc, "y", "new").is_err(), "missing markers are an error");
    }

    #[test]
    fn the_jetstream_section_has_a_row_per_engine_and_the_multiples() {
        let row = |engine: &str, scenario: &str, metric: &str, median: f64| Row {
            engine: engine.into(),
            scenario: scenario.into(),
            metric: metric.into(),
            unit: "µs".into(),
            higher_is_better: false,
            median,
            min: median,
            max: median,
            runs: 1,
            setting: format!("{engine} setting"),
        };
        let res = Results::with_engines(
            vec![
                row("foldlog-always", "js_append_one", "per_event", 100.0),
                row("foldlog-always", "js_read_stream", "per_read", 5.0),
                row("jetstream-r1", "js_append_one", "per_event", 300.0),
                row("jetstream-r1", "js_read_stream", "per_read", 3000.0),
            ],
            &crate::jetstream::ENGINES,
        );
        let mut meta = Meta::new();
        meta.insert("skipped".into(), "jetstream-r3: no server".into());
        let text = jetstream_section(&meta, &res);
        assert!(text.contains("| embedded, Durability::Always | 100.00 µs | – | 5.00 µs | – |"), "{text}");
        assert!(text.contains("| JetStream, replicas 1 | 300.00 µs | – | 3.00 ms | – |"), "{text}");
        assert!(
            text.contains(
                "| JetStream, replicas 1 ÷ embedded, Durability::Always | 3.00 × | – | 600 × | – |"
            ),
            "{text}"
        );
        assert!(text.contains("Not measured in this run: jetstream-r3: no server."), "{text}");
        assert!(!text.contains("Durability::Never |"), "engines without figures are left out: {text}");
    }

    #[test]
    fn the_dcb_section_holds_both_modes_and_the_targets() {
        let row = |engine: &str, scenario: &str, metric: &str, median: f64| Row {
            engine: engine.into(),
            scenario: scenario.into(),
            metric: metric.into(),
            unit: "commands/s".into(),
            higher_is_better: true,
            median,
            min: median,
            max: median,
            runs: 1,
            setting: format!("{engine} setting"),
        };
        let res = Results::new(vec![
            row("foldlog", "dcb_always", "throughput", 900.0),
            row("foldlog", "dcb_plain_always", "throughput", 1000.0),
            row("foldlog", "dcb_group", "throughput", 400_000.0),
            row("foldlog", "dcb_plain_group", "throughput", 500_000.0),
            row("sqlite", "dcb_always", "throughput", 450.0),
            row("sqlite", "dcb_group", "throughput", 4000.0),
        ]);
        let text = dcb_section(&Meta::new(), &res);
        assert!(text.contains("| DCB commands/s, sync every command | 900 | 450 | 2.00 × |"), "{text}");
        assert!(text.contains("| DCB commands ÷ plain appends, group commit | 0.80 × | – | – |"), "{text}");
        assert!(text.contains("(is 0.90 ×): **met**"), "{text}");
        assert!(text.contains("(is 400 k, 102 ×): **met**"), "{text}");
        assert!(!text.contains("p50"), "rows without figures are left out: {text}");
    }
}
