//! The plots of docs/benchmarks.md, drawn with plotters' SVG backend.
//!
//! Every value axis is logarithmic: the engines differ by up to three orders of magnitude in one group,
//! and on a linear axis the slower ones would be invisible.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::format::fmt_tick;
use super::input::Bench;
use super::{Result, Results};

/// A plot that was drawn: its file in the plots directory and the alt text the document gives it.
pub struct Plot {
    pub file: &'static str,
    pub alt: &'static str,
}

/// Draws every plot whose data is present; the criterion plots need criterion's results.
pub fn make_plots(res: &Results, crit: &BTreeMap<String, Bench>, dir: &Path) -> Result<Vec<Plot>> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut made = Vec::new();
    let mut keep = |drawn: bool, file, alt| {
        if drawn {
            made.push(Plot { file, alt });
        }
    };
    let drawn = append_throughput(res, &dir.join("append_throughput.svg"))?;
    keep(drawn, "append_throughput.svg", "Append throughput by batch size and durability, every engine");
    let drawn = latency(res, &dir.join("latency.svg"))?;
    keep(drawn, "latency.svg", "Read and durable-append latency percentiles");
    let drawn = replay(res, &dir.join("replay.svg"))?;
    keep(drawn, "replay.svg", "Full replay throughput");
    let drawn = append_batch(crit, &dir.join("append_batch.svg"))?;
    keep(drawn, "append_batch.svg", "foldlog append throughput by batch size and durability (criterion)");
    let drawn = open_time(crit, &dir.join("open_time.svg"))?;
    keep(drawn, "open_time.svg", "Open (recovery) time versus log size");
    Ok(made)
}

// ------------------------------------------------------------------------------------------------------
// The plots

/// One engine's figure over the runs: the bar's height and the ends of its range line.
#[derive(Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

fn spread(res: &Results, engine: &str, scenario: &str, metric: &str) -> Option<Spread> {
    res.get(engine, scenario, metric).map(|r| Spread { median: r.median, min: r.min, max: r.max })
}

