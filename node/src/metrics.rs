//! `GET /metrics`: the director in Prometheus' text exposition format (version 0.0.4).
//! Pure: values in, text out. The admin API gathers the values (Raft metrics, the
//! applied state, the runtime's counters) and renders them here.

use std::fmt::Write;

/// Upper bounds (seconds) of the latency histograms' buckets.
pub const BUCKETS: [f64; 12] = ::actors::check::stats::DURATION_BUCKETS;

/// A cumulative histogram of durations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or below each of [`BUCKETS`] (not cumulated yet).
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// From counts kept elsewhere (per bucket of [`BUCKETS`], not cumulated).
    pub fn from_counts(counts: [u64; BUCKETS.len()], count: u64, sum: f64) -> Histogram {
        Histogram { counts, count, sum }
    }
}

/// The text being built.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels(l: &[(&str, &str)]) -> String {
    if l.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    format!("{{{}}}", inner.join(","))
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

impl Exposition {
    /// Starts a metric family: `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", help.replace('\n', " "));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, l: &[(&str, &str)], value: f64) {
        let _ = writeln!(self.out, "{name}{} {}", labels(l), number(value));
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The samples of one histogram (the family must have been started).
    pub fn histogram(&mut self, name: &str, l: &[(&str, &str)], h: &Histogram) {
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(h.counts) {
            cumulative += c;
            let le = number(*b);
            let mut with = l.to_vec();
            with.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with, cumulative as f64);
        }
        let mut with = l.to_vec();
        with.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &with, h.count as f64);
        self.sample(&format!("{name}_sum"), l, h.sum);
        self.sample(&format!("{name}_count"), l, h.count as f64);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_histograms_parse_as_prometheus_text() {
        let mut e = Exposition::default();
        e.single("hanode_config_version", "gauge", "Committed config version.", 7.0);
        e.family("hanode_vrrp_state", "gauge", "1 for the state an instance is in.");
        e.sample(
            "hanode_vrrp_state",
            &[("instance", "VI_1"), ("state", "MASTER")],
            1.0,
        );
        let mut h = Histogram::default();
        h.observe(0.0007);
        h.observe(0.003);
        h.observe(9.0);
        e.family(
            "hanode_sync_duration_seconds",
            "histogram",
            "Table sync duration.",
        );
        e.histogram("hanode_sync_duration_seconds", &[], &h);
        let text = e.finish();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let scrape = prometheus_parse::Scrape::parse(lines.into_iter().map(Ok)).expect("parses");
        let v = |name: &str| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name)
                .map(|s| s.value.clone())
                .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
        };
        assert!(matches!(v("hanode_config_version"), prometheus_parse::Value::Gauge(x) if x == 7.0));
        match v("hanode_sync_duration_seconds") {
            prometheus_parse::Value::Histogram(b) => {
                let at = |le: f64| b.iter().find(|c| c.less_than == le).map(|c| c.count);
                assert_eq!(at(0.001), Some(1.0));
                assert_eq!(at(0.005), Some(2.0));
                assert_eq!(at(f64::INFINITY), Some(3.0));
            }
            other => panic!("{other:?}"),
        }
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == "hanode_vrrp_state")
            .unwrap();
        assert_eq!(s.labels.get("instance"), Some("VI_1"));
    }

    #[test]
    fn label_values_are_escaped_as_the_format_says() {
        assert_eq!(labels(&[("a", "x\"y\\z\nw")]), "{a=\"x\\\"y\\\\z\\nw\"}");
        assert_eq!(number(f64::INFINITY), "+Inf");
    }
}
