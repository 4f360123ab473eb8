//! The report's plots, as SVG (plotters' SVG backend: text is left to the viewer's fonts,
//! so nothing here needs a font or a system library).
//!
//! - `e2e-latency.svg`: HdrHistogram-style percentile plot of order → Accepted for every
//!   end-to-end configuration measured (the run with the median p99 of each): x is the
//!   percentile on a log scale of 1/(1−p) (50%, 90%, 99%, 99.9%, …), y the latency (log).
//! - `engine-latency.svg`: the same for per-command engine latency, one line per workload.
//! - `engine-throughput.svg`, `peers-throughput.svg`: bars of the median commands/s with
//!   the min–max of the runs as a whisker.

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

use crate::suite::markdown::{num, Inputs};

/// One line of a percentile plot: its name and `(percentile 0–100, value)` points.
type Series = (String, Vec<(f64, f64)>);

/// Line colours, in series order.
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Draws every plot the inputs allow into `dir`; returns `(title, path)` of each drawn.
pub fn draw_all(inputs: &Inputs, dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut drawn = Vec::new();

    let mut e2e: Vec<Series> = Vec::new();
    for (step, name) in [
        ("e2e-async", "single node, async"),
        ("e2e-fsync", "single node, fsync"),
    ] {
        if let Some(points) = inputs.data.get(step).and_then(median_run_distribution) {
            e2e.push((name.to_string(), points));
        }
    }
    if let Some(comparison) = inputs.data.get("cluster") {
        for (key, name) in [
            ("single", "single node, async (cluster comparison)"),
            ("cluster", "3-node cluster leader, async"),
        ] {
            if let Some(points) = comparison.get(key).and_then(median_run_distribution) {
                e2e.push((name.to_string(), points));
            }
        }
    }
    let title = "Order → Accepted latency, end to end (µs)";
    let path = dir.join("e2e-latency.svg");
    if percentile_plot(&path, title, "µs", &e2e)? {
        drawn.push((title.to_string(), path));
    }

    if let Some(engine) = inputs.data.get("engine") {
        let empty = Vec::new();
        let workloads = engine
            .get("workloads")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        let series: Vec<Series> = workloads
            .iter()
            .filter_map(|w| {
                let name = w.get("name")?.as_str()?.to_string();
                Some((name, points(w.get("latency")?.get("distribution")?)))
            })
            .collect();
        let title = "Engine latency per command (ns)";
        let path = dir.join("engine-latency.svg");
        if percentile_plot(&path, title, "ns", &series)? {
            drawn.push((title.to_string(), path));
        }
        let bars: Vec<Bar> = workloads
            .iter()
            .filter_map(|w| bar(w, "name", "commands_per_s"))
            .collect();
        let title = "Engine throughput per workload (commands/s)";
        let path = dir.join("engine-throughput.svg");
        if bar_chart(&path, title, &bars)? {
            drawn.push((title.to_string(), path));
        }
    }

    if let Some(peers) = inputs.data.get("peers") {
        let empty = Vec::new();
        let bars: Vec<Bar> = peers
            .get("engines")
            .and_then(Value::as_array)
            .unwrap_or(&empty)
            .iter()
            .filter_map(|e| bar(e, "name", "commands_per_s"))
            .collect();
        let title = "Exchange-core mix: Keel and its peers (commands/s)";
        let path = dir.join("peers-throughput.svg");
        if bar_chart(&path, title, &bars)? {
            drawn.push((title.to_string(), path));
        }
    }
    Ok(drawn)
}