/// A bar group per (scenario, metric), labelled in two lines: what was done, and how.
fn groups(res: &Results, pairs: &[(&'static str, &str, &str)]) -> Vec<(&'static str, Vec<Option<Spread>>)> {
    let by_engine = |s: &str, m: &str| res.engines.iter().map(|e| spread(res, e, s, m)).collect();
    pairs.iter().map(|&(label, s, m)| (label, by_engine(s, m))).collect()
}

fn append_throughput(res: &Results, path: &Path) -> Result<bool> {
    let pairs = [
        ("1/call\nno sync", "append_nosync", "throughput"),
        ("100/call\nno sync", "batch100_nosync", "throughput"),
        ("1/call\ngroup 1,000", "append_group", "throughput"),
        ("100/call\ngroup 1,000 ev", "batch100_group", "throughput"),
        ("1/call\nsync each", "append_always", "throughput"),
    ];
    BarChart {
        title: "Append throughput by batch size and durability",
        subtitle: "comparison harness, one workload; median of runs, bars show min–max",
        series: &res.engines,
        groups: groups(res, &pairs),
        unit: "events/s",
    }
    .draw(path)
}

fn latency(res: &Results, path: &Path) -> Result<bool> {
    let pairs = [
        ("read stream\np50", "read_stream", "p50"),
        ("read stream\np99", "read_stream", "p99"),
        ("first 100 ev\np50", "read_100", "p50"),
        ("first 100 ev\np99", "read_100", "p99"),
        ("append+sync\np50", "append_always", "p50"),
        ("append+sync\np99", "append_always", "p99"),
    ];
    BarChart {
        title: "Latency percentiles",
        subtitle: "lower is better; median of runs, bars show min–max",
        series: &res.engines,
        groups: groups(res, &pairs),
        unit: "µs",
    }
    .draw(path)
}

fn replay(res: &Results, path: &Path) -> Result<bool> {
    BarChart {
        title: "Full replay in global order",
        subtitle: "events/s, higher is better",
        series: &res.engines,
        groups: groups(res, &[("replay", "replay", "throughput")]),
        unit: "events/s",
    }
    .draw(path)
}

/// Criterion: foldlog's throughput by batch size, one line per durability, 128-byte payloads.
fn append_batch(crit: &BTreeMap<String, Bench>, path: &Path) -> Result<bool> {
    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for b in crit.values().filter(|b| b.function == "payload_128") {
        let (Some(mode), Some(n)) = (b.group.strip_prefix("append/"), b.elements) else { continue };
        // The value is `batch_N`: N events per call.
        let Some(batch) = b.value.rsplit('_').next().and_then(|v| v.parse::<u64>().ok()) else { continue };
        series.entry(mode).or_default().push((batch as f64, n as f64 / (b.median_ns / 1e9)));
    }
    LineChart {
        title: "foldlog append throughput by batch size (criterion, 128-byte payloads)",
        subtitle: "one stream per call; durability never / group commit (defaults) / every append",
        series: in_order(series, &["never", "group", "always"]),
        x_label: "events per append call",
        unit: "events/s",
    }
    .draw(path)
}

/// Criterion: open time against the number of events in the log, one line per recovery case.
fn open_time(crit: &BTreeMap<String, Bench>, path: &Path) -> Result<bool> {
    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for b in crit.values().filter(|b| b.group == "recovery") {
        let Ok(events) = b.value.parse::<u64>() else { continue };
        series.entry(b.function.as_str()).or_default().push((events as f64, b.median_ns / 1e6));
    }
    LineChart {
        title: "foldlog open time versus log size (criterion)",
        subtitle: "index checkpoint fresh / stale (half the log) / none; torn last batch",
        series: in_order(series, &["fresh_checkpoint", "stale_checkpoint", "no_checkpoint", "torn_tail"]),
        x_label: "events in the log",
        unit: "ms",
    }
    .draw(path)
}

/// The named series in the legend's order; any other is not plotted.
fn in_order<'a>(
    mut series: BTreeMap<&str, Vec<(f64, f64)>>,
    order: &[&'a str],
) -> Vec<(&'a str, Vec<(f64, f64)>)> {
    order.iter().filter_map(|&name| series.remove(name).map(|points| (name, points))).collect()
}

// ------------------------------------------------------------------------------------------------------
// Drawing

const FONT: &str = "sans-serif";
/// plotters' SVG backend writes a font size divided by 1.24, so these come out as 12 and 15 px.
const TEXT: f64 = 15.0;
const TITLE: f64 = 18.6;

/// One colour per engine, and per durability or recovery case in the criterion plots; the same name has
/// the same colour in every plot.
fn color(name: &str) -> RGBColor {
    match name {
        "foldlog" | "never" | "fresh_checkpoint" => RGBColor(0x1f, 0x6f, 0xb4),
        "raw" => RGBColor(0x8c, 0x8c, 0x8c),
        "sqlite" | "torn_tail" => RGBColor(0x3a, 0x9a, 0x3a),
        "redb" | "always" | "no_checkpoint" => RGBColor(0xc9, 0x42, 0x3a),
        "fjall" => RGBColor(0x8a, 0x63, 0xb8),
        "group" | "stale_checkpoint" => RGBColor(0xe0, 0x8a, 0x1e),
        _ => RGBColor(0x44, 0x44, 0x44),
    }
}

const GRID: RGBColor = RGBColor(0xe4, 0xe4, 0xe4);
const INK: RGBColor = RGBColor(0x33, 0x33, 0x33);
const MUTED: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// A logarithmic axis over whole decades, with a tick at each.
struct LogAxis {
    lo: f64,
    hi: f64,
}

impl LogAxis {
    /// The decades around `lo..=hi`. With `pad`, at least two decades, so that bars of similar height
    /// are not stretched into looking very different.
    fn new(lo: f64, hi: f64, pad: bool) -> Self {
        let lo_exp = lo.max(1e-12).log10().floor() as i32;
        let mut hi_exp = hi.log10().ceil().max(f64::from(lo_exp + 1)) as i32;
        if pad && hi_exp - lo_exp < 2 && lo > 0.0 {
            hi_exp += 1;
        }
        LogAxis { lo: 10f64.powi(lo_exp), hi: 10f64.powi(hi_exp) }
    }

    fn ticks(&self) -> Vec<f64> {
        let decades = (self.hi / self.lo).log10().round() as i32;
        (0..=decades).map(|k| self.lo * 10f64.powi(k)).collect()
    }

    fn coord(&self) -> WithKeyPoints<LogCoord<f64>> {
        (self.lo..self.hi).log_scale().with_key_points(self.ticks())
    }
}

/// The title and subtitle at the top, and a strip at the bottom for the legend; returns the area between.
fn frame<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    title: &str,
    subtitle: &str,
) -> Result<DrawingArea<SVGBackend<'a>, Shift>> {
    root.fill(&WHITE)?;
    let body = root.titled(title, (FONT, TITLE).into_font().style(FontStyle::Bold))?;
    let body = body.titled(subtitle, (FONT, TEXT).into_font().color(&MUTED))?;
    let height = body.dim_in_pixel().1;
    Ok(body.split_vertically(height.saturating_sub(40)).0)
}

