//! `seatgate-tools plot`: SVG plots of the benchmarks (see [`crate::plot`]).
//!
//! ```sh
//! seatgate-tools plot latency closed.json open.json --label "closed loop" --label "open loop" -o latency.svg
//! seatgate-tools plot compare compare.json -o throughput.svg
//! seatgate-tools plot reconciler --criterion-dir target/criterion -o reconciler.svg
//! ```

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

use crate::plot::{self, Titles};

#[derive(Debug, Args)]
pub struct PlotArgs {
    #[command(subcommand)]
    pub what: PlotCommand,
}

#[derive(Debug, Subcommand)]
pub enum PlotCommand {
    /// Latency by percentile (HDR plot) of one or more `seatgate-tools drop --json` reports,
    /// overlaid (a --compare report gives both of its runs).
    Latency(LatencyArgs),
    /// Throughput by claim strategy from a `seatgate-tools drop --compare --json` report.
    Compare(CompareArgs),
    /// Reconciler throughput by batch size from criterion's results of
    /// `cargo bench --bench reconciler`.
    Reconciler(ReconcilerArgs),
}

/// What every plot takes.
#[derive(Debug, Args)]
pub struct Output {
    /// Write the SVG here.
    #[arg(short, long, value_name = "SVG")]
    pub output: PathBuf,
    /// The plot's title (default: says what is plotted).
    #[arg(long)]
    pub title: Option<String>,
    /// The date and machine under the title (default: today's date and the number of
    /// cores); `compare` and `reconciler` put what was measured before it.
    #[arg(long)]
    pub note: Option<String>,
}

impl Output {
    fn titles(&self, title: String) -> Titles {
        Titles {
            title: self.title.clone().unwrap_or(title),
            note: self.note.clone().unwrap_or_else(plot::default_note),
        }
    }

    fn write(&self, svg: &str) -> Result<()> {
        plot::write_svg(&self.output, svg)?;
        println!("wrote {}", self.output.display());
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// Drop reports (`seatgate-tools drop --json`, with or without --compare).
    #[arg(required = true, value_name = "REPORT.json")]
    pub reports: Vec<PathBuf>,
    /// Legend label of each report, in order (default: strategy and pacing).
    #[arg(long)]
    pub label: Vec<String>,
    /// Leave out the open-loop service time (from the actual send) lines.
    #[arg(long)]
    pub no_service_time: bool,
    /// Latency on a log scale (for runs that differ by orders of magnitude).
    #[arg(long)]
    pub log_y: bool,
    #[command(flatten)]
    pub out: Output,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A `seatgate-tools drop --compare --json` report.
    #[arg(value_name = "COMPARE.json")]
    pub report: PathBuf,
    #[command(flatten)]
    pub out: Output,
}

#[derive(Debug, Args)]
pub struct ReconcilerArgs {
    /// Criterion's output folder.
    #[arg(long, default_value = "target/criterion")]
    pub criterion_dir: PathBuf,
    /// The bench group.
    #[arg(long, default_value = "reconciler")]
    pub group: String,
    #[command(flatten)]
    pub out: Output,
}

pub fn run(args: PlotArgs) -> Result<()> {
    match args.what {
        PlotCommand::Latency(a) => {
            if a.label.len() > a.reports.len() {
                bail!(
                    "{} --label for {} reports: give at most one per report",
                    a.label.len(),
                    a.reports.len()
                );
            }
            let mut series = Vec::new();
            for (i, path) in a.reports.iter().enumerate() {
                let label = a.label.get(i).map(String::as_str);
                series.extend(plot::latency_series(path, label, !a.no_service_time)?);
            }
            for s in &series {
                println!("{}", s.label);
            }
            let titles = a.out.titles("Claim latency by percentile".to_owned());
            a.out
                .write(&plot::render_latency(&series, &titles, a.log_y)?)
        }
        PlotCommand::Compare(a) => {
            let data = plot::load_compare(&a.report)?;
            for run in &data.runs {
                println!(
                    "{}: {:.0} claims/s, p99 {}",
                    run.strategy,
                    run.throughput_per_s,
                    run.p99_ms
                        .map_or("?".to_owned(), |ms| format!("{ms:.1} ms"))
                );
            }
            println!(
                "{} / {}: throughput {:.2}×, p99 {}",
                data.ours,
                data.baseline,
                data.throughput_ratio,
                data.p99_ratio
                    .map_or("?".to_owned(), |r| format!("{r:.2}×"))
            );
            let mut titles = a.out.titles(plot::throughput_title(&data));
            titles.note = format!("{}; {}", data.workload, titles.note);
            a.out.write(&plot::render_throughput(&data, &titles)?)
        }
        PlotCommand::Reconciler(a) => {
            let points = plot::load_criterion_group(&a.criterion_dir, &a.group)?;
            let mut title = "Reconciler: confirmed claims/s into MySQL by batch size".to_owned();
            if let Some(gain) = plot::batch_gain(&points) {
                title = format!("{title} ({gain})");
            }
            for p in &points {
                println!(
                    "{}/{}: {:.0} claims/s (95 % CI {:.0} to {:.0})",
                    p.function, p.value, p.per_s, p.per_s_low, p.per_s_high
                );
            }
            if let Some(gain) = plot::batch_gain(&points) {
                println!("{gain}");
            }
            let mut titles = a.out.titles(title);
            titles.note = format!("criterion, bars: 95 % confidence; {}", titles.note);
            a.out.write(&plot::render_reconciler(&points, &titles)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn plot_args(args: &[&str]) -> PlotArgs {
        let argv = ["seatgate", "plot"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Plot(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn a_missing_report_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.svg");
        let out = out.to_str().unwrap();
        let err = run(plot_args(&["latency", "/nonexistent/r.json", "-o", out])).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/r.json"),
            "{err:#}"
        );
        let err = run(plot_args(&["compare", "/nonexistent/c.json", "-o", out])).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/c.json"),
            "{err:#}"
        );
        let missing = dir.path().join("criterion");
        let err = run(plot_args(&[
            "reconciler",
            "--criterion-dir",
            missing.to_str().unwrap(),
            "-o",
            out,
        ]))
        .unwrap_err();
        assert!(format!("{err:#}").contains("cargo bench"), "{err:#}");
        assert!(!std::path::Path::new(out).exists());
    }

    #[test]
    fn more_labels_than_reports_is_an_error() {
        let err = run(plot_args(&[
            "latency", "a.json", "--label", "a", "--label", "b", "-o", "x.svg",
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("at most one per report"), "{err}");
    }
}
