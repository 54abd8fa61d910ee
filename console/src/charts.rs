//! Charts as SVG, drawn on the server from numbers the core computed (the
//! report's distributions and association matrices are the ones the PDF
//! report draws; profiles' histograms are the dataset's). No script, no
//! library, no network: each chart is a small `<svg role="img">` with a
//! title a screen reader announces. Every label is escaped here.

use std::fmt::Write as _;

const REAL: &str = "#2a63b8";
const SYNTH: &str = "#c0600f";
const INK: &str = "#1f2430";
const MUTED: &str = "#5a6170";
const LINE: &str = "#d9dde5";

/// Text for SVG (element content and attribute values alike).
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `s` cut to `n` characters, the last an ellipsis when cut.
pub(crate) fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn open(w: u32, h: u32, label: &str) -> String {
    format!(
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" \
         role=\"img\" aria-label=\"{}\"><title>{}</title>",
        esc(label),
        esc(label)
    )
}

/// Real-vs-synthetic shares per bin or category, as paired bars.
/// `labels` are the categories (or, for a numeric column, its range ends).
pub(crate) fn paired_bars(title: &str, labels: &[String], real: &[f64], synthetic: &[f64], numeric: bool) -> String {
    let (w, h) = (320u32, 170u32);
    let (left, right, top, bottom) = (8.0, 8.0, 8.0, if numeric { 22.0 } else { 40.0 });
    let plot_w = f64::from(w) - left - right;
    let plot_h = f64::from(h) - top - bottom;
    let n = real.len().max(synthetic.len()).max(1);
    let max = real.iter().chain(synthetic).copied().fold(0.0_f64, f64::max).max(1e-9);
    let mut s = open(w, h, &format!("{title}: real (blue) and synthetic (orange) shares"));
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"{LINE}\"/>",
        y = top + plot_h,
        x2 = left + plot_w
    );
    #[allow(clippy::cast_precision_loss, reason = "a handful of bars")]
    let slot = plot_w / n as f64;
    let bar = (slot * 0.4).max(1.0);
    for i in 0..n {
        #[allow(clippy::cast_precision_loss, reason = "a handful of bars")]
        let x = left + slot * i as f64 + slot * 0.1;
        for (k, (values, color)) in [(real, REAL), (synthetic, SYNTH)].into_iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0.0).max(0.0);
            let bh = v / max * plot_h;
            #[allow(clippy::cast_precision_loss, reason = "k is 0 or 1")]
            let bx = x + bar * k as f64;
            let _ = write!(
                s,
                "<rect x=\"{bx:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{}: {} {:.1}%</title></rect>",
                top + plot_h - bh,
                esc(labels.get(i).map_or("", String::as_str)),
                if k == 0 { "real" } else { "synthetic" },
                v * 100.0
            );
        }
        if !numeric && let Some(label) = labels.get(i) {
            let cx = x + bar;
            let _ = write!(
                s,
                "<text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"{MUTED}\" text-anchor=\"end\" \
                 transform=\"rotate(-35 {cx:.1} {:.1})\">{}</text>",
                top + plot_h + 10.0,
                top + plot_h + 10.0,
                esc(&clip(label, 14))
            );
        }
    }
    if numeric && labels.len() >= 2 {
        let y = top + plot_h + 14.0;
        let _ = write!(
            s,
            "<text x=\"{left}\" y=\"{y}\" font-size=\"10\" fill=\"{MUTED}\">{}</text>\
             <text x=\"{}\" y=\"{y}\" font-size=\"10\" fill=\"{MUTED}\" text-anchor=\"end\">{}</text>",
            esc(&labels[0]),
            left + plot_w,
            esc(&labels[labels.len() - 1])
        );
    }
    s.push_str("</svg>");
    s
}

/// A small histogram (a column's shape at a glance).
pub(crate) fn spark(label: &str, counts: &[f64]) -> String {
    let (w, h) = (120u32, 28u32);
    let max = counts.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let n = counts.len().max(1);
    let mut s = format!(
        "<svg class=\"spark\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        esc(label),
        esc(label)
    );
    #[allow(clippy::cast_precision_loss, reason = "a handful of bins")]
    let slot = f64::from(w) / n as f64;
    for (i, c) in counts.iter().enumerate() {
        let bh = (c / max * f64::from(h - 2)).max(if *c > 0.0 { 1.0 } else { 0.0 });
        #[allow(clippy::cast_precision_loss, reason = "a handful of bins")]
        let x = slot * i as f64;
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{REAL}\"/>",
            f64::from(h) - bh,
            (slot - 1.0).max(0.5)
        );
    }
    s.push_str("</svg>");
    s
}

/// A colour for a value in [0, 1] (white to blue), or for a difference in
/// [-1, 1] (orange below zero, blue above).
fn shade(v: f64, diverging: bool) -> String {
    let mix = |a: (f64, f64, f64), t: f64| {
        let t = t.clamp(0.0, 1.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "0..=255")]
        let c = |x: f64| (255.0 + (x - 255.0) * t).round() as u8;
        format!("#{:02x}{:02x}{:02x}", c(a.0), c(a.1), c(a.2))
    };
    if !v.is_finite() {
        return "#eeeeee".to_owned();
    }
    if diverging {
        if v < 0.0 {
            mix((192.0, 96.0, 15.0), -v)
        } else {
            mix((42.0, 99.0, 184.0), v)
        }
    } else {
        mix((42.0, 99.0, 184.0), v)
    }
}

