//! SVG plots of the benchmarks, rendered by the project itself (`seatgate-tools plot`).
//!
//! Three plots, each read from what the benchmarks already write:
//!
//! - [`render_latency`]: the classic HDR percentile plot of one or more `seatgate-tools drop
//!   --json` reports (`seatgate.drop.v1`, or both runs of a `seatgate.drop.compare.v1`):
//!   latency in ms against the percentile, the x axis a log scale of 1/(1−q) so that
//!   50 %, 90 %, 99 %, 99.9 % … are equally spaced.
//! - [`render_throughput`]: claims answered per second by claim strategy, from a
//!   `drop --compare --json` report.
//! - [`render_reconciler`]: confirmed claims per second by batch size, from criterion's
//!   `estimates.json` / `benchmark.json` of the `reconciler` bench group.
//!
//! plotters is built with the SVG backend only: text goes into `<text>` elements that
//! the viewer lays out, and plotters places it with its built-in width estimate, so no
//! font library is needed to build or run this.

use anyhow::{bail, Context, Result};
use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use seatgate::cli::thousands;
use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::loadgen::report::millis;
use crate::schema::{self, COMPARE_SCHEMA, SCHEMA};

/// Size of every plot, in px.
pub const SIZE: (u32, u32) = (1000, 600);

const FONT: &str = "sans-serif";

/// Distinct colours (the "tab10" palette), one per series.
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// The title of a plot and the line under it (date, machine, workload).
#[derive(Debug, Clone)]
pub struct Titles {
    pub title: String,
    pub note: String,
}

/// `YYYY-MM-DD, N cores`: the default note under a title.
pub fn default_note() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{}, {cores} cores", today_utc())
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today_utc() -> String {
    date_utc(seatgate::clock::unix_secs())
}

/// The UTC date of a Unix time as `YYYY-MM-DD`.
fn date_utc(unix_secs: u64) -> String {
    let date = i64::try_from(unix_secs)
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .map_or(time::Date::MAX, |t| t.date());
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Reads and parses a JSON file; every error names the file.
pub fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
}

/// Writes a rendered plot, creating its folder if needed.
pub fn write_svg(path: &Path, svg: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
}