/// `[[p, v], ...]` as points.
fn points(value: &Value) -> Vec<(f64, f64)> {
    value
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|pair| Some((pair.get(0)?.as_f64()?, pair.get(1)?.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The accepted-latency distribution of the complete run with the median p99.
fn median_run_distribution(report: &Value) -> Option<Vec<(f64, f64)>> {
    let mut runs: Vec<&Value> = report
        .get("runs")?
        .as_array()?
        .iter()
        .filter(|r| {
            r.get("result")
                .and_then(|x| x.get("session_errors"))
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
        })
        .collect();
    runs.sort_by(|a, b| {
        let p99 = |r: &Value| num(r, &["result", "accepted", "p99_us"]).unwrap_or(f64::NAN);
        p99(a).total_cmp(&p99(b))
    });
    let run = runs.get(runs.len() / 2)?;
    let distribution = points(run.get("result")?.get("accepted")?.get("distribution")?);
    (!distribution.is_empty()).then_some(distribution)
}

/// The percentile label of `x` = log10(1/(1−p)).
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.round() as i32 - 2).max(0) as usize;
    format!("{p:.decimals$}%")
}

/// Draws a percentile plot; false (nothing written) if there is nothing to draw.
fn percentile_plot(
    path: &Path,
    title: &str,
    unit: &str,
    series: &[Series],
) -> anyhow::Result<bool> {
    let lines: Vec<Series> = series
        .iter()
        .map(|(name, data)| {
            let transformed = data
                .iter()
                .filter(|(p, v)| *p < 100.0 && *p >= 0.0 && *v > 0.0)
                .map(|(p, v)| ((1.0 / (1.0 - p / 100.0)).log10(), *v))
                .collect::<Vec<_>>();
            (name.clone(), transformed)
        })
        .filter(|(_, data)| data.len() >= 2)
        .collect();
    if lines.is_empty() {
        return Ok(false);
    }
    let all = lines.iter().flat_map(|(_, d)| d.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, 0.0f64);
    for &(x, y) in all {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    let x_max = x_max.ceil().clamp(2.0, 7.0);
    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .margin_right(40)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, (y_min * 0.8..y_max * 1.25).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| format_value(*y))
        .x_desc("percentile")
        .y_desc(format!("latency ({unit})"))
        .draw()?;
    for (i, (name, data)) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(true)
}

/// A bar: name, median, min, max.
type Bar = (String, f64, f64, f64);

fn bar(value: &Value, name: &str, spread: &str) -> Option<Bar> {
    Some((
        value.get(name)?.as_str()?.to_string(),
        num(value, &[spread, "median"])?,
        num(value, &[spread, "min"])?,
        num(value, &[spread, "max"])?,
    ))
}

fn format_value(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.0}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.0}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

/// A bar's value label: three significant figures.
fn format_bar(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.0}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

/// Draws a bar chart with min–max whiskers; false if there is nothing to draw.
fn bar_chart(path: &Path, title: &str, bars: &[Bar]) -> anyhow::Result<bool> {
    let bars: Vec<&Bar> = bars
        .iter()
        .filter(|b| b.1.is_finite() && b.2.is_finite() && b.3.is_finite())
        .collect();
    if bars.is_empty() {
        return Ok(false);
    }
    let y_max = bars.iter().map(|b| b.3.max(b.1)).fold(0.0, f64::max) * 1.15;
    let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let root = SVGBackend::new(path, (960, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (0..bars.len().saturating_sub(1)).into_segmented(),
            0f64..y_max.max(1.0),
        )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                names.get(*i).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .y_label_formatter(&|y| format_value(*y))
        .y_desc("commands/s (median; whisker: min–max of the runs)")
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let color = COLORS[i % COLORS.len()];
        let mut rect = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), b.1),
            ],
            color.mix(0.75).filled(),
        );
        rect.set_margin(0, 0, 24, 24);
        rect
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        PathElement::new(
            vec![
                (SegmentValue::CenterOf(i), b.2),
                (SegmentValue::CenterOf(i), b.3),
            ],
            BLACK.stroke_width(2),
        )
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        Text::new(
            format_bar(b.1),
            (SegmentValue::CenterOf(i), b.3.max(b.1) * 1.02),
            TextStyle::from(("sans-serif", 15).into_font())
                .pos(Pos::new(HPos::Center, VPos::Bottom)),
        )
    }))?;
    root.present()?;
    Ok(true)
}
