//! The dashboard's charts: inline SVG drawn here (no charting library, nothing
//! fetched), sized by `viewBox` so they shrink to a phone, coloured by CSS classes
//! (the CSP allows no inline styles), each followed by its numbers as a table for
//! screen readers and anyone who wants the figures. One component draws them all:
//! bars stacked per day, and lines (dots joined) over them.

use leptos::prelude::*;

use crate::i18n::Lang;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// Values per day stacked into one bar; `class` colours it (see style/main.css).
#[derive(Debug, Clone)]
pub struct Stack {
    pub class: &'static str,
    pub label: String,
    pub values: Vec<i64>,
}

/// Values per day drawn as dots joined by a line; a day without a value is skipped.
#[derive(Debug, Clone)]
pub struct Line {
    pub class: &'static str,
    pub label: String,
    pub values: Vec<Option<i64>>,
}

/// A chart over days: `days` are the x axis (`YYYY-MM-DD`), every series has a value
/// per day.
#[component]
pub fn DayChart(title: String, days: Vec<String>, stacks: Vec<Stack>, lines: Vec<Line>) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let n = days.len().max(1);
    let stacked_max = (0..days.len())
        .map(|i| stacks.iter().map(|s| s.values.get(i).copied().unwrap_or(0).max(0)).sum::<i64>())
        .max()
        .unwrap_or(0);
    let line_max = lines.iter().flat_map(|l| l.values.iter().flatten().copied()).max().unwrap_or(0);
    let max = nice_ceiling(stacked_max.max(line_max));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / n as f64;
    let y = move |v: i64| TOP + plot_h - plot_h * (v.max(0) as f64) / (max as f64);
    let x_mid = move |i: usize| LEFT + slot * (i as f64 + 0.5);

    let mut bars = Vec::new();
    for i in 0..days.len() {
        let mut base = 0i64;
        for stack in &stacks {
            let v = stack.values.get(i).copied().unwrap_or(0).max(0);
            if v == 0 {
                continue;
            }
            let (top, bottom) = (y(base + v), y(base));
            bars.push(view! {
                <rect
                    class=stack.class
                    x=fmt(LEFT + slot * i as f64 + slot * 0.12)
                    y=fmt(top)
                    width=fmt(slot * 0.76)
                    height=fmt((bottom - top).max(0.5))
                />
            });
            base += v;
        }
    }
    let line_views = lines
        .iter()
        .map(|line| {
            let points: Vec<(f64, f64)> = line
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (x_mid(i), y(v))))
                .collect();
            let path = points.iter().map(|(x, y)| format!("{},{}", fmt(*x), fmt(*y))).collect::<Vec<_>>().join(" ");
            let dots = points
                .into_iter()
                .map(|(x, y)| view! { <circle class=line.class cx=fmt(x) cy=fmt(y) r="2.5" /> })
                .collect_view();
            view! {
                <g class=format!("chart-line {}", line.class)>
                    <polyline points=path />
                    {dots}
                </g>
            }
        })
        .collect_view();
    let first = days.first().cloned().unwrap_or_default();
    let last = if days.len() > 1 { days.last().cloned().unwrap_or_default() } else { String::new() };
    let legend = stacks
        .iter()
        .map(|s| (s.class, s.label.clone()))
        .chain(lines.iter().map(|l| (l.class, l.label.clone())))
        .map(|(class, label)| view! { <li><span class=format!("swatch {class}") aria-hidden="true"></span>{label}</li> })
        .collect_view();
    let head = stacks
        .iter()
        .map(|s| s.label.clone())
        .chain(lines.iter().map(|l| l.label.clone()))
        .map(|label| view! { <th scope="col">{label}</th> })
        .collect_view();
    let rows = days
        .iter()
        .enumerate()
        .map(|(i, day)| {
            let cells = stacks
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0).to_string())
                .chain(lines.iter().map(|l| l.values.get(i).copied().flatten().map_or("—".to_string(), |v| v.to_string())))
                .map(|cell| view! { <td>{cell}</td> })
                .collect_view();
            view! { <tr><th scope="row">{day.clone()}</th>{cells}</tr> }
        })
        .collect_view();
    view! {
        <figure class="chart">
            <figcaption>{title.clone()}</figcaption>
            <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label=title.clone() preserveAspectRatio="xMidYMid meet">
                <line class="chart-axis" x1=fmt(LEFT) y1=fmt(TOP + plot_h) x2=fmt(WIDTH - RIGHT) y2=fmt(TOP + plot_h) />
                <line class="chart-grid" x1=fmt(LEFT) y1=fmt(TOP) x2=fmt(WIDTH - RIGHT) y2=fmt(TOP) />
                <text class="chart-label" x=fmt(LEFT - 4.0) y=fmt(TOP + 4.0) text-anchor="end">{max}</text>
                <text class="chart-label" x=fmt(LEFT - 4.0) y=fmt(TOP + plot_h) text-anchor="end">"0"</text>
                <text class="chart-label" x=fmt(LEFT) y=fmt(HEIGHT - 6.0)>{first}</text>
                <text class="chart-label" x=fmt(WIDTH - RIGHT) y=fmt(HEIGHT - 6.0) text-anchor="end">{last}</text>
                {bars}
                {line_views}
            </svg>
            <ul class="chart-legend">{legend}</ul>
            <details class="chart-table">
                <summary>{move || t().teach_table_view}</summary>
                <table>
                    <caption>{title}</caption>
                    <thead><tr><th scope="col">{move || t().teach_day}</th>{head}</tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </details>
        </figure>
    }
    .into_any()
}

/// A round number at or above `v` for the top of the axis: 1, 2 or 5 times a power of ten.
pub fn nice_ceiling(v: i64) -> i64 {
    if v <= 1 {
        return 1;
    }
    let mut step = 1i64;
    loop {
        for m in [1, 2, 5] {
            let candidate = step.saturating_mul(m);
            if candidate >= v {
                return candidate;
            }
        }
        if step > i64::MAX / 10 {
            return v;
        }
        step *= 10;
    }
}

/// Coordinates with one decimal: short markup, and the same text in both builds.
fn fmt(v: f64) -> String {
    format!("{:.1}", if v.is_finite() { v } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(200), 200);
        assert_eq!(nice_ceiling(201), 500);
        assert_eq!(nice_ceiling(i64::MAX), i64::MAX);
    }
}