/// A linear axis whose ticks are exactly the given points (plotters' `with_key_points`
/// has no default formatting, which its mesh needs even with a label formatter).
struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new(range: std::ops::Range<f64>, ticks: Vec<f64>) -> Self {
        Self {
            inner: range.into(),
            ticks,
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

// ---------------------------------------------------------------------------------
// Latency distribution

/// One line of the latency plot.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySeries {
    pub label: String,
    /// `(percentile in 0..=100, latency in ms)`, percentile ascending.
    pub points: Vec<(f64, f64)>,
}

/// The runs of a drop report: the report itself, or both runs of a comparison.
fn runs(doc: Value, path: &Path) -> Result<Vec<schema::DropRun>> {
    match doc["schema"].as_str() {
        Some(SCHEMA) => Ok(vec![parse(doc, SCHEMA, path)?]),
        Some(COMPARE_SCHEMA) => {
            let compare: schema::Compare = parse(doc, COMPARE_SCHEMA, path)?;
            if compare.runs.is_empty() {
                bail!("{}: a comparison without runs", path.display());
            }
            Ok(compare.runs)
        }
        Some(other) => bail!(
            "{}: schema {other:?} is not a drop report ({SCHEMA} or {COMPARE_SCHEMA})",
            path.display()
        ),
        None => bail!(
            "{}: not a drop report (no \"schema\"; expected {SCHEMA} or {COMPARE_SCHEMA})",
            path.display()
        ),
    }
}

/// `doc` as the report type of `schema`; the error names the file and the field.
fn parse<T: serde::de::DeserializeOwned>(doc: Value, schema: &str, path: &Path) -> Result<T> {
    serde_json::from_value(doc)
        .with_context(|| format!("{}: not a well-formed {schema} report", path.display()))
}

/// "redis, closed loop, 500 in flight" / "redis, open loop at 5,000/s".
fn run_label(run: &schema::DropRun) -> String {
    let c = &run.config;
    let who = c.strategy.as_deref().unwrap_or(&c.target);
    match c.mode {
        schema::Pacing::Open => format!(
            "{who}, open loop at {}/s",
            thousands(c.rate_per_s.unwrap_or(0.0).round() as u64)
        ),
        schema::Pacing::Closed => format!(
            "{who}, closed loop, {} in flight",
            thousands(c.concurrency.into())
        ),
    }
}

/// `p99 3.2 ms, p99.9 7.3 ms, max 20 ms` from a latency summary.
fn tail_summary(h: &schema::Latency) -> String {
    let ms = |us: Option<u64>| us.map_or("?".to_owned(), millis);
    format!(
        "p99 {}, p99.9 {}, max {}",
        ms(h.p99),
        ms(h.p99_9),
        ms(h.max)
    )
}

/// The distribution of a `latency_us` / `service_time_us` summary as (percentile, ms).
fn distribution(h: &schema::Latency, what: &str, path: &Path) -> Result<Vec<(f64, f64)>> {
    let points = h.distribution.as_ref().with_context(|| {
        format!(
            "{}: {what} has no \"distribution\" (a report from before `seatgate-tools plot`: run the drop again with --json)",
            path.display()
        )
    })?;
    if points.is_empty() {
        bail!("{}: {what} recorded no latencies", path.display());
    }
    points
        .iter()
        .map(|&(pct, us)| {
            if (0.0..=100.0).contains(&pct) {
                Ok((pct, us as f64 / 1000.0))
            } else {
                bail!(
                    "{}: {what}.distribution has a bad point [{pct}, {us}] (expected [percentile, µs])",
                    path.display()
                )
            }
        })
        .collect()
}

/// The latency lines of one report file (one per run; with `service_time`, the open
/// loop's service time too). `label` replaces the run's own description.
pub fn latency_series(
    path: &Path,
    label: Option<&str>,
    service_time: bool,
) -> Result<Vec<LatencySeries>> {
    let runs = runs(read_json(path)?, path)?;
    let several = runs.len() > 1;
    let mut out = Vec::new();
    for run in &runs {
        let name = match label {
            Some(l) if several => format!("{l}: {}", run_label(run)),
            Some(l) => l.to_owned(),
            None => run_label(run),
        };
        let latency = &run.latency_us;
        let service = run.service_time_us.as_ref();
        let what = if service.is_some() {
            "latency (from intended send)"
        } else {
            "latency"
        };
        out.push(LatencySeries {
            label: format!("{name}, {what}: {}", tail_summary(latency)),
            points: distribution(latency, "latency_us", path)?,
        });
        if let (true, Some(service)) = (service_time, service) {
            out.push(LatencySeries {
                label: format!("{name}, service time: {}", tail_summary(service)),
                points: distribution(service, "service_time_us", path)?,
            });
        }
    }
    Ok(out)
}

/// x of a percentile on the plot: log10(1 / (1 − q)).
fn percentile_x(pct: f64) -> f64 {
    -(1.0 - pct / 100.0).max(1e-9).log10()
}

/// The tick label of an x: 0%, 50%, 90%, 99%, 99.9%, …
fn percentile_label(x: f64) -> String {
    if x <= 0.0 {
        return "0%".to_owned();
    }
    let pct = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.round() as usize).saturating_sub(2);
    format!("{pct:.decimals$}%")
}

/// A latency axis label: `0.5`, `2`, `15`, …
fn ms_label(ms: f64) -> String {
    let text = if ms.abs() < 1.0 {
        format!("{ms:.2}")
    } else if ms.abs() < 10.0 {
        format!("{ms:.1}")
    } else {
        return format!("{ms:.0}");
    };
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The chart frame every plot shares: margins and the axes' label areas.
fn frame<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    y_label_width: u32,
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(area);
    builder
        .margin_left(20)
        .margin_right(30)
        .margin_bottom(10)
        .x_label_area_size(55)
        .y_label_area_size(y_label_width);
    builder
}

/// The grid and label styles every plot shares.
fn house_style<'m, 'a, 'b, X: Ranged, Y: Ranged, DB: DrawingBackend>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>,
    label_size: u32,
) -> &'m mut MeshStyle<'a, 'b, X, Y, DB> {
    mesh.label_style((FONT, label_size))
        .axis_desc_style((FONT, 17))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(245, 245, 245))
}

/// The title, the note under it, and the area left for the chart.
fn header<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    titles: &Titles,
) -> Result<DrawingArea<SVGBackend<'a>, Shift>> {
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(66);
    let center = Pos::new(HPos::Center, VPos::Top);
    let x = SIZE.0 as i32 / 2;
    top.draw_text(
        &titles.title,
        &TextStyle::from((FONT, 24).into_font().style(FontStyle::Bold)).pos(center),
        (x, 10),
    )?;
    top.draw_text(
        &titles.note,
        &TextStyle::from((FONT, 16).into_font())
            .color(&RGBColor(90, 90, 90))
            .pos(center),
        (x, 42),
    )?;
    Ok(body)
}

/// The latency axis, in ms: linear from 0, or (`log`) a log scale with ticks at
/// 1, 2 and 5 × 10^k, for runs whose latencies differ by orders of magnitude.
struct LatencyAxis {
    log: bool,
    /// In axis units: ms, or log10(ms).
    inner: RangedCoordf64,
    /// The ticks of a log axis, in ms.
    ticks: Vec<f64>,
}

