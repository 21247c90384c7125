//! Charts for the dashboard, rendered on the server as SVG with charts-rs: no chart framework in
//! the browser, and the page works with JavaScript off.

use charts_rs::{BarChart, HeatmapChart, Series};

/// Weekday labels, Monday first (ClickHouse's `toDayOfWeek`: 1 = Monday).
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A stacked bar chart: one bar per time bucket, one colour per series (e.g. per reason).
/// `None` when there is nothing to draw or the renderer fails (the page shows the table).
pub fn stacked_bars(
    title: &str,
    buckets: Vec<String>,
    series: Vec<(String, Vec<f32>)>,
) -> Option<String> {
    if buckets.is_empty() || series.is_empty() {
        return None;
    }
    let list: Vec<Series> = series
        .into_iter()
        .map(|(name, data)| {
            let mut s = Series::new(name, data);
            s.stack = Some("total".into());
            s
        })
        .collect();
    let mut chart = BarChart::new(list, buckets);
    chart.width = 900.0;
    chart.height = 320.0;
    chart.title.text = title.to_owned();
    render(chart.svg())
}

/// An hour-of-day (x) by weekday (y) heatmap. `cells` are (weekday 1..=7, hour 0..=23, count).
pub fn weekday_hour_heatmap(title: &str, cells: &[(u8, u8, u64)]) -> Option<String> {
    if cells.iter().all(|c| c.2 == 0) {
        return None;
    }
    let data: Vec<(usize, f32)> = cells
        .iter()
        .filter(|(d, h, _)| (1..=7).contains(d) && *h < 24)
        // Row 0 is drawn at the bottom: Sunday there, Monday on top.
        .map(|&(d, h, n)| ((7 - d as usize) * 24 + h as usize, n as f32))
        .collect();
    let hours = (0..24).map(|h| format!("{h:02}")).collect();
    let days = WEEKDAYS.iter().rev().map(|d| (*d).to_owned()).collect();
    let mut chart = HeatmapChart::new(data, hours, days);
    chart.width = 900.0;
    chart.height = 300.0;
    chart.title.text = title.to_owned();
    render(chart.svg())
}

fn render<E: std::fmt::Display>(svg: Result<String, E>) -> Option<String> {
    match svg {
        Ok(svg) => Some(svg),
        Err(e) => {
            tracing::warn!(error = %e, "a dashboard chart could not be drawn");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stacked_chart_is_an_svg_naming_each_series() {
        let svg = stacked_bars(
            "Handoffs by reason",
            vec!["09:00".into(), "10:00".into()],
            vec![
                ("customer_request".into(), vec![3.0, 1.0]),
                ("frustration".into(), vec![0.0, 2.0]),
            ],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("customer_request") && svg.contains("frustration"));
        assert!(stacked_bars("x", vec![], vec![]).is_none());
    }

    #[test]
    fn the_heatmap_draws_a_cell_per_hour_and_weekday_and_ignores_out_of_range_cells() {
        let svg = weekday_hour_heatmap("Volume", &[(1, 9, 5), (7, 23, 1), (9, 30, 100)]).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("Mon") && svg.contains("23"));
        assert!(weekday_hour_heatmap("Volume", &[(1, 9, 0)]).is_none());
    }
}
