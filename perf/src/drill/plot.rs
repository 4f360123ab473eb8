//! The drill's timeline (SVG, as the report's other plots): acknowledged orders per second
//! above, p99 order → Accepted latency per second below (log scale), every fault as a band
//! from its start to its heal, coloured by kind.

use std::path::Path;

use plotters::prelude::*;

use super::nemesis::{Kind, KINDS};
use super::output::DrillReport;

/// Band colours by kind, in [`KINDS`] order (one per kind: a new kind needs a colour).
const KIND_COLORS: [RGBColor; KINDS.len()] = [
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(44, 160, 44),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(227, 119, 194),
];

fn kind_color(kind: Kind) -> RGBColor {
    let index = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
    KIND_COLORS[index]
}

/// Draws the timeline into `path`; false (nothing written) when there is no second to draw.
pub fn timeline(path: &Path, report: &DrillReport) -> anyhow::Result<bool> {
    if report.timeline.is_empty() {
        return Ok(false);
    }
    let x_max = (report.timeline.len() as f64)
        .max(report.duration_ms / 1e3)
        .max(1.0);
    let root = SVGBackend::new(path, (1200, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "keel-perf drill, seed {}: acknowledged orders and p99 latency per second; faults as bands (start → heal)",
            report.seed
        ),
        ("sans-serif", 18),
    )?;
    let (top, bottom) = root.split_vertically(300);
    let accepted_max = report
        .timeline
        .iter()
        .map(|s| s.accepted)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut chart = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..accepted_max as f64 * 1.2)?;
    chart
        .configure_mesh()
        .y_desc("accepted orders / s")
        .x_desc("s")
        .draw()?;
    let y_top = accepted_max as f64 * 1.2;
    draw_bands(&mut chart, report, 0.0, y_top)?;
    chart
        .draw_series(LineSeries::new(
            report
                .timeline
                .iter()
                .map(|s| (s.second as f64 + 0.5, s.accepted as f64)),
            RGBColor(31, 119, 180).stroke_width(2),
        ))?
        .label("accepted / s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(31, 119, 180)));
    for kind in KINDS {
        if report.faults.iter().any(|f| f.fault.kind == kind) {
            let color = kind_color(kind);
            chart
                .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())?
                .label(kind.name())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 20, y + 5)], color.mix(0.4).filled())
                });
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    latency_chart(&bottom, report, x_max)?;
    root.present()?;
    Ok(true)
}

fn latency_chart(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    report: &DrillReport,
    x_max: f64,
) -> anyhow::Result<()> {
    let points: Vec<(f64, f64)> = report
        .timeline
        .iter()
        .filter(|s| s.latency_ms_p99.is_finite() && s.latency_ms_p99 > 0.0)
        .map(|s| (s.second as f64 + 0.5, s.latency_ms_p99))
        .collect();
    let y_max = points.iter().map(|p| p.1).fold(1.0, f64::max) * 2.0;
    let y_min = points
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .min(1.0)
        * 0.5;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .y_desc("p99 order → Accepted (ms)")
        .x_desc("s after the clients started")
        .draw()?;
    draw_bands(&mut chart, report, y_min, y_max)?;
    chart.draw_series(LineSeries::new(
        points,
        RGBColor(31, 119, 180).stroke_width(2),
    ))?;
    Ok(())
}

fn draw_bands<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    report: &DrillReport,
    y_low: f64,
    y_high: f64,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .draw_series(report.faults.iter().map(|f| {
            let end = f.heal_ms.max(f.start_ms + 50.0);
            Rectangle::new(
                [(f.start_ms / 1e3, y_low), (end / 1e3, y_high)],
                kind_color(f.fault.kind).mix(0.3).filled(),
            )
        }))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