impl LatencyAxis {
    /// The smallest latency a log axis shows (10 µs).
    const LOG_FLOOR_MS: f64 = 0.01;

    fn linear(max_ms: f64) -> Self {
        Self {
            log: false,
            inner: (0.0..(max_ms * 1.1).max(0.01)).into(),
            ticks: Vec::new(),
        }
    }

    fn log(min_ms: f64, max_ms: f64) -> Self {
        let lo = min_ms.max(Self::LOG_FLOOR_MS).log10().floor();
        let hi = ((max_ms * 1.3).max(Self::LOG_FLOOR_MS).log10()).max(lo + 1.0);
        let ticks = (lo as i32..=hi.ceil() as i32)
            .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
            .filter(|t| (lo..=hi).contains(&t.log10()))
            .collect();
        Self {
            log: true,
            inner: (lo..hi).into(),
            ticks,
        }
    }

    fn to_axis(&self, ms: f64) -> f64 {
        if self.log {
            ms.max(Self::LOG_FLOOR_MS).log10()
        } else {
            ms
        }
    }
}

impl Ranged for LatencyAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(&self.to_axis(*value), limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        match (self.log, hint.weight().allow_light_points()) {
            (false, _) => self.inner.key_points(hint),
            (true, false) => self.ticks.clone(),
            (true, true) => Vec::new(),
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        let r = self.inner.range();
        if self.log {
            10f64.powf(r.start)..10f64.powf(r.end)
        } else {
            r
        }
    }
}

/// Height of a legend row under a chart, in px.
const LEGEND_ROW: u32 = 24;

/// The HDR percentile plot of `series`, the latency axis linear or (`log_y`) log.
pub fn render_latency(series: &[LatencySeries], titles: &Titles, log_y: bool) -> Result<String> {
    if series.is_empty() {
        bail!("no latency series to plot");
    }
    // The 100 % point (the maximum) has no place on a 1/(1-q) axis; it is in the labels.
    let plotted: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .filter(|(pct, _)| *pct < 100.0)
                .map(|&(pct, ms)| (percentile_x(pct), ms))
                .collect()
        })
        .collect();
    let x_data = plotted.iter().flatten().map(|p| p.0).fold(0.0, f64::max);
    let x_max = x_data.ceil().clamp(2.0, 7.0);
    let y_data = plotted.iter().flatten().map(|p| p.1).fold(0.0, f64::max);
    let y_axis = if log_y {
        let y_min = plotted
            .iter()
            .flatten()
            .map(|p| p.1)
            .filter(|ms| *ms > 0.0)
            .fold(f64::MAX, f64::min);
        LatencyAxis::log(y_min.min(y_data), y_data)
    } else {
        LatencyAxis::linear(y_data)
    };
    let mut keys = vec![0.0, 2f64.log10()];
    keys.extend((1..=x_max as u32).map(f64::from));

    // The legend goes under the chart, where no line can run through it.
    let legend_height = 10 + LEGEND_ROW * series.len() as u32;
    let size = (SIZE.0, SIZE.1 + legend_height);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let body = header(&root, titles)?;
        let (plot, legend) = body.split_vertically(body.dim_in_pixel().1 - legend_height);
        let mut chart =
            frame(&plot, 75).build_cartesian_2d(Ticked::new(0.0..x_max, keys), y_axis)?;
        let y_desc = if log_y {
            "latency (ms, log scale)"
        } else {
            "latency (ms)"
        };
        house_style(
            chart
                .configure_mesh()
                .x_desc("percentile (log scale of 1/(1 − q))")
                .y_desc(y_desc)
                .x_label_formatter(&|x| percentile_label(*x))
                .y_label_formatter(&|y| ms_label(*y)),
            15,
        )
        .draw()?;
        let label_style =
            TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        for (i, (s, points)) in series.iter().zip(plotted).enumerate() {
            let c = color(i);
            chart.draw_series(LineSeries::new(points, c.stroke_width(2)))?;
            let y = (LEGEND_ROW / 2 + LEGEND_ROW * i as u32) as i32;
            legend.draw(&PathElement::new(
                vec![(100, y), (130, y)],
                c.stroke_width(3),
            ))?;
            legend.draw_text(&s.label, &label_style, (140, y))?;
        }
        root.present()?;
    }
    Ok(svg)
}

// ---------------------------------------------------------------------------------
// Throughput by strategy

/// One run of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyRun {
    pub strategy: String,
    pub throughput_per_s: f64,
    pub p99_ms: Option<f64>,
}

