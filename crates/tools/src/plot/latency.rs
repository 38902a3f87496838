//! The HDR percentile plot: latency in ms against the percentile, from drop reports.

use anyhow::{bail, Context, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use seatgate::cli::thousands;
use serde_json::Value;
use std::path::Path;

use super::{color, frame, header, house_style, read_json, Ticked, Titles, FONT, SIZE};
use crate::loadgen::report::millis;
use crate::schema::{self, COMPARE_SCHEMA, SCHEMA};

/// One line of the latency plot.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySeries {
    pub label: String,
    /// `(percentile in 0..=100, latency in ms)`, percentile ascending.
    pub points: Vec<(f64, f64)>,
}

/// The runs of a drop report: the report itself, or both runs of a comparison.
pub(super) fn runs(doc: Value, path: &Path) -> Result<Vec<schema::DropRun>> {
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
pub(super) fn parse<T: serde::de::DeserializeOwned>(
    doc: Value,
    schema: &str,
    path: &Path,
) -> Result<T> {
    serde_json::from_value(doc)
        .with_context(|| format!("{}: not a well-formed {schema} report", path.display()))
}

/// "redis, closed loop, 500 in flight" / "redis, open loop at 5,000/s".
pub(super) fn run_label(run: &schema::DropRun) -> String {
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
pub(super) fn distribution(
    h: &schema::Latency,
    what: &str,
    path: &Path,
) -> Result<Vec<(f64, f64)>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
