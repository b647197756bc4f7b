//! Counters the server keeps, written in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in seconds, of the `/run` latency histogram's buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What `/metrics` shows.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Commands run, by go-judge status.
    verdicts: Mutex<BTreeMap<&'static str, u64>>,
    /// `/run` answers, by HTTP status code.
    answers: Mutex<BTreeMap<u16, u64>>,
    /// gRPC `Exec` answers, by gRPC status code.
    exec_answers: Mutex<BTreeMap<i32, u64>>,
    /// Answers to `/ws` requests, by whether they carry an error.
    ws_answers: Mutex<BTreeMap<&'static str, u64>>,
    /// Stream sessions (`/stream`, `ExecStream`) over, by API and end.
    stream_sessions: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Requests waiting for containers.
    pub waiting: AtomicU64,
    /// Requests running.
    pub running: AtomicU64,
    /// Latency histogram of `/run`, `Exec` and `/ws` requests: counts per
    /// bucket, then
    /// `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_ns: AtomicU64,
}

impl Metrics {
    /// Counts one command's verdict.
    pub fn verdict(&self, status: &'static str) {
        *lock(&self.verdicts).entry(status).or_default() += 1;
    }

    /// Counts one `/run` answer and how long it took.
    pub fn answered(&self, code: u16, took: Duration) {
        *lock(&self.answers).entry(code).or_default() += 1;
        self.took(took);
    }

    /// Counts one answer to gRPC's `Exec`, which took `took`.
    pub fn exec_answered(&self, code: tonic::Code, took: Duration) {
        *lock(&self.exec_answers).entry(code as i32).or_default() += 1;
        self.took(took);
    }

    /// Counts one answer to a `/ws` request, which took `took` from the
    /// request's arrival; `error` when it carries one.
    pub fn ws_answered(&self, error: bool, took: Duration) {
        let result = if error { "error" } else { "ok" };
        *lock(&self.ws_answers).entry(result).or_default() += 1;
        self.took(took);
    }

    /// Counts one stream session of `api` over, ended as `end` says.
    pub fn stream_ended(&self, api: &'static str, end: StreamEnd) {
        *lock(&self.stream_sessions)
            .entry((api, end.label()))
            .or_default() += 1;
    }

    /// Puts one answer's latency into the histogram.
    fn took(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ns.fetch_add(
            took.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    /// Everything in Prometheus' text exposition format.
    pub fn render(&self, idle_containers: usize, containers: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP hutch_runs_total Commands run, by verdict (go-judge's status).\n\
             # TYPE hutch_runs_total counter"
        );
        for (status, count) in lock(&self.verdicts).iter() {
            let _ = writeln!(out, "hutch_runs_total{{status=\"{status}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP hutch_run_requests_total Answers to /run, by HTTP status code.\n\
             # TYPE hutch_run_requests_total counter"
        );
        for (code, count) in lock(&self.answers).iter() {
            let _ = writeln!(out, "hutch_run_requests_total{{code=\"{code}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP hutch_exec_calls_total Answers to gRPC's Exec, by gRPC status code.\n\
             # TYPE hutch_exec_calls_total counter"
        );
        for (code, count) in lock(&self.exec_answers).iter() {
            let name = format!("{:?}", tonic::Code::from_i32(*code));
            let _ = writeln!(out, "hutch_exec_calls_total{{code=\"{name}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP hutch_ws_requests_total Answers to requests over /ws, with results (ok) or an error.\n\
             # TYPE hutch_ws_requests_total counter"
        );
        for (result, count) in lock(&self.ws_answers).iter() {
            let _ = writeln!(
                out,
                "hutch_ws_requests_total{{result=\"{result}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP hutch_stream_sessions_total Stream sessions over, by API and by how they ended.\n\
             # TYPE hutch_stream_sessions_total counter"
        );
        for ((api, end), count) in lock(&self.stream_sessions).iter() {
            let _ = writeln!(
                out,
                "hutch_stream_sessions_total{{api=\"{api}\",end=\"{end}\"}} {count}"
            );
        }
        let gauges = [
            (
                "hutch_queue_depth",
                "Requests waiting for containers.",
                self.waiting.load(Ordering::Relaxed),
            ),
            (
                "hutch_running_requests",
                "Requests whose commands are running.",
                self.running.load(Ordering::Relaxed),
            ),
            (
                "hutch_containers",
                "Containers the server keeps.",
                containers as u64,
            ),
            (
                "hutch_idle_containers",
                "Containers ready for a command.",
                idle_containers as u64,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP hutch_run_duration_seconds Time to answer /run, gRPC's Exec or a /ws request, from the request's arrival.\n\
             # TYPE hutch_run_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "hutch_run_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let sum = self.latency_sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "hutch_run_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n\
             hutch_run_duration_seconds_sum {sum}\n\
             hutch_run_duration_seconds_count {cumulative}"
        );
        out
    }
}

/// How a stream session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Its programs ran, and the client got their results.
    Ran,
    /// Its request was refused: nothing ran.
    Refused,
    /// The client went away before the results.
    ClientGone,
}

impl StreamEnd {
    fn label(self) -> &'static str {
        match self {
            StreamEnd::Ran => "ran",
            StreamEnd::Refused => "refused",
            StreamEnd::ClientGone => "client gone",
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_and_counts_every_answer() {
        let metrics = Metrics::default();
        metrics.answered(200, Duration::from_micros(700));
        metrics.answered(200, Duration::from_millis(3));
        metrics.answered(503, Duration::from_secs(60));
        metrics.exec_answered(tonic::Code::Unavailable, Duration::from_micros(100));
        metrics.ws_answered(false, Duration::from_millis(20));
        metrics.ws_answered(true, Duration::from_millis(7));
        metrics.ws_answered(false, Duration::from_millis(30));
        metrics.stream_ended("/stream", StreamEnd::Ran);
        metrics.stream_ended("ExecStream", StreamEnd::ClientGone);
        metrics.stream_ended("/stream", StreamEnd::Ran);
        metrics.verdict("Accepted");
        metrics.verdict("Accepted");
        let text = metrics.render(1, 2);
        assert!(
            text.contains("hutch_runs_total{status=\"Accepted\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("hutch_run_requests_total{code=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("hutch_run_requests_total{code=\"503\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("hutch_exec_calls_total{code=\"Unavailable\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("hutch_ws_requests_total{result=\"ok\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("hutch_ws_requests_total{result=\"error\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("hutch_stream_sessions_total{api=\"/stream\",end=\"ran\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "hutch_stream_sessions_total{api=\"ExecStream\",end=\"client gone\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("hutch_run_duration_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("hutch_run_duration_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("hutch_run_duration_seconds_bucket{le=\"0.005\"} 3\n"));
        assert!(text.contains("hutch_run_duration_seconds_bucket{le=\"0.01\"} 4\n"));
        assert!(text.contains("hutch_run_duration_seconds_bucket{le=\"0.025\"} 5\n"));
        assert!(text.contains("hutch_run_duration_seconds_bucket{le=\"10\"} 6\n"));
        assert!(text.contains("hutch_run_duration_seconds_bucket{le=\"+Inf\"} 7\n"));
        assert!(text.contains("hutch_run_duration_seconds_count 7\n"));
        assert!(text.contains("hutch_idle_containers 1\n"));
        assert!(text.contains("hutch_containers 2\n"));
    }
}