/// A row of colour swatches and names under the plot, from its left edge.
fn legend(root: &DrawingArea<SVGBackend, Shift>, names: &[&str], left: i32) -> Result<()> {
    let y = root.dim_in_pixel().1 as i32 - 24;
    let style = TextStyle::from((FONT, TEXT).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let mut x = left;
    for name in names {
        root.draw(&Rectangle::new([(x, y - 6), (x + 12, y + 6)], color(name).filled()))?;
        root.draw(&Text::new(name.to_string(), (x + 17, y), style.clone()))?;
        x += (7 * name.len() as i32 + 40).max(100);
    }
    Ok(())
}

/// The value axis and grid, shared by both kinds of chart.
fn mesh<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    unit: &str,
    x_label: Option<&str>,
) -> Result<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let tick = |v: &f64| fmt_tick(*v);
    let mut m = chart.configure_mesh();
    m.y_desc(format!("{unit} (log scale)"))
        .y_label_formatter(&tick)
        .x_label_formatter(&tick)
        .bold_line_style(GRID)
        .axis_style(INK)
        .label_style((FONT, TEXT).into_font().color(&INK))
        .axis_desc_style((FONT, TEXT).into_font().color(&INK));
    match x_label {
        Some(label) => m.x_desc(label),
        // Bar groups are labelled by the chart itself, in two lines.
        None => m.disable_x_mesh().x_labels(0),
    };
    m.draw()?;
    Ok(())
}

/// Grouped bars on a logarithmic axis: a group per label, a bar per series, each with a line over the
/// runs' min–max.
struct BarChart<'a> {
    title: &'a str,
    subtitle: &'a str,
    series: &'a [&'a str],
    groups: Vec<(&'a str, Vec<Option<Spread>>)>,
    unit: &'a str,
}

impl BarChart<'_> {
    /// Draws the chart into `path`; `false` (and no file) when no series has a value.
    fn draw(&self, path: &Path) -> Result<bool> {
        let all: Vec<Spread> = self.groups.iter().flat_map(|(_, v)| v.iter().flatten().copied()).collect();
        if all.is_empty() {
            return Ok(false);
        }
        let min = all.iter().map(|s| s.min).fold(f64::INFINITY, f64::min);
        let max = all.iter().map(|s| s.max).fold(f64::NEG_INFINITY, f64::max);
        let axis = LogAxis::new(min, max, true);
        // Wide enough for every bar to keep the same width whatever the number of engines.
        let (groups, series) = (self.groups.len() as u32, self.series.len() as u32);
        let size = ((90 + groups * (series * 22 + 36)).max(640), 420);

        let root = SVGBackend::new(path, size).into_drawing_area();
        let body = frame(&root, self.title, self.subtitle)?;
        let mut chart = ChartBuilder::on(&body)
            .margin_right(20)
            .margin_top(8)
            .x_label_area_size(46)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..f64::from(groups), axis.coord())?;
        mesh(&mut chart, self.unit, None)?;
        self.draw_bars(&mut chart, axis.lo)?;
        self.draw_group_labels(&root, &chart)?;
        legend(&root, self.series, chart.plotting_area().get_pixel_range().0.start)?;
        root.present()?;
        Ok(true)
    }

    /// The bars of each group, side by side in the middle of the group's slot, 22 px wide at most.
    fn draw_bars<'a, X, Y>(
        &self,
        chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
        floor: f64,
    ) -> Result<()>
    where
        X: Ranged<ValueType = f64>,
        Y: Ranged<ValueType = f64>,
    {
        let series = self.series.len() as f64;
        let slot_px = chart.plotting_area().dim_in_pixel().0 as f64 / self.groups.len() as f64;
        // In the x axis's units, where a group's slot is 1 wide; a 2 px gap between bars.
        let bar = (22.0 / slot_px).min((1.0 - 16.0 / slot_px) / series);
        let gap = 2.0 / slot_px;
        for (g, (_, values)) in self.groups.iter().enumerate() {
            let start = g as f64 + (1.0 - bar * series) / 2.0;
            for (s, v) in values.iter().enumerate() {
                let Some(v) = v else { continue };
                let (x0, x1) = (start + s as f64 * bar, start + (s as f64 + 1.0) * bar - gap);
                // A zero has no place on a log axis: it is drawn at the floor, as an empty bar.
                let at_least_floor = |v: f64| v.max(floor);
                let top = at_least_floor(v.median);
                let fill = color(self.series[s]).filled();
                chart.draw_series(std::iter::once(Rectangle::new([(x0, floor), (x1, top)], fill)))?;
                if v.max > v.min {
                    let mid = (x0 + x1) / 2.0;
                    let ends = vec![(mid, at_least_floor(v.min)), (mid, at_least_floor(v.max))];
                    let range = PathElement::new(ends, RGBColor(0x11, 0x11, 0x11));
                    chart.draw_series(std::iter::once(range))?;
                }
            }
        }
        Ok(())
    }

    /// Each group's label under its slot, in as many lines as it has (plotters' axis labels have one).
    fn draw_group_labels<X, Y>(
        &self,
        root: &DrawingArea<SVGBackend, Shift>,
        chart: &ChartContext<SVGBackend, Cartesian2d<X, Y>>,
    ) -> Result<()>
    where
        X: Ranged<ValueType = f64>,
        Y: Ranged<ValueType = f64>,
    {
        let style = TextStyle::from((FONT, TEXT).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        let bottom = chart.plotting_area().get_pixel_range().1.end;
        for (g, (label, _)) in self.groups.iter().enumerate() {
            let (x, _) = chart.backend_coord(&(g as f64 + 0.5, 1.0));
            root.draw(&MultiLineText::<_, &str>::from_str(*label, (x, bottom + 6), style.clone(), 0))?;
        }
        Ok(())
    }
}

