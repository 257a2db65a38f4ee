//! Usage charts for the dashboard, drawn as SVG with plotters (text stays `<text>` elements,
//! so no font files are needed on the server).

use chrono::{DateTime, Utc};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::history::{total_by_period, HistoryPoint};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 340;
const LEGEND_HEIGHT: u32 = 30;
const FONT: &str = "sans-serif";

const USE_COLOUR: RGBColor = RGBColor(31, 119, 180);
const LICENSED_COLOUR: RGBColor = RGBColor(40, 40, 40);
const DENIAL_COLOUR: RGBColor = RGBColor(200, 30, 30);
/// Shown instead of data when the period has none.
pub const NO_USAGE: &str = "no usage recorded in this period";
pub const LEGEND_IN_USE: &str = "peak in use";
pub const LEGEND_LICENSED: &str = "licensed";
pub const LEGEND_DENIALS: &str = "denied requests";

/// Renders the usage of one feature (or, when `points` hold several, all features added up)
/// between `from` and `to`: peak concurrent use per period as a filled step line, the
/// licensed count as a dark line, and periods with denied requests as red crosses along the
/// top (a shape of their own, so the chart reads without colour), with the number denied
/// where there is room. Time labels are hours (UTC) for ranges up to two days, dates beyond.
/// An empty period renders a chart saying so. Always returns a complete SVG document.
pub fn usage_chart_svg(
    title: &str,
    points: &[HistoryPoint],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> String {
    let to = if to > from {
        to
    } else {
        from + chrono::Duration::hours(1)
    };
    let mut in_range: Vec<HistoryPoint> = points
        .iter()
        .filter(|p| p.end() > from && p.start < to)
        .cloned()
        .collect();
    let several = in_range
        .first()
        .is_some_and(|f| in_range.iter().any(|p| p.feature != f.feature));
    if several {
        in_range = total_by_period(&in_range);
    }
    in_range.sort_by_key(|p| p.start);
    let mut svg = String::new();
    let drawn = draw(&mut svg, title, &in_range, from, to);
    match drawn {
        Ok(()) => add_title(svg, title, &summary(&in_range)),
        Err(e) => fallback_svg(title, &e),
    }
}

type DrawResult = Result<(), String>;

fn draw(
    svg: &mut String,
    title: &str,
    points: &[HistoryPoint],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> DrawResult {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let short = to - from <= chrono::Duration::days(2);
    // The x axis counts hours (short ranges) or days from a whole hour or day, so that the
    // evenly spaced labels fall on whole hours or days.
    let unit: i64 = if short { 3600 } else { 86_400 };
    let origin_secs = from.timestamp() - from.timestamp().rem_euclid(unit);
    let origin = DateTime::from_timestamp(origin_secs, 0).unwrap_or(from);
    let x_of = |t: DateTime<Utc>| (t - origin).num_seconds() as f64 / unit as f64;
    let (x0, x1) = (x_of(from), x_of(to));
    let clip = |t: DateTime<Utc>| x_of(t).clamp(x0, x1);

    let y_data = points
        .iter()
        .map(|p| p.peak_in_use.max(p.licensed))
        .max()
        .unwrap_or(0);
    let y_top = (f64::from(y_data) * 1.3)
        .max(f64::from(y_data) + 2.0)
        .max(5.0);
    let denial_y = y_top * 0.9;

    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (plot_area, legend_area) = root.split_vertically(HEIGHT - LEGEND_HEIGHT);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, (FONT, 22))
        .margin(10)
        .margin_right(36)
        .x_label_area_size(40)
        .y_label_area_size(52)
        .build_cartesian_2d(x0..x1, 0f64..y_top)
        .map_err(|e| err(&e))?;
    let x_format = |x: &f64| {
        let t = origin + chrono::Duration::seconds((x * unit as f64).round() as i64);
        if short {
            t.format("%H:%M").to_string()
        } else {
            t.format("%b %d").to_string()
        }
    };
    let y_format = |y: &f64| format!("{}", y.round() as i64);
    chart
        .configure_mesh()
        .x_labels(if short { 13 } else { 16 })
        .y_labels(6)
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .x_desc(if short { "time (UTC)" } else { "date (UTC)" })
        .y_desc("licenses")
        .light_line_style(WHITE.mix(0.0))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(|e| err(&e))?;

    if points.is_empty() {
        let centre = ((x0 + x1) / 2.0, y_top / 2.0);
        let style = TextStyle::from((FONT, 20).into_font())
            .color(&RGBColor(90, 90, 90))
            .pos(Pos::new(HPos::Center, VPos::Center));
        chart
            .draw_series(std::iter::once(Text::new(NO_USAGE, centre, style)))
            .map_err(|e| err(&e))?;
    } else {
        // Peak in use as steps, dropping to zero where no period was recorded.
        let mut use_line: Vec<(f64, f64)> = Vec::with_capacity(points.len() * 4);
        let mut licensed_line: Vec<(f64, f64)> = Vec::with_capacity(points.len() * 2);
        let mut last_end: Option<f64> = None;
        for p in points {
            let (a, b) = (clip(p.start), clip(p.end()));
            let peak = f64::from(p.peak_in_use);
            match last_end {
                Some(e) if a > e + 1e-9 => {
                    use_line.push((e, 0.0));
                    use_line.push((a, 0.0));
                }
                None => use_line.push((a, 0.0)),
                _ => {}
            }
            use_line.push((a, peak));
            use_line.push((b, peak));
            licensed_line.push((a, f64::from(p.licensed)));
            licensed_line.push((b, f64::from(p.licensed)));
            last_end = Some(b);
        }
        if let Some(e) = last_end {
            use_line.push((e, 0.0));
        }
        chart
            .draw_series(
                AreaSeries::new(use_line, 0.0, USE_COLOUR.mix(0.25))
                    .border_style(USE_COLOUR.stroke_width(if short { 2 } else { 1 })),
            )
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(
                licensed_line,
                LICENSED_COLOUR.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
        let denied: Vec<(f64, u64)> = points
            .iter()
            .filter(|p| p.denials > 0)
            .map(|p| ((clip(p.start) + clip(p.end())) / 2.0, p.denials))
            .collect();
        chart
            .draw_series(
                denied
                    .iter()
                    .map(|(x, _)| Cross::new((*x, denial_y), 5, DENIAL_COLOUR.stroke_width(2))),
            )
            .map_err(|e| err(&e))?;
        if !denied.is_empty() && denied.len() <= 24 {
            let style = TextStyle::from((FONT, 14).into_font())
                .color(&DENIAL_COLOUR)
                .pos(Pos::new(HPos::Center, VPos::Center));
            chart
                .draw_series(
                    denied
                        .iter()
                        .map(|(x, n)| Text::new(n.to_string(), (*x, y_top * 0.965), style.clone())),
                )
                .map_err(|e| err(&e))?;
        }
    }

    draw_legend(&legend_area, points).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    points: &[HistoryPoint],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let denials: u64 = points.iter().map(|p| p.denials).sum();
    let text = TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let y = i32::try_from(LEGEND_HEIGHT / 2).unwrap_or(15);
    let mut x = 60;
    area.draw(&Rectangle::new(
        [(x, y - 6), (x + 22, y + 6)],
        USE_COLOUR.mix(0.25).filled(),
    ))?;
    area.draw(&PathElement::new(
        vec![(x, y - 6), (x + 22, y - 6)],
        USE_COLOUR.stroke_width(2),
    ))?;
    area.draw(&Text::new(LEGEND_IN_USE, (x + 28, y), text.clone()))?;
    x += 150;
    area.draw(&PathElement::new(
        vec![(x, y), (x + 22, y)],
        LICENSED_COLOUR.stroke_width(2),
    ))?;
    area.draw(&Text::new(LEGEND_LICENSED, (x + 28, y), text.clone()))?;
    x += 120;
    area.draw(&Cross::new((x + 11, y), 5, DENIAL_COLOUR.stroke_width(2)))?;
    area.draw(&Text::new(
        format!("{LEGEND_DENIALS} ({denials} in this period)"),
        (x + 28, y),
        text,
    ))?;
    Ok(())
}

fn summary(points: &[HistoryPoint]) -> String {
    if points.is_empty() {
        return NO_USAGE.to_string();
    }
    let peak = points.iter().map(|p| p.peak_in_use).max().unwrap_or(0);
    let licensed = points.last().map_or(0, |p| p.licensed);
    let denials: u64 = points.iter().map(|p| p.denials).sum();
    format!("highest use {peak}, licensed {licensed}, {denials} requests denied")
}

use leasehold_web::svg::add_title;

fn fallback_svg(title: &str, error: &str) -> String {
    leasehold_web::svg::fallback_svg(title, error, WIDTH, HEIGHT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{HOUR_SECS, RECENT_SLOT_SECS};
    use chrono::TimeZone;
    use leasehold_proto::Feature;

    fn hours(n: u32, denials_at: Option<u32>) -> (Vec<HistoryPoint>, DateTime<Utc>) {
        let start = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
        let points = (0..n)
            .filter(|h| h % 5 != 3)
            .map(|h| HistoryPoint {
                feature: Feature::parse("asr.en-US").unwrap(),
                start: start + chrono::Duration::hours(i64::from(h)),
                secs: HOUR_SECS,
                peak_in_use: (h * 7) % 13,
                grants: u64::from(h),
                denials: if Some(h) == denials_at { 4 } else { 0 },
                denials_while_free: 0,
                licensed: 10,
                backup_use_secs: 0,
                license_secs: 0,
                open: h + 1 == n,
            })
            .collect();
        (points, start)
    }

    fn assert_svg(svg: &str) {
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn day_chart_has_title_legend_and_hour_labels() {
        let (points, start) = hours(24, None);
        let svg = usage_chart_svg(
            "asr.en-US, last 24 hours",
            &points,
            start,
            start + chrono::Duration::hours(24),
        );
        assert_svg(&svg);
        assert!(svg.contains("<title>asr.en-US, last 24 hours</title>"));
        for t in [
            LEGEND_IN_USE,
            LEGEND_LICENSED,
            LEGEND_DENIALS,
            "time (UTC)",
            "12:00",
        ] {
            assert!(svg.contains(t), "missing {t}");
        }
        assert!(svg.contains("(0 in this period)"));
        assert!(!svg.contains(NO_USAGE));
    }

    #[test]
    fn month_chart_labels_dates() {
        let (points, start) = hours(30 * 24, Some(50));
        let svg = usage_chart_svg(
            "tts, last 30 days",
            &points,
            start,
            start + chrono::Duration::days(30),
        );
        assert_svg(&svg);
        assert!(svg.contains("date (UTC)"));
        assert!(
            svg.contains("Dec 0") || svg.contains("Nov 2"),
            "date labels"
        );
        assert!(svg.contains("(4 in this period)"));
    }

    #[test]
    fn empty_period_says_so() {
        let start = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
        let svg = usage_chart_svg("tts", &[], start, start + chrono::Duration::hours(24));
        assert_svg(&svg);
        assert!(svg.contains(NO_USAGE));
        assert!(svg.contains("<title>tts</title>"));
        // Degenerate range too.
        assert_svg(&usage_chart_svg("tts", &[], start, start));
    }

    #[test]
    fn denials_are_marked() {
        let (points, start) = hours(24, None);
        let to = start + chrono::Duration::hours(24);
        let without = usage_chart_svg("x", &points, start, to);
        let (points, _) = hours(24, Some(6));
        let with = usage_chart_svg("x", &points, start, to);
        let red = "stroke=\"#C81E1E\"";
        // The legend's cross is there in both; the chart adds one per period with denials.
        assert!(
            with.matches(red).count() > without.matches(red).count(),
            "{with}"
        );
        assert!(with.contains("(4 in this period)"));
        assert!(with.contains(">\n4\n</text>"), "count next to the marker");
    }

    #[test]
    fn several_features_are_added_up_and_titles_escaped() {
        let (mut points, start) = hours(4, None);
        let mut other = points.clone();
        for p in &mut other {
            p.feature = Feature::parse("tts").unwrap();
        }
        points.extend(other);
        let svg = usage_chart_svg(
            "all <features> & more",
            &points,
            start,
            start + chrono::Duration::hours(4),
        );
        assert_svg(&svg);
        assert!(svg.contains("all &lt;features&gt; &amp; more"));
        assert!(
            svg.contains("licensed 20"),
            "summed licensed count in the description"
        );
    }

    #[test]
    fn recent_slots_render() {
        let start = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
        let points: Vec<HistoryPoint> = (0..288)
            .map(|i| HistoryPoint {
                feature: Feature::parse("tts").unwrap(),
                start: start + chrono::Duration::minutes(5 * i),
                secs: RECENT_SLOT_SECS,
                peak_in_use: u32::try_from(i % 17).unwrap(),
                grants: 1,
                denials: u64::from(i % 40 == 0),
                denials_while_free: 0,
                licensed: 12,
                backup_use_secs: 0,
                license_secs: 0,
                open: false,
            })
            .collect();
        let svg = usage_chart_svg("tts", &points, start, start + chrono::Duration::hours(24));
        assert_svg(&svg);
        assert!(svg.contains("(8 in this period)"));
    }
}