/// What a `drop --compare --json` report says.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareData {
    pub runs: Vec<StrategyRun>,
    pub ours: String,
    pub baseline: String,
    pub throughput_ratio: f64,
    pub p99_ratio: Option<f64>,
    /// "100 seats × 200 claims, closed loop, 500 in flight".
    pub workload: String,
}

/// Reads a `seatgate.drop.compare.v1` report.
pub fn load_compare(path: &Path) -> Result<CompareData> {
    let doc = read_json(path)?;
    if doc["schema"].as_str() != Some(COMPARE_SCHEMA) {
        bail!(
            "{}: not a comparison (expected \"schema\": {COMPARE_SCHEMA:?}, from `seatgate-tools drop --compare --json`)",
            path.display()
        );
    }
    let compare: schema::Compare = parse(doc, COMPARE_SCHEMA, path)?;
    let Some(first) = compare.runs.first() else {
        bail!("{}: a comparison without runs", path.display());
    };
    let workload = format!(
        "{} seats × {} claims each, {}",
        thousands(first.config.seats.into()),
        thousands(first.config.claims_per_seat.into()),
        run_label(first)
            .split_once(", ")
            .map_or("", |(_, rest)| rest)
    );
    let runs = compare
        .runs
        .iter()
        .map(|run| StrategyRun {
            strategy: run.config.strategy.as_deref().unwrap_or("?").to_owned(),
            throughput_per_s: run.throughput_per_s,
            p99_ms: run.latency_us.p99.map(|us| us as f64 / 1000.0),
        })
        .collect();
    let cmp = compare.comparison;
    Ok(CompareData {
        ours: cmp.ours,
        baseline: cmp.baseline,
        throughput_ratio: cmp.throughput_ratio,
        p99_ratio: Some(cmp.p99_ratio),
        workload,
        runs,
    })
}

/// The default title of a throughput plot: "Throughput by claim strategy: redis 7.8× mysql".
pub fn throughput_title(data: &CompareData) -> String {
    format!(
        "Throughput by claim strategy: {} {:.1}× {}",
        data.ours, data.throughput_ratio, data.baseline
    )
}

/// Bars of claims answered per second, one per strategy.
pub fn render_throughput(data: &CompareData, titles: &Titles) -> Result<String> {
    if data.runs.is_empty() {
        bail!("no runs to plot");
    }
    let n = data.runs.len();
    let y_data = data
        .runs
        .iter()
        .map(|r| r.throughput_per_s)
        .fold(0.0, f64::max);
    let y_max = (y_data * 1.2).max(1.0);
    let keys: Vec<f64> = (0..n).map(|i| i as f64 + 0.5).collect();
    let names: Vec<String> = data.runs.iter().map(|r| r.strategy.clone()).collect();

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let body = header(&root, titles)?;
        let mut chart =
            frame(&body, 90).build_cartesian_2d(Ticked::new(0.0..n as f64, keys), 0f64..y_max)?;
        house_style(
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_desc("claim strategy")
                .y_desc("claims answered per second")
                .x_label_formatter(&|x| names.get(*x as usize).cloned().unwrap_or_default())
                .y_label_formatter(&|y| thousands(y.round() as u64)),
            16,
        )
        .draw()?;
        for (i, run) in data.runs.iter().enumerate() {
            let x = i as f64;
            let c = color(i);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x + 0.25, 0.0), (x + 0.75, run.throughput_per_s)],
                c.filled(),
            )))?;
            let above =
                TextStyle::from((FONT, 17).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
            let mut lines = vec![format!(
                "{} claims/s",
                thousands(run.throughput_per_s.round() as u64)
            )];
            if let Some(p99) = run.p99_ms {
                lines.push(format!("p99 {}", millis((p99 * 1000.0).round() as u64)));
            }
            let top = (x + 0.5, run.throughput_per_s);
            let count = lines.len() as i32;
            for (k, line) in lines.into_iter().enumerate() {
                let dy = -8 - 22 * (count - 1 - k as i32);
                chart.draw_series(std::iter::once(
                    EmptyElement::at(top) + Text::new(line, (0, dy), above.clone()),
                ))?;
            }
        }
        root.present()?;
    }
    Ok(svg)
}

// ---------------------------------------------------------------------------------
// Reconciler throughput by batch size (criterion)

/// One criterion benchmark of a group, as throughput.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchPoint {
    /// The function id (`batched`, `per_claim`).
    pub function: String,
    /// The parameter (`1`, `10`, …).
    pub value: String,
    /// Elements per second at criterion's typical estimate (the slope when it has one,
    /// else the mean), and at the ends of its confidence interval.
    pub per_s: f64,
    pub per_s_low: f64,
    pub per_s_high: f64,
}

