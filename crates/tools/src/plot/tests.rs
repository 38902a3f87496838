//! The plots drawn from reports the load generator writes and from criterion files
//! laid out as criterion lays them out.

use super::latency::*;
use super::reconciler::*;
use super::throughput::*;
use super::*;
use crate::loadgen::report::{histogram, DropReport, Mode, RunConfig};
use crate::loadgen::Comparison;
use std::path::PathBuf;
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
