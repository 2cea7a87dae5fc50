//! The Prometheus text exposition format (version 0.0.4), written out.
//!
//! damon reads every value at scrape time from one sample, so it has no long-lived metric
//! objects to register: a family is a name, a type, a help text and its samples, rendered
//! straight to text. (prometheus-client's encoder writes OpenMetrics and derives counter
//! names itself, which cannot express the original Damon's gauge families ending in _total
//! that existing dashboards depend on.)

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// (extra labels, value)
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family { name, kind, help, samples: Vec::new() }
    }

    /// A family with one sample, or none when the value is unknown.
    pub fn single(name: &'static str, kind: Kind, help: &'static str, value: Option<f64>) -> Family {
        let mut family = Family::new(name, kind, help);
        if let Some(value) = value {
            family.samples.push((Vec::new(), value));
        }
        family
    }

    pub fn with(mut self, labels: Vec<(&'static str, String)>, value: f64) -> Family {
        self.samples.push((labels, value));
        self
    }
}

fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{}", value);
    }
}

/// Renders the families with `constant_labels` on every sample; families without samples
/// are left out entirely.
pub fn render(families: &[Family], constant_labels: &[(&'static str, String)]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    for family in families.iter().filter(|f| !f.samples.is_empty()) {
        let kind = match family.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help.replace('\\', "\\\\").replace('\n', "\\n"));
        let _ = writeln!(out, "# TYPE {} {}", family.name, kind);
        for (labels, value) in &family.samples {
            out.push_str(family.name);
            let all = labels.iter().chain(constant_labels.iter());
            let mut first = true;
            for (name, value) in all {
                out.push(if first { '{' } else { ',' });
                first = false;
                out.push_str(name);
                out.push_str("=\"");
                escape_label_value(&mut out, value);
                out.push('"');
            }
            if !first {
                out.push('}');
            }
            out.push(' ');
            write_value(&mut out, *value);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_help_type_and_escaped_labels() {
        let families = vec![
            Family::new("damon_cpu_seconds_total", Kind::Counter, "CPU time.")
                .with(vec![("mode", "user".to_string())], 1.5)
                .with(vec![("mode", "system".to_string())], 2.0),
            Family::single("damon_up", Kind::Gauge, "Up.", Some(1.0)),
            Family::single("damon_unknown", Kind::Gauge, "Never shown.", None),
        ];
        let text = render(&families, &[("nomad_job_name", "a\"b\\c\nd".to_string())]);
        assert_eq!(
            text,
            "# HELP damon_cpu_seconds_total CPU time.\n# TYPE damon_cpu_seconds_total counter\n\
             damon_cpu_seconds_total{mode=\"user\",nomad_job_name=\"a\\\"b\\\\c\\nd\"} 1.5\n\
             damon_cpu_seconds_total{mode=\"system\",nomad_job_name=\"a\\\"b\\\\c\\nd\"} 2\n\
             # HELP damon_up Up.\n# TYPE damon_up gauge\ndamon_up{nomad_job_name=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    #[test]
    fn values_without_labels_and_special_floats() {
        let text = render(&[Family::single("x", Kind::Gauge, "h", Some(f64::NAN))], &[]);
        assert!(text.ends_with("x NaN\n"), "{}", text);
        let text = render(&[Family::single("x", Kind::Gauge, "h", Some(0.25))], &[]);
        assert!(text.ends_with("x 0.25\n"), "{}", text);
    }
}