/// A matrix of associations (or their differences) between columns.
pub(crate) fn heatmap(title: &str, names: &[String], matrix: &[Vec<f64>], diverging: bool) -> String {
    let n = names.len();
    let cell = if n <= 8 {
        26.0
    } else if n <= 16 {
        16.0
    } else {
        10.0
    };
    let label_w = 96.0;
    #[allow(clippy::cast_precision_loss, reason = "tens of columns")]
    let side = cell * n as f64;
    let w = label_w + side + 8.0;
    let h = label_w + side + 8.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "small, positive")]
    let mut s = open(w.ceil() as u32, h.ceil() as u32, title);
    for (i, row) in matrix.iter().enumerate().take(n) {
        #[allow(clippy::cast_precision_loss, reason = "tens of columns")]
        let y = label_w + cell * i as f64;
        for (j, v) in row.iter().enumerate().take(n) {
            #[allow(clippy::cast_precision_loss, reason = "tens of columns")]
            let x = label_w + cell * j as f64;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cell:.1}\" height=\"{cell:.1}\" fill=\"{}\"><title>{} × {}: {}</title></rect>",
                shade(*v, diverging),
                esc(&names[i]),
                esc(&names[j]),
                if v.is_finite() {
                    format!("{v:.2}")
                } else {
                    "n/a".to_owned()
                }
            );
        }
    }
    let font = if n <= 16 { 9 } else { 7 };
    for (i, name) in names.iter().enumerate() {
        #[allow(clippy::cast_precision_loss, reason = "tens of columns")]
        let mid = label_w + cell * i as f64 + cell / 2.0;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"{font}\" fill=\"{INK}\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>",
            label_w - 3.0,
            mid,
            esc(&clip(name, 14))
        );
        let _ = write!(
            s,
            "<text x=\"{mid:.1}\" y=\"{:.1}\" font-size=\"{font}\" fill=\"{INK}\" text-anchor=\"start\" \
             transform=\"rotate(-60 {mid:.1} {:.1})\">{}</text>",
            label_w - 3.0,
            label_w - 3.0,
            esc(&clip(name, 14))
        );
    }
    s.push_str("</svg>");
    s
}

/// Values per day (sales, revenue, downloads), as bars with the first and
/// last day named.
pub(crate) fn daily(title: &str, days: &[(String, f64)], unit: &str) -> String {
    let (w, h) = (560u32, 160u32);
    let (left, right, top, bottom) = (40.0, 8.0, 10.0, 22.0);
    let plot_w = f64::from(w) - left - right;
    let plot_h = f64::from(h) - top - bottom;
    let max = days.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let mut s = open(w, h, title);
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"{LINE}\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"{MUTED}\" text-anchor=\"end\">{}</text>",
        left - 4.0,
        top + 8.0,
        esc(&format!("{} {unit}", compact(max))),
        y = top + plot_h,
        x2 = left + plot_w
    );
    let n = days.len().max(1);
    #[allow(clippy::cast_precision_loss, reason = "days")]
    let slot = plot_w / n as f64;
    for (i, (day, v)) in days.iter().enumerate() {
        let bh = if max > 0.0 { v / max * plot_h } else { 0.0 };
        #[allow(clippy::cast_precision_loss, reason = "days")]
        let x = left + slot * i as f64 + slot * 0.15;
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{REAL}\"><title>{}: {} {}</title></rect>",
            top + plot_h - bh,
            (slot * 0.7).max(1.0),
            esc(day),
            compact(*v),
            esc(unit)
        );
    }
    if let (Some((first, _)), Some((last, _))) = (days.first(), days.last()) {
        let y = top + plot_h + 14.0;
        let _ = write!(
            s,
            "<text x=\"{left}\" y=\"{y}\" font-size=\"10\" fill=\"{MUTED}\">{}</text>\
             <text x=\"{}\" y=\"{y}\" font-size=\"10\" fill=\"{MUTED}\" text-anchor=\"end\">{}</text>",
            esc(first),
            left + plot_w,
            esc(last)
        );
    }
    s.push_str("</svg>");
    s
}

/// A number in few characters (`1.2k`, `3.4M`).
pub(crate) fn compact(x: f64) -> String {
    let a = x.abs();
    if a >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_so_a_value_cannot_become_markup() {
        let svg = paired_bars(
            "<script>alert(1)</script>",
            &["<b>&\"x\"</b>".to_owned()],
            &[0.5],
            &[0.25],
            false,
        );
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(svg.contains("&lt;b&gt;&amp;&quot;x&quot;&lt;/b&gt;"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn bars_are_drawn_to_scale() {
        let svg = paired_bars("age", &["17".into(), "90".into()], &[0.5, 0.25], &[0.25, 0.5], true);
        // Both tallest bars reach the full plot height (170 - 8 - 22 = 140).
        assert_eq!(svg.matches("height=\"140.0\"").count(), 2, "{svg}");
        assert_eq!(svg.matches("<rect").count(), 4);
    }

    #[test]
    fn heatmaps_have_one_cell_per_pair_and_shade_by_value() {
        let names = vec!["a".to_owned(), "b".to_owned()];
        let svg = heatmap("real", &names, &[vec![1.0, 0.2], vec![0.2, 1.0]], false);
        assert_eq!(svg.matches("<rect").count(), 4);
        assert_eq!(shade(0.0, false), "#ffffff");
        assert_eq!(shade(1.0, false), "#2a63b8");
        assert_eq!(shade(-1.0, true), "#c0600f");
        assert_eq!(shade(f64::NAN, true), "#eeeeee");
    }

    #[test]
    fn compact_numbers() {
        assert_eq!(compact(12.0), "12");
        assert_eq!(compact(12_345.0), "12.3k");
        assert_eq!(compact(2_500_000.0), "2.5M");
        assert_eq!(compact(0.5), "0.50");
    }
}
