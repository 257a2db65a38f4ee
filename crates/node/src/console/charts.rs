//! The installation page's usage charts, one per feature, drawn as SVG with plotters (text
//! stays `<text>` elements, so no font files are needed): the daily peak in use of the
//! primary (production or development) servers and of the backup servers as steps, the
//! licensed count of each as a line, and the days on which backup licenses were used beside
//! the production ones marked with triangles along the top (a shape of its own, so the chart
//! reads without colour), with the hours of overlap where there is room.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use leasehold_proto::{Context, Feature};
use leasehold_web::svg::{add_title, fallback_svg};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::api::{DailyUsage, SimultaneousUse};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 320;
const LEGEND_HEIGHT: u32 = 30;
const FONT: &str = "sans-serif";

const PRIMARY: RGBColor = RGBColor(31, 119, 180);
const BACKUP: RGBColor = RGBColor(214, 110, 10);
const LICENSED: RGBColor = RGBColor(40, 40, 40);
const OVERLAP: RGBColor = RGBColor(200, 30, 30);

pub const NO_USAGE: &str = "no usage reported in this period";
pub const LEGEND_PRIMARY: &str = "peak in use";
pub const LEGEND_BACKUP: &str = "backup peak";
pub const LEGEND_LICENSED: &str = "licensed";
pub const LEGEND_OVERLAP: &str = "backup used beside production";

/// What one feature's chart shows.
#[derive(Debug, Clone)]
pub struct FeatureUsage<'a> {
    pub feature: &'a Feature,
    pub days: Vec<&'a DailyUsage>,
    pub overlap: Vec<&'a SimultaneousUse>,
    /// Licensed count of the primary (production or development) servers, and of backups.
    pub licensed_primary: u32,
    pub licensed_backup: u32,
}

/// Hours of overlap per day.
fn overlap_by_day(overlap: &[&SimultaneousUse]) -> BTreeMap<NaiveDate, usize> {
    let mut out = BTreeMap::new();
    for o in overlap {
        *out.entry(o.hour.date_naive()).or_insert(0) += 1;
    }
    out
}

/// The chart of one feature from `from` to `to` (inclusive). Always a complete SVG
/// document.
pub fn feature_chart_svg(usage: &FeatureUsage<'_>, from: NaiveDate, to: NaiveDate) -> String {
    let title = format!("{}: daily peak in use, {from} to {to} (UTC)", usage.feature);
    let mut svg = String::new();
    match draw(&mut svg, &title, usage, from, to.max(from)) {
        Ok(()) => add_title(svg, &title, &summary(usage)),
        Err(e) => fallback_svg(&title, &e, WIDTH, HEIGHT),
    }
}

fn summary(u: &FeatureUsage<'_>) -> String {
    if u.days.is_empty() {
        return NO_USAGE.into();
    }
    let peak = |backup: bool| {
        u.days
            .iter()
            .filter(|d| (d.context == Context::Backup) == backup)
            .map(|d| d.peak_in_use)
            .max()
            .unwrap_or(0)
    };
    format!(
        "highest daily peak {} of {} licensed; on backup servers {} of {}; {} hour(s) with backup licenses used beside production",
        peak(false),
        u.licensed_primary,
        peak(true),
        u.licensed_backup,
        u.overlap.len()
    )
}

/// Steps of one context's daily peaks: up and down at day boundaries, zero on days without
/// a row.
fn steps(days: &[&DailyUsage], backup: bool, from: NaiveDate) -> Vec<(f64, f64)> {
    let mut by_day: BTreeMap<NaiveDate, u32> = BTreeMap::new();
    for d in days
        .iter()
        .filter(|d| (d.context == Context::Backup) == backup)
    {
        let e = by_day.entry(d.day).or_insert(0);
        *e = (*e).max(d.peak_in_use);
    }
    let mut line = Vec::new();
    for (day, peak) in by_day {
        let x = (day - from).num_days() as f64;
        let y = f64::from(peak);
        line.extend([(x, 0.0), (x, y), (x + 1.0, y), (x + 1.0, 0.0)]);
    }
    line
}

