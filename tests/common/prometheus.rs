//! A real Prometheus server (Debian's prometheus package) scraping damon every second, with
//! its HTTP API and its own metrics, for tests/metrics.rs and tests/metrics_flood.rs.
#![allow(dead_code)]

use super::common::{free_port, http_get, TestDir};
use std::process::{Child, Command, Stdio};

pub struct Prometheus {
    child: Child,
    pub port: u16,
}

impl Prometheus {
    pub fn start(dir: &TestDir, target_port: u16) -> Prometheus {
        let port = free_port();
        let config = dir.path("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: damon\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
                target_port
            ),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's prometheus package; scripts/test installs it)");
        Prometheus { child, port }
    }

    pub fn api(&self, path: &str) -> String {
        http_get(self.port, path).unwrap_or_default()
    }

    /// The value of an instant query's first result.
    pub fn query(&self, query: &str) -> Option<f64> {
        let encoded: String =
            query
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b == b'_' {
                        (b as char).to_string()
                    } else {
                        format!("%{:02X}", b)
                    }
                })
                .collect();
        let body = self.api(&format!("/api/v1/query?query={}", encoded));
        body.split("\"value\":[").nth(1)?.split(",\"").nth(1)?.split('"').next()?.parse().ok()
    }

    /// A sample of Prometheus' own metrics (its /metrics), by the start of its line.
    pub fn own(&self, sample: &str) -> Option<f64> {
        let text = self.api("/metrics");
        text.lines().find(|l| l.starts_with(sample))?.rsplit(' ').next()?.parse().ok()
    }

    /// Connections Prometheus opened to its scrape targets (net_conntrack's dialer count):
    /// one while it keeps its connection.
    pub fn connections_to_damon(&self) -> Option<f64> {
        self.own("net_conntrack_dialer_conn_established_total{dialer_name=\"damon\"}")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
