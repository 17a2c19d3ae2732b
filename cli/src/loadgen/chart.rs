//! The SVG chart of a run: admitted and throttled requests per second per tenant.

use std::time::Duration;

use super::Report;

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Report {
    /// An SVG line chart: admitted (solid) and throttled (dashed) requests per second per
    /// tenant over time, with the limit's rate as a grey line.
    pub fn svg_chart(&self, limit: Option<(u32, Duration)>, title: &str) -> String {
        let series = self.series();
        let (w, h) = (900.0_f64, 460.0_f64);
        let (left, right, top, bottom) = (60.0, 170.0, 40.0, 50.0);
        let pw = w - left - right;
        let ph = h - top - bottom;
        let secs = series.first().map_or(1, |s| s.admitted.len()).max(2);
        let limit_rate = limit.map(|(l, win)| f64::from(l) / win.as_secs_f64());
        let ymax = series
            .iter()
            .flat_map(|s| s.admitted.iter().chain(&s.throttled))
            .copied()
            .max()
            .unwrap_or(1) as f64;
        let ymax = ymax.max(limit_rate.unwrap_or(0.0)).max(1.0) * 1.1;
        let x = |i: usize| left + pw * (i as f64 + 0.5) / secs as f64;
        let y = |v: f64| top + ph * (1.0 - v / ymax);
        let mut out = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="24" font-size="15">{}</text>
"#,
            esc(title)
        );
        // Axes and grid.
        for k in 0..=5 {
            let v = ymax * f64::from(k) / 5.0;
            let yy = y(v);
            out.push_str(&format!(
                "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#eee\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>\n",
                left + pw,
                left - 6.0,
                yy + 4.0
            ));
        }
        let step = (secs / 10).max(1);
        for i in (0..secs).step_by(step) {
            out.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{i}s</text>\n",
                x(i),
                top + ph + 18.0
            ));
        }
        out.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">seconds since start</text>\n<text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">requests per second</text>\n",
            top + ph,
            left + pw,
            top + ph,
            left + pw / 2.0,
            h - 12.0,
            top + ph / 2.0,
            top + ph / 2.0
        ));
        if let Some(r) = limit_rate {
            out.push_str(&format!(
                "<line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\" stroke-width=\"2\" stroke-dasharray=\"8 4\"/>\n",
                y(r),
                left + pw,
                y(r)
            ));
        }
        let points = |v: &[u64]| {
            v.iter()
                .enumerate()
                .map(|(i, c)| format!("{:.1},{:.1}", x(i), y(*c as f64)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut ly = top + 10.0;
        for (i, s) in series.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            out.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\" points=\"{}\"/>\n",
                points(&s.admitted),
                points(&s.throttled)
            ));
            let lx = left + pw + 15.0;
            out.push_str(&format!(
                "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{:.1}\" y2=\"{ly}\" stroke=\"{c}\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\">{} admitted</text>\n<line x1=\"{lx}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{c}\" stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{:.1}\">{} 429</text>\n",
                lx + 25.0,
                lx + 30.0,
                ly + 4.0,
                esc(&s.tenant),
                ly + 16.0,
                lx + 25.0,
                ly + 16.0,
                lx + 30.0,
                ly + 20.0,
                esc(&s.tenant)
            ));
            ly += 38.0;
        }
        if limit_rate.is_some() {
            let lx = left + pw + 15.0;
            out.push_str(&format!(
                "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{:.1}\" y2=\"{ly}\" stroke=\"#888\" stroke-width=\"2\" stroke-dasharray=\"8 4\"/><text x=\"{:.1}\" y=\"{:.1}\">limit</text>\n",
                lx + 25.0,
                lx + 30.0,
                ly + 4.0
            ));
        }
        out.push_str("</svg>\n");
        out
    }
}