/// Lines with a marker per point, logarithmic on both axes.
struct LineChart<'a> {
    title: &'a str,
    subtitle: &'a str,
    series: Vec<(&'a str, Vec<(f64, f64)>)>,
    x_label: &'a str,
    unit: &'a str,
}

impl LineChart<'_> {
    /// Draws the chart into `path`; `false` (and no file) when there is no point.
    fn draw(mut self, path: &Path) -> Result<bool> {
        let points: Vec<(f64, f64)> = self.series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        if points.is_empty() {
            return Ok(false);
        }
        let bounds = |f: fn(&(f64, f64)) -> f64| {
            let v = points.iter().map(f);
            (v.clone().fold(f64::INFINITY, f64::min), v.fold(f64::NEG_INFINITY, f64::max))
        };
        let ((x_lo, x_hi), (y_lo, y_hi)) = (bounds(|p| p.0), bounds(|p| p.1));
        let (x_axis, y_axis) = (LogAxis::new(x_lo, x_hi, false), LogAxis::new(y_lo, y_hi, true));

        let root = SVGBackend::new(path, (680, 420)).into_drawing_area();
        let body = frame(&root, self.title, self.subtitle)?;
        let mut chart = ChartBuilder::on(&body)
            .margin_right(30)
            .margin_top(8)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(x_axis.coord(), y_axis.coord())?;
        mesh(&mut chart, self.unit, Some(self.x_label))?;
        for (name, points) in &mut self.series {
            points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
            let style = color(name).filled().stroke_width(2);
            chart.draw_series(LineSeries::new(points.iter().copied(), style).point_size(4))?;
        }
        let names: Vec<&str> = self.series.iter().map(|(n, _)| *n).collect();
        legend(&root, &names, chart.plotting_area().get_pixel_range().0.start)?;
        root.present()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axes_cover_whole_decades() {
        let a = LogAxis::new(33_000.0, 4_950_000.0, true);
        assert_eq!((a.lo, a.hi), (1e4, 1e7));
        assert_eq!(a.ticks(), [1e4, 1e5, 1e6, 1e7]);
        let narrow = LogAxis::new(3.0e7, 4.0e7, true);
        assert_eq!((narrow.lo, narrow.hi), (1e7, 1e9), "padded to two decades");
        let x = LogAxis::new(1.0, 1000.0, false);
        assert_eq!((x.lo, x.hi), (1.0, 1000.0), "exact decades are not widened");
    }
}
