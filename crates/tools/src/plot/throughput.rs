//! Claims answered per second by claim strategy, from a `drop --compare --json` report.

use anyhow::{bail, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use seatgate::cli::thousands;
use std::path::Path;

use super::latency::{parse, run_label};
use super::{color, frame, header, house_style, read_json, Ticked, Titles, FONT, SIZE};
use crate::loadgen::report::millis;
use crate::schema::{self, COMPARE_SCHEMA};

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