/// The `new/benchmark.json` files under `dir`, at any depth.
fn benchmark_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        if path.is_dir() {
            benchmark_files(&path, out)?;
        } else if path.file_name().is_some_and(|n| n == "benchmark.json")
            && dir.file_name().is_some_and(|n| n == "new")
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads criterion's latest results of bench group `group` under `criterion_dir`
/// (`target/criterion`), sorted by function id then numeric parameter.
pub fn load_criterion_group(criterion_dir: &Path, group: &str) -> Result<Vec<BenchPoint>> {
    let dir = criterion_dir.join(group);
    if !dir.is_dir() {
        bail!(
            "no criterion results in {} (run `cargo bench --bench {group}` first, or give --criterion-dir)",
            dir.display()
        );
    }
    let mut files = Vec::new();
    benchmark_files(&dir, &mut files)?;
    let mut points = Vec::new();
    for file in files {
        let id = read_json(&file)?;
        if id["group_id"].as_str() != Some(group) {
            continue;
        }
        let estimates_path = file.with_file_name("estimates.json");
        let estimates = read_json(&estimates_path)?;
        let typical = if estimates["slope"].is_object() {
            &estimates["slope"]
        } else {
            &estimates["mean"]
        };
        let ns = |v: &Value| v.as_f64().filter(|ns| *ns > 0.0);
        let (Some(mid), Some(low), Some(high)) = (
            ns(&typical["point_estimate"]),
            ns(&typical["confidence_interval"]["lower_bound"]),
            ns(&typical["confidence_interval"]["upper_bound"]),
        ) else {
            bail!(
                "{}: no positive slope or mean estimate",
                estimates_path.display()
            );
        };
        // Elements (or bytes, …) per iteration; a group without throughput counts iterations.
        let per_iter = id["throughput"]
            .as_object()
            .and_then(|t| t.values().next())
            .and_then(Value::as_f64)
            .unwrap_or(1.0);
        let rate = |ns: f64| per_iter * 1e9 / ns;
        points.push(BenchPoint {
            function: id["function_id"].as_str().unwrap_or(group).to_owned(),
            value: id["value_str"].as_str().unwrap_or("").to_owned(),
            per_s: rate(mid),
            per_s_low: rate(high),
            per_s_high: rate(low),
        });
    }
    if points.is_empty() {
        bail!(
            "no results of group {group:?} in {} (no new/benchmark.json)",
            dir.display()
        );
    }
    points.sort_by(|a, b| {
        a.function.cmp(&b.function).then(
            a.value
                .parse::<f64>()
                .unwrap_or(f64::MAX)
                .total_cmp(&b.value.parse::<f64>().unwrap_or(f64::MAX)),
        )
    });
    Ok(points)
}

/// A legend entry for the reconciler bench's function ids.
fn reconciler_label(function: &str) -> String {
    match function {
        "batched" => "batched: one MySQL transaction per batch".to_owned(),
        "per_claim" => "unbatched: one transaction per claim (16 at a time)".to_owned(),
        other => other.to_owned(),
    }
}

/// `549/s`, `10.4k/s`.
fn rate_label(per_s: f64) -> String {
    if per_s >= 10_000.0 {
        format!("{:.1}k/s", per_s / 1000.0)
    } else {
        format!("{}/s", thousands(per_s.round() as u64))
    }
}

/// "batched/1000 = 25.6× batched/1", when both are there.
pub fn batch_gain(points: &[BenchPoint]) -> Option<String> {
    let batched: Vec<&BenchPoint> = points
        .iter()
        .filter(|p| p.function == "batched" && p.value.parse::<f64>().is_ok())
        .collect();
    let (first, last) = (batched.first()?, batched.last()?);
    (batched.len() > 1).then(|| {
        format!(
            "batch {} = {:.1}× batch {}",
            last.value,
            last.per_s / first.per_s,
            first.value
        )
    })
}