fn draw(
    svg: &mut String,
    title: &str,
    u: &FeatureUsage<'_>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let days = (to - from).num_days() as f64 + 1.0;
    let y_data = u
        .days
        .iter()
        .map(|d| d.peak_in_use)
        .chain([u.licensed_primary, u.licensed_backup])
        .max()
        .unwrap_or(0);
    let y_top = (f64::from(y_data) * 1.3)
        .max(f64::from(y_data) + 2.0)
        .max(5.0);
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (plot, legend) = root.split_vertically(HEIGHT - LEGEND_HEIGHT);
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, (FONT, 20))
        .margin(10)
        .margin_right(30)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..days, 0f64..y_top)
        .map_err(|e| err(&e))?;
    let x_format = |x: &f64| {
        let day = from + chrono::Duration::days(x.round() as i64);
        day.format("%b %d").to_string()
    };
    let y_format = |y: &f64| format!("{}", y.round() as i64);
    chart
        .configure_mesh()
        .x_labels(10)
        .y_labels(6)
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .x_desc("day (UTC)")
        .y_desc("licenses")
        .light_line_style(WHITE.mix(0.0))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 14))
        .draw()
        .map_err(|e| err(&e))?;

    if u.days.is_empty() {
        let style = TextStyle::from((FONT, 20).into_font())
            .color(&RGBColor(90, 90, 90))
            .pos(Pos::new(HPos::Center, VPos::Center));
        chart
            .draw_series(std::iter::once(Text::new(
                NO_USAGE,
                (days / 2.0, y_top / 2.0),
                style,
            )))
            .map_err(|e| err(&e))?;
    } else {
        chart
            .draw_series(
                AreaSeries::new(steps(&u.days, false, from), 0.0, PRIMARY.mix(0.2))
                    .border_style(PRIMARY.stroke_width(2)),
            )
            .map_err(|e| err(&e))?;
        chart
            .draw_series(
                AreaSeries::new(steps(&u.days, true, from), 0.0, BACKUP.mix(0.2))
                    .border_style(BACKUP.stroke_width(2)),
            )
            .map_err(|e| err(&e))?;
    }
    for (count, colour) in [(u.licensed_primary, LICENSED), (u.licensed_backup, BACKUP)] {
        if count > 0 {
            let y = f64::from(count);
            chart
                .draw_series(LineSeries::new(
                    [(0.0, y), (days, y)],
                    colour.stroke_width(1),
                ))
                .map_err(|e| err(&e))?;
        }
    }
    let overlap = overlap_by_day(&u.overlap);
    let marks: Vec<(f64, usize)> = overlap
        .iter()
        .filter(|(d, _)| **d >= from && **d <= to)
        .map(|(d, hours)| ((*d - from).num_days() as f64 + 0.5, *hours))
        .collect();
    chart
        .draw_series(
            marks
                .iter()
                .map(|(x, _)| TriangleMarker::new((*x, y_top * 0.9), 7, OVERLAP.filled())),
        )
        .map_err(|e| err(&e))?;
    if marks.len() <= 20 {
        let style = TextStyle::from((FONT, 13).into_font())
            .color(&OVERLAP)
            .pos(Pos::new(HPos::Center, VPos::Center));
        chart
            .draw_series(marks.iter().map(|(x, hours)| {
                Text::new(format!("{hours} h"), (*x, y_top * 0.97), style.clone())
            }))
            .map_err(|e| err(&e))?;
    }
    draw_legend(&legend, u.overlap.len()).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    overlap_hours: usize,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let text = TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let y = i32::try_from(LEGEND_HEIGHT / 2).unwrap_or(15);
    let mut x = 50;
    for (colour, label) in [(PRIMARY, LEGEND_PRIMARY), (BACKUP, LEGEND_BACKUP)] {
        area.draw(&Rectangle::new(
            [(x, y - 6), (x + 20, y + 6)],
            colour.mix(0.2).filled(),
        ))?;
        area.draw(&PathElement::new(
            vec![(x, y - 6), (x + 20, y - 6)],
            colour.stroke_width(2),
        ))?;
        area.draw(&Text::new(label, (x + 26, y), text.clone()))?;
        x += 140;
    }
    area.draw(&PathElement::new(
        vec![(x, y), (x + 20, y)],
        LICENSED.stroke_width(1),
    ))?;
    area.draw(&Text::new(LEGEND_LICENSED, (x + 26, y), text.clone()))?;
    x += 100;
    area.draw(&TriangleMarker::new((x + 10, y), 7, OVERLAP.filled()))?;
    area.draw(&Text::new(
        format!("{LEGEND_OVERLAP} ({overlap_hours} h)"),
        (x + 26, y),
        text,
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn day(d: u32, context: Context, peak: u32) -> DailyUsage {
        DailyUsage {
            day: NaiveDate::from_ymd_opt(2026, 11, d).unwrap(),
            feature: Feature::parse("tts").unwrap(),
            context,
            peak_in_use: peak,
            peak_hours: u64::from(peak),
            license_secs: 0,
            grants: 1,
            denials: 0,
            denials_while_free: 0,
        }
    }

    #[test]
    fn overlap_days_are_marked_and_described() {
        let feature = Feature::parse("tts").unwrap();
        let days = [
            day(2, Context::Production, 7),
            day(3, Context::Production, 9),
            day(3, Context::Backup, 4),
        ];
        let overlap = SimultaneousUse {
            hour: Utc.with_ymd_and_hms(2026, 11, 3, 14, 0, 0).unwrap(),
            feature: feature.clone(),
            backup_server: leasehold_proto::ServerGuid::from_bytes([1; 16]),
            backup_use_secs: 1200,
            production_peak: 9,
        };
        let u = FeatureUsage {
            feature: &feature,
            days: days.iter().collect(),
            overlap: vec![&overlap],
            licensed_primary: 10,
            licensed_backup: 10,
        };
        let from = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let to = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let svg = feature_chart_svg(&u, from, to);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("1 hour(s) with backup licenses used beside production"));
        assert!(svg.contains(&format!("{LEGEND_OVERLAP} (1 h)")));
        assert!(svg.contains(">\n1 h\n</text>"), "hours next to the marker");
        let without = feature_chart_svg(
            &FeatureUsage {
                overlap: vec![],
                ..u
            },
            from,
            to,
        );
        let red = "fill=\"#C81E1E\"";
        assert!(svg.matches(red).count() > without.matches(red).count());
    }

    #[test]
    fn an_empty_period_says_so() {
        let feature = Feature::parse("tts").unwrap();
        let u = FeatureUsage {
            feature: &feature,
            days: vec![],
            overlap: vec![],
            licensed_primary: 3,
            licensed_backup: 0,
        };
        let d = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let svg = feature_chart_svg(&u, d, d);
        assert!(svg.contains(NO_USAGE));
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
