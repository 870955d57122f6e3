//! The Manager's Prometheus metrics.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::SandboxError;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [AtomicU64; 12],
    total: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                self.counts[i].load(Ordering::Relaxed)
            );
        }
        let total = self.total.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {total}");
    }
}

/// Counters and histograms; cheap to update from any task.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    create: Histogram,
    exec: Histogram,
    errors: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    stops: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub(crate) fn observe_create<T>(&self, d: Duration, r: &Result<T, SandboxError>) {
        match r {
            Ok(_) => self.create.observe(d),
            Err(e) => self.error("create", e),
        }
    }

    pub(crate) fn observe_exec<T>(&self, d: Duration, r: &Result<T, SandboxError>) {
        match r {
            Ok(_) => self.exec.observe(d),
            Err(e) => self.error("exec", e),
        }
    }

    fn error(&self, op: &'static str, e: &SandboxError) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry((op, e.code())).or_default() += 1;
        }
    }

    pub(crate) fn count_stop(&self, reason: &str) {
        if let Ok(mut m) = self.stops.lock() {
            *m.entry(reason.to_string()).or_default() += 1;
        }
    }

    pub(crate) fn render(
        &self,
        out: &mut String,
        by_state: &BTreeMap<&'static str, u64>,
        pool: usize,
    ) {
        let _ = writeln!(
            out,
            "# HELP corral_sandboxes Sandboxes held by the daemon, by state."
        );
        let _ = writeln!(out, "# TYPE corral_sandboxes gauge");
        for st in ["creating", "running", "paused", "stopping"] {
            let _ = writeln!(
                out,
                "corral_sandboxes{{state=\"{st}\"}} {}",
                by_state.get(st).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(
            out,
            "# HELP corral_pool_depth Warm sandboxes ready to hand out."
        );
        let _ = writeln!(out, "# TYPE corral_pool_depth gauge");
        let _ = writeln!(out, "corral_pool_depth{{template=\"host\"}} {pool}");
        self.create.render(
            out,
            "corral_sandbox_create_seconds",
            "Time to create a sandbox (successful creates).",
        );
        self.exec.render(
            out,
            "corral_exec_seconds",
            "Time of a foreground exec, command included.",
        );
        let _ = writeln!(
            out,
            "# HELP corral_errors_total Failed operations by operation and kind."
        );
        let _ = writeln!(out, "# TYPE corral_errors_total counter");
        if let Ok(m) = self.errors.lock() {
            for ((op, kind), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "corral_errors_total{{op=\"{op}\",kind=\"{kind}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP corral_sandboxes_stopped_total Sandboxes ended, by reason."
        );
        let _ = writeln!(out, "# TYPE corral_sandboxes_stopped_total counter");
        if let Ok(m) = self.stops.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "corral_sandboxes_stopped_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.observe_create(Duration::from_micros(1500), &Ok::<(), SandboxError>(()));
        m.observe_create(Duration::from_millis(40), &Ok::<(), SandboxError>(()));
        m.observe_exec(
            Duration::from_millis(1),
            &Err::<(), _>(SandboxError::NotFound("x".into())),
        );
        let mut out = String::new();
        m.render(&mut out, &BTreeMap::from([("running", 2)]), 3);
        assert!(
            out.contains("corral_sandbox_create_seconds_bucket{le=\"0.002\"} 1"),
            "{out}"
        );
        assert!(out.contains("corral_sandbox_create_seconds_bucket{le=\"0.05\"} 2"));
        assert!(out.contains("corral_sandbox_create_seconds_count 2"));
        assert!(out.contains("corral_errors_total{op=\"exec\",kind=\"not_found\"} 1"));
        assert!(out.contains("corral_sandboxes{state=\"running\"} 2"));
        assert!(out.contains("corral_pool_depth{template=\"host\"} 3"));
    }
}