/// Throughput against batch size (log scale), one line per function id, with the
/// confidence intervals as error bars.
pub fn render_reconciler(points: &[BenchPoint], titles: &Titles) -> Result<String> {
    let numeric: Vec<(f64, &BenchPoint)> = points
        .iter()
        .filter_map(|p| {
            p.value
                .parse::<f64>()
                .ok()
                .filter(|v| *v > 0.0)
                .map(|v| (v.log10(), p))
        })
        .collect();
    if numeric.is_empty() {
        bail!("no benchmark with a numeric batch size to plot");
    }
    let x_lo = numeric.iter().map(|p| p.0).fold(f64::MAX, f64::min).floor() - 0.3;
    let x_hi = numeric.iter().map(|p| p.0).fold(f64::MIN, f64::max).ceil() + 0.3;
    let y_max = numeric
        .iter()
        .map(|p| p.1.per_s_high.max(p.1.per_s))
        .fold(0.0, f64::max)
        * 1.15;
    let keys: Vec<f64> = ((x_lo.ceil() as i32)..=(x_hi.floor() as i32))
        .map(f64::from)
        .collect();
    let mut functions: Vec<&str> = numeric.iter().map(|p| p.1.function.as_str()).collect();
    functions.dedup();

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let body = header(&root, titles)?;
        let mut chart = frame(&body, 90)
            .build_cartesian_2d(Ticked::new(x_lo..x_hi, keys), 0f64..y_max.max(1.0))?;
        house_style(
            chart
                .configure_mesh()
                .x_desc("batch size: outbox entries per read and per transaction (log scale)")
                .y_desc("confirmed claims per second")
                .x_label_formatter(&|x| format!("{}", 10f64.powf(*x).round()))
                .y_label_formatter(&|y| thousands(y.round() as u64)),
            16,
        )
        .draw()?;
        let value_style =
            TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Bottom));
        for (i, function) in functions.iter().enumerate() {
            let c = color(i);
            let pts: Vec<(f64, &BenchPoint)> = numeric
                .iter()
                .filter(|p| p.1.function == *function)
                .copied()
                .collect();
            let line: Vec<(f64, f64)> = pts.iter().map(|(x, p)| (*x, p.per_s)).collect();
            let label = reconciler_label(function);
            if line.len() > 1 {
                chart
                    .draw_series(LineSeries::new(line.clone(), c.stroke_width(2)))?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3))
                    });
                chart.draw_series(line.iter().map(|&p| Circle::new(p, 5, c.filled())))?;
            } else {
                chart
                    .draw_series(line.iter().map(|&p| TriangleMarker::new(p, 8, c.filled())))?
                    .label(label)
                    .legend(move |(x, y)| TriangleMarker::new((x + 12, y), 7, c.filled()));
            }
            for (x, p) in &pts {
                let (x, lo, hi) = (*x, p.per_s_low, p.per_s_high);
                let cap = 0.03;
                chart.draw_series(
                    [
                        vec![(x, lo), (x, hi)],
                        vec![(x - cap, lo), (x + cap, lo)],
                        vec![(x - cap, hi), (x + cap, hi)],
                    ]
                    .into_iter()
                    .map(|path| PathElement::new(path, c.stroke_width(1))),
                )?;
                chart.draw_series(std::iter::once(
                    EmptyElement::at((x, p.per_s))
                        + Text::new(rate_label(p.per_s), (8, -6), value_style.clone()),
                ))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::report::{histogram, DropReport, Mode, RunConfig};
    use crate::loadgen::Comparison;
    use std::time::Duration;

    /// Checks the SVG is one `<svg>` element whose tags all nest and close.
    fn assert_well_formed(svg: &str) {
        let svg = svg.trim();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(
            svg.ends_with("</svg>"),
            "{}",
            &svg[svg.len().saturating_sub(200)..]
        );
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("an unclosed tag") + start;
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap());
            }
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }

    /// The contents of the SVG's `<text>` elements, trimmed.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = &t[t.find('>')? + 1..t.find("</text>")?];
                Some(body.trim().to_owned())
            })
            .collect()
    }

    fn titles() -> Titles {
        Titles {
            title: "A test title".into(),
            note: "2026-11-26, 2 cores".into(),
        }
    }

    fn report(strategy: &str, mode: Mode, micros: &[u64], secs: u64) -> DropReport {
        let mut r = DropReport::new(RunConfig {
            target: "in-process".into(),
            strategy: Some(strategy.into()),
            mode,
            seats: 10,
            claims_per_seat: 20,
            users: 200,
            claims: 200,
            duration: None,
            quantity_mix: None,
            per_user_limit: 4,
            seed: 1,
            event_id: "drop-test".into(),
        });
        for (i, us) in micros.iter().cycle().take(200).enumerate() {
            r.latency.record(us + i as u64).unwrap();
            if let Some(s) = &mut r.service {
                s.record(us / 2 + 1).unwrap();
            }
        }
        r.sent = 200;
        r.drop_time = Duration::from_secs(secs);
        r
    }

    fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, v.to_string()).unwrap();
        path
    }

    #[test]
    fn a_latency_plot_of_two_reports_is_a_well_formed_svg() {
        let dir = tempfile::tempdir().unwrap();
        let closed = report(
            "redis",
            Mode::Closed { concurrency: 50 },
            &[900, 1500, 30_000],
            1,
        );
        let open = report(
            "redis",
            Mode::Open {
                rate: 5000.0,
                max_outstanding: 500,
                max_lateness: Duration::from_secs(1),
            },
            &[400, 800, 7_000],
            1,
        );
        let a = write(dir.path(), "closed.json", &closed.to_json());
        let b = write(dir.path(), "open.json", &open.to_json());
        let mut series = latency_series(&a, Some("closed loop"), true).unwrap();
        series.extend(latency_series(&b, None, true).unwrap());
        assert_eq!(series.len(), 3, "closed, open, open's service time");
        assert!(series[0].label.starts_with("closed loop, latency: p99 "));
        assert!(series[1]
            .label
            .starts_with("redis, open loop at 5,000/s, latency (from intended send)"));
        assert!(series[2]
            .label
            .starts_with("redis, open loop at 5,000/s, service time"));
        let svg = render_latency(&series, &titles(), false).unwrap();
        assert_well_formed(&svg);
        for s in &series {
            assert!(texts(&svg).contains(&s.label), "{} missing", s.label);
        }
        for text in [
            "A test title",
            "2026-11-26, 2 cores",
            "latency (ms)",
            "percentile (log scale",
            "50%",
            "90%",
            "99%",
            "99.9%",
        ] {
            assert!(
                texts(&svg).iter().any(|t| t.contains(text)),
                "{text} missing"
            );
        }
        let log = render_latency(&series, &titles(), true).unwrap();
        assert_well_formed(&log);
        for text in ["latency (ms, log scale)", "0.5", "1", "10", "99.9%"] {
            assert!(texts(&log).iter().any(|t| t == text), "{text} missing");
        }
        // Without --service-time the open loop gives one line.
        assert_eq!(latency_series(&b, None, false).unwrap().len(), 1);
    }

    #[test]
    fn latency_ticks_read_plainly() {
        assert_eq!(ms_label(0.0), "0");
        assert_eq!(ms_label(0.05), "0.05");
        assert_eq!(ms_label(0.5), "0.5");
        assert_eq!(ms_label(2.0), "2");
        assert_eq!(ms_label(2.5), "2.5");
        assert_eq!(ms_label(150.0), "150");
        let axis = LatencyAxis::log(0.3, 250.0);
        assert_eq!(axis.ticks.first(), Some(&0.1));
        assert_eq!(axis.ticks.last(), Some(&200.0));
    }

    #[test]
    fn percentiles_map_to_evenly_spaced_ticks() {
        assert_eq!(percentile_x(0.0), 0.0);
        assert!((percentile_x(90.0) - 1.0).abs() < 1e-9);
        assert!((percentile_x(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(2f64.log10()), "50%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(4.0), "99.99%");
    }

    #[test]
    fn a_comparison_plots_as_bars_and_a_latency_pair() {
        let dir = tempfile::tempdir().unwrap();
        let ours = report("redis", Mode::Closed { concurrency: 50 }, &[900], 1);
        let mut baseline = report("mysql", Mode::Closed { concurrency: 50 }, &[9_000], 8);
        baseline.latency = histogram();
        baseline.latency.record(40_000).unwrap();
        let cmp = Comparison {
            ours: &ours,
            baseline: &baseline,
        };
        let path = write(dir.path(), "compare.json", &cmp.to_json());
        let data = load_compare(&path).unwrap();
        assert_eq!(data.runs.len(), 2);
        assert!((data.throughput_ratio - 8.0).abs() < 1e-9);
        assert_eq!(
            data.workload,
            "10 seats × 20 claims each, closed loop, 50 in flight"
        );
        let title = throughput_title(&data);
        assert_eq!(title, "Throughput by claim strategy: redis 8.0× mysql");
        let svg = render_throughput(
            &data,
            &Titles {
                title: title.clone(),
                note: data.workload.clone(),
            },
        )
        .unwrap();
        assert_well_formed(&svg);
        for text in [
            title.as_str(),
            "redis",
            "mysql",
            "200 claims/s",
            "25 claims/s",
            "claims answered per second",
            "claim strategy",
        ] {
            assert!(
                texts(&svg).iter().any(|t| t.contains(text)),
                "{text} missing"
            );
        }
        // The same file plots as two latency lines, and a single run is not a comparison.
        assert_eq!(latency_series(&path, None, true).unwrap().len(), 2);
        let single = write(dir.path(), "single.json", &ours.to_json());
        let err = load_compare(&single).unwrap_err().to_string();
        assert!(
            err.contains("single.json") && err.contains("not a comparison"),
            "{err}"
        );
    }

    fn criterion_result(root: &Path, function: &str, value: u32, ns: f64) {
        let dir = root
            .join("reconciler")
            .join(function)
            .join(value.to_string())
            .join("new");
        std::fs::create_dir_all(&dir).unwrap();
        let id = serde_json::json!({
            "group_id": "reconciler", "function_id": function, "value_str": value.to_string(),
            "throughput": {"Elements": 1}, "full_id": format!("reconciler/{function}/{value}"),
            "directory_name": format!("reconciler/{function}/{value}"),
            "title": format!("reconciler/{function}/{value}"),
        });
        let est = |v: f64| {
            serde_json::json!({
                "confidence_interval": {"confidence_level": 0.95, "lower_bound": v * 0.9, "upper_bound": v * 1.1},
                "point_estimate": v, "standard_error": v * 0.05,
            })
        };
        let estimates = serde_json::json!({
            "mean": est(ns), "median": est(ns), "median_abs_dev": est(ns / 10.0),
            "slope": Value::Null, "std_dev": est(ns / 10.0),
        });
        std::fs::write(dir.join("benchmark.json"), id.to_string()).unwrap();
        std::fs::write(dir.join("estimates.json"), estimates.to_string()).unwrap();
        // criterion's previous run, which must be ignored.
        let base = dir.with_file_name("base");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("benchmark.json"), id.to_string()).unwrap();
    }

    #[test]
    fn criterion_results_plot_as_throughput_by_batch_size() {
        let dir = tempfile::tempdir().unwrap();
        for (batch, ns) in [
            (1, 2_000_000.0),
            (10, 300_000.0),
            (100, 100_000.0),
            (1000, 70_000.0),
        ] {
            criterion_result(dir.path(), "batched", batch, ns);
        }
        criterion_result(dir.path(), "per_claim", 100, 500_000.0);
        let points = load_criterion_group(dir.path(), "reconciler").unwrap();
        assert_eq!(points.len(), 5);
        assert_eq!(
            points
                .iter()
                .map(|p| format!("{}/{}", p.function, p.value))
                .collect::<Vec<_>>(),
            [
                "batched/1",
                "batched/10",
                "batched/100",
                "batched/1000",
                "per_claim/100"
            ]
        );
        assert!((points[0].per_s - 500.0).abs() < 1e-6);
        assert!(points[0].per_s_low < 500.0 && points[0].per_s_high > 500.0);
        assert_eq!(batch_gain(&points).unwrap(), "batch 1000 = 28.6× batch 1");
        let svg = render_reconciler(&points, &titles()).unwrap();
        assert_well_formed(&svg);
        for text in [
            "batched: one MySQL transaction per batch",
            "unbatched: one transaction per claim",
            "confirmed claims per second",
            "batch size",
            "500/s",
            "14.3k/s",
            "1000",
        ] {
            assert!(
                texts(&svg).iter().any(|t| t.contains(text)),
                "{text} missing"
            );
        }
    }

    #[test]
    fn bad_input_gives_errors_that_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{ not json").unwrap();
        let err = format!("{:#}", latency_series(&bad, None, true).unwrap_err());
        assert!(
            err.contains("bad.json") && err.contains("not valid JSON"),
            "{err}"
        );
        let err = format!("{:#}", load_compare(&bad).unwrap_err());
        assert!(err.contains("bad.json"), "{err}");

        let missing = dir.path().join("missing.json");
        let err = format!("{:#}", latency_series(&missing, None, true).unwrap_err());
        assert!(
            err.contains("missing.json") && err.contains("cannot read"),
            "{err}"
        );

        let other = write(
            dir.path(),
            "other.json",
            &serde_json::json!({"schema": "x"}),
        );
        let err = latency_series(&other, None, true).unwrap_err().to_string();
        assert!(
            err.contains("other.json") && err.contains("not a drop report"),
            "{err}"
        );

        let mut old = report("redis", Mode::Closed { concurrency: 5 }, &[100], 1).to_json();
        old["latency_us"]
            .as_object_mut()
            .unwrap()
            .remove("distribution");
        let old = write(dir.path(), "old.json", &old);
        let err = latency_series(&old, None, true).unwrap_err().to_string();
        assert!(
            err.contains("old.json") && err.contains("no \"distribution\""),
            "{err}"
        );

        let err = load_criterion_group(dir.path(), "reconciler")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cargo bench --bench reconciler"), "{err}");
        let empty = render_latency(&[], &titles(), false)
            .unwrap_err()
            .to_string();
        assert!(empty.contains("no latency series"), "{empty}");
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(date_utc(0), "1970-01-01");
        assert_eq!(date_utc(20_418 * 86_400), "2025-11-26");
        assert_eq!(date_utc(20_783 * 86_400 + 86_399), "2026-11-26");
        assert_eq!(today_utc().len(), 10);
    }
}
