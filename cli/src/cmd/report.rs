//! What a load run (`load`, `demo`) writes besides its table: JSON, a chart, the rule
//! checks; and the live progress bar while it runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tenant_guard_cli::loadgen::{self, Cost, LoadPlan, RuleCheck};

/// Files a run writes besides the table.
pub(crate) struct Outputs {
    pub(crate) json: Option<PathBuf>,
    pub(crate) chart: Option<PathBuf>,
    /// Rules to check per tenant, and request costs for them.
    pub(crate) rules: Vec<RuleCheck>,
    pub(crate) costs: Vec<Cost>,
}

impl Outputs {
    pub(crate) fn write(
        &self,
        report: &loadgen::Report,
        limit: Option<(u32, Duration)>,
        title: &str,
    ) -> bool {
        let mut ok = true;
        let mut put = |path: &Path, text: String, what: &str| match std::fs::write(path, text) {
            Ok(()) => println!("{what} written to {}", path.display()),
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                ok = false;
            }
        };
        if let Some(p) = &self.json {
            let mut j = report.to_json(limit);
            let rows = report.rule_rows(&self.rules, &self.costs);
            if let Some(tenants) = j["tenants"].as_array_mut() {
                for (t, (_, lines, held)) in tenants.iter_mut().zip(rows) {
                    t["rules"] = serde_json::json!({ "lines": lines, "held": held });
                }
            }
            let text = format!("{j:#}\n");
            put(p, text, "results");
        }
        if let Some(p) = &self.chart {
            put(p, report.svg_chart(limit, title), "chart");
        }
        ok
    }
}

/// Runs the plan with a live progress bar on stderr (hidden when stderr is not a terminal).
pub(crate) async fn run_with_progress(
    plan: &LoadPlan,
) -> Result<loadgen::Report, loadgen::LoadError> {
    use std::sync::atomic::Ordering::Relaxed;
    let live = std::sync::Arc::new(loadgen::Live::default());
    let bar = indicatif::ProgressBar::new(plan.duration.as_secs().max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let ticker = {
        let live = live.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                bar.set_position(bar.elapsed().as_secs());
                bar.set_message(format!(
                    "sent {} allowed {} throttled {} errors {}",
                    live.sent.load(Relaxed),
                    live.ok.load(Relaxed),
                    live.throttled.load(Relaxed),
                    live.errors.load(Relaxed)
                ));
            }
        })
    };
    let result = loadgen::run_with(plan, &live).await;
    ticker.abort();
    bar.finish_and_clear();
    result
}
