//! Confirmed claims per second by batch size, from criterion's results of the
//! `reconciler` bench group.

use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use seatgate::cli::thousands;
use serde_json::Value;
use std::path::{Path, PathBuf};

use super::{color, frame, header, house_style, read_json, Ticked, Titles, FONT, SIZE};

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
