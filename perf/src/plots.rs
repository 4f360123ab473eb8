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

use keel_benches::peers::report::PeersReport;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::e2e::{Report as E2eReport, RunRecord};
use crate::engine::EngineReport;
use crate::suite::markdown::{Inputs, Results};

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
pub fn draw_all(inputs: &Inputs, dir: &Path) -> anyhow::Result<Drawn> {
    let results = &inputs.results;
    let mut drawn = Vec::new();
    e2e_latency(results, dir, &mut drawn)?;
    if let Some(engine) = &results.engine {
        engine_plots(engine, dir, &mut drawn)?;
    }
    if let Some(peers) = &results.peers {
        peers_throughput(peers, dir, &mut drawn)?;
    }
    Ok(drawn)
}

/// Drawn plots: `(title, path)`.
type Drawn = Vec<(String, PathBuf)>;

/// `e2e-latency.svg`: the median run of every end-to-end configuration measured.
fn e2e_latency(results: &Results, dir: &Path, drawn: &mut Drawn) -> anyhow::Result<()> {
    let mut e2e: Vec<Series> = Vec::new();
    for (report, name) in [
        (&results.e2e_async, "single node, async"),
        (&results.e2e_fsync, "single node, fsync"),
    ] {
        if let Some(points) = report.as_ref().and_then(median_run_distribution) {
            e2e.push((name.to_string(), points));
        }
    }
    if let Some(comparison) = &results.cluster {
        for (report, name) in [
            (
                &comparison.single,
                "single node, async (cluster comparison)",
            ),
            (&comparison.cluster, "3-node cluster leader, async"),
        ] {
            if let Some(points) = median_run_distribution(report) {
                e2e.push((name.to_string(), points));
            }
        }
    }
    let title = "Order → Accepted latency, end to end (µs)";
    let path = dir.join("e2e-latency.svg");
    if percentile_plot(&path, title, "µs", &e2e)? {
        drawn.push((title.to_string(), path));
    }
    Ok(())
}

/// `engine-latency.svg` and `engine-throughput.svg`: one line or bar per workload.
fn engine_plots(engine: &EngineReport, dir: &Path, drawn: &mut Drawn) -> anyhow::Result<()> {
    let series: Vec<Series> = engine
        .workloads
        .iter()
        .map(|w| (w.name.clone(), w.latency.distribution.clone()))
        .collect();
    let title = "Engine latency per command (ns)";
    let path = dir.join("engine-latency.svg");
    if percentile_plot(&path, title, "ns", &series)? {
        drawn.push((title.to_string(), path));
    }
    let bars: Vec<Bar> = engine
        .workloads
        .iter()
        .filter_map(|w| {
            bar(
                &w.name,
                w.commands_per_s.median,
                w.commands_per_s.min,
                w.commands_per_s.max,
            )
        })
        .collect();
    let title = "Engine throughput per workload (commands/s)";
    let path = dir.join("engine-throughput.svg");
    if bar_chart(&path, title, &bars)? {
        drawn.push((title.to_string(), path));
    }
    Ok(())
}

/// `peers-throughput.svg`: one bar per engine.
fn peers_throughput(peers: &PeersReport, dir: &Path, drawn: &mut Drawn) -> anyhow::Result<()> {
    let bars: Vec<Bar> = peers
        .engines
        .iter()
        .filter_map(|e| {
            bar(
                &e.name,
                e.commands_per_s.median,
                e.commands_per_s.min,
                e.commands_per_s.max,
            )
        })
        .collect();
    let title = "Exchange-core mix: Keel and its peers (commands/s)";
    let path = dir.join("peers-throughput.svg");
    if bar_chart(&path, title, &bars)? {
        drawn.push((title.to_string(), path));
    }
    Ok(())
}

/// The accepted-latency distribution of the complete run (no session errors) with the
/// median p99.
fn median_run_distribution(report: &E2eReport) -> Option<Vec<(f64, f64)>> {
    let mut runs: Vec<&RunRecord> = report
        .runs
        .iter()
        .filter(|r| r.result.session_errors.is_empty())
        .collect();
    runs.sort_by(|a, b| {
        a.result
            .accepted
            .p99_us
            .total_cmp(&b.result.accepted.p99_us)
    });
    let distribution = runs
        .get(runs.len() / 2)?
        .result
        .accepted
        .distribution
        .clone();
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

/// A bar of a median, min and max; none when one of them was not measured (`null` in
/// the result file, read back as NaN).
fn bar(name: &str, median: f64, min: f64, max: f64) -> Option<Bar> {
    [median, min, max]
        .iter()
        .all(|v| !v.is_nan())
        .then(|| (name.to_string(), median, min, max))
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
