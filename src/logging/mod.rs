//! Damon's own log (never the child's stdout/stderr): one flat JSON object per line, with the
//! keys the original Damon wrote with zerolog (`time`, `level`, `message`, then the event's
//! fields, then the nomad_* labels), to a file rotated by size with timestamped backups like
//! lumberjack's ([`rotate`]). A field named `json.NAME` is written under NAME as the JSON its
//! value already is (an array, an object: see [`json_array`], [`json_object`]). The module owns the global tracing subscriber; the rest of damon
//! only uses the tracing macros.
//!
//! A logging problem never touches the workload: nothing here panics or ends damon (a panic
//! aborts damon, and the workload dies with it). A line that cannot be written (full disk,
//! read-only or vanished directory, stderr gone) is counted in [`lines_lost`] (the metric
//! damon_log_lines_lost_total); the first loss of an outage is said once on stderr, and the
//! next line that can be written is preceded by one saying how many were lost since when, in
//! the log and on stderr. Nothing is buffered: each line is one write, so every line damon
//! wrote is in the file even if damon is killed.

mod rotate;
mod time;

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use self::rotate::{Note, RotatingFile};
pub use self::time::rfc3339_millis;
use crate::platform::PathError;

/// Lines below this level are dropped.
const MAX_LEVEL: LevelFilter = LevelFilter::INFO;

/// Lines of the installed log that could not be written, since damon started.
static LINES_LOST: AtomicU64 = AtomicU64::new(0);

/// How many log lines could not be written so far (damon_log_lines_lost_total).
pub fn lines_lost() -> u64 {
    LINES_LOST.load(Ordering::Relaxed)
}

/// Writes `damon: MESSAGE` as one line on stderr and ignores a failure: stderr may be closed
/// or a pipe whose reader is gone (Nomad's logmon), where `eprintln!` would panic.
pub fn stderr_line(message: &str) {
    let mut line = String::with_capacity(message.len() + 8);
    line.push_str("damon: ");
    line.push_str(message);
    line.push('\n');
    let _ = io::stderr().write_all(line.as_bytes());
}

/// Where and how damon writes its log; built by the config module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Full file path (dir + name), already resolved by config.
    pub path: PathBuf,
    /// A file is rotated before the first write after it has passed this size, so it holds
    /// at most this plus one line (lines are never split across files).
    pub max_size_bytes: u64,
    /// Rotated files kept; older ones are deleted. 0 keeps them all, as lumberjack's MaxBackups.
    pub max_files: usize,
    /// nomad_* fields put on every line, e.g. ("nomad_task_name", "web").
    pub labels: Vec<(&'static str, String)>,
    /// Directories the workload may write whatever their mode says (the sandbox's write
    /// rules): no link is followed in or below them on the way to the log.
    pub workload_dirs: Vec<PathBuf>,
}

/// Where lines go.
enum Sink {
    File(Box<RotatingFile>),
    /// stderr when the file could not be opened at start (or a test's writer).
    Stream(Box<dyn Write + Send>),
}

impl Sink {
    /// Readies the sink for a line at `now`; an error means the line cannot be written there.
    fn prepare(&mut self, now: SystemTime) -> Result<Vec<Note>, PathError> {
        match self {
            Sink::File(file) => file.prepare(now),
            Sink::Stream(_) => Ok(Vec::new()),
        }
    }

    fn append(&mut self, line: &[u8]) -> Result<(), String> {
        match self {
            Sink::File(file) => file.append(line).map_err(|e| e.to_string()),
            Sink::Stream(stream) => {
                stream.write_all(line).map_err(|e| format!("cannot write its log to stderr: {}", e))
            }
        }
    }

    fn flush(&mut self) {
        if let Sink::Stream(stream) = self {
            let _ = stream.flush();
        }
    }

    fn name(&self) -> String {
        match self {
            Sink::File(file) => file.path().display().to_string(),
            Sink::Stream(_) => "stderr".to_string(),
        }
    }
}

/// The sink and what the subscriber knows of its health; one lock, so lines never interleave.
struct Output {
    sink: Sink,
    /// Where an outage and its end are said: stderr (a buffer in unit tests).
    notices: Box<dyn Write + Send>,
    /// Where lines go once something damon did not make stands at the log's path: stderr
    /// (a buffer in unit tests); taken when used.
    fallback: Option<Box<dyn Write + Send>>,
    /// Set while lines are being lost.
    outage: Option<Outage>,
}

struct Outage {
    since: SystemTime,
    lines: u64,
    /// The first error of the outage.
    error: String,
}

type SharedOutput = Arc<Mutex<Output>>;

/// A panic while writing must not silence the log for the rest of the run.
fn lock(output: &SharedOutput) -> MutexGuard<'_, Output> {
    output.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps the log alive; dropping it flushes.
pub struct LogGuard {
    output: SharedOutput,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        lock(&self.output).sink.flush();
    }
}

/// Installs the global tracing subscriber. Never fails: if the file (or its directory) cannot
/// be opened or created, lines go to stderr instead, and the first line logged says why.
pub fn init(settings: &LogSettings) -> LogGuard {
    match RotatingFile::open(&settings.path, settings.max_size_bytes, settings.max_files, &settings.workload_dirs) {
        Ok(file) => install(Sink::File(Box::new(file)), &settings.labels),
        Err(error) => {
            if let PathError::Planted { .. } = error {
                stderr_line(&format!("{}; its log goes to stderr", error));
            }
            let guard = install(Sink::Stream(Box::new(io::stderr())), &settings.labels);
            tracing::warn!(path = %settings.path.display(), error = %error, "cannot open log file, logging to stderr");
            guard
        }
    }
}

fn install(sink: Sink, labels: &[(&'static str, String)]) -> LogGuard {
    let subscriber = JsonSubscriber::new(sink, Box::new(io::stderr()), Box::new(io::stderr()), labels, &LINES_LOST);
    let guard = LogGuard { output: Arc::clone(&subscriber.output) };
    // Only the first call can win; a later one (tests) keeps logging where it did.
    let _ = tracing::subscriber::set_global_default(subscriber);
    guard
}

/// The global subscriber: formats each event as one JSON line and writes it whole. damon makes
/// no span (nor does any crate it uses), so spans are only given an id and otherwise ignored:
/// tracing-subscriber's registry, which keeps them, cost every launch 32 KiB of zeroed pages.
pub struct JsonSubscriber {
    output: SharedOutput,
    /// `,"label":"value"` for every label, rendered once.
    labels_json: String,
    /// Counts the lines that could not be written.
    lost: &'static AtomicU64,
}

impl JsonSubscriber {
    fn new(
        sink: Sink,
        notices: Box<dyn Write + Send>,
        fallback: Box<dyn Write + Send>,
        labels: &[(&'static str, String)],
        lost: &'static AtomicU64,
    ) -> Self {
        let mut labels_json = String::new();
        for (name, value) in labels {
            push_field_str(&mut labels_json, name, value);
        }
        let output = Output { sink, notices, fallback: Some(fallback), outage: None };
        JsonSubscriber { output: Arc::new(Mutex::new(output)), labels_json, lost }
    }

    fn format_line(&self, event: &Event<'_>, now: SystemTime) -> String {
        let mut visitor = LineVisitor::default();
        event.record(&mut visitor);
        self.render(now, level_name(event.metadata().level()), &visitor.msg, &visitor.fields)
    }

    /// One line: time, level, message, `fields` (as `,"name":value`), then the labels.
    fn render(&self, now: SystemTime, level: &str, msg: &str, fields: &str) -> String {
        let mut line = String::with_capacity(64 + msg.len() + fields.len() + self.labels_json.len());
        line.push_str("{\"time\":\"");
        line.push_str(&time::rfc3339_millis(now));
        line.push_str("\",\"level\":\"");
        line.push_str(level);
        line.push_str("\",\"message\":");
        push_json_str(&mut line, msg);
        line.push_str(fields);
        line.push_str(&self.labels_json);
        line.push_str("}\n");
        line
    }

    /// The line telling what the writer found out while preparing.
    fn note_line(&self, note: &Note, path: &str, now: SystemTime) -> String {
        let mut fields = String::new();
        let msg = match note {
            Note::Restarted => {
                push_field_str(&mut fields, "path", path);
                "the log file had vanished from its path (removed, moved, or its directory hidden): opened again there"
            }
            Note::CannotRotate(error) => {
                push_field_str(&mut fields, "error", &error.to_string());
                "cannot rotate the log: writing on past its size limit"
            }
            Note::CannotDelete(error) => {
                push_field_str(&mut fields, "error", &error.to_string());
                "cannot delete an old rotated log file"
            }
            Note::Skipped(error) => {
                push_field_str(&mut fields, "error", &error.to_string());
                "a rotated name was skipped: something damon did not make stands there"
            }
        };
        self.render(now, "warn", msg, &fields)
    }

    /// Writes `line` (with what the sink has to report, and the end of an outage first), or
    /// counts it as lost. Never fails, never panics.
    fn deliver(&self, output: &mut Output, line: &str, now: SystemTime) {
        let notes = match output.sink.prepare(now) {
            Ok(notes) => notes,
            Err(error @ PathError::Planted { .. }) => {
                self.leave_the_file(output, &error, now);
                Vec::new()
            }
            Err(error) => return self.lose(output, error.to_string(), now),
        };
        if let Some(outage) = &output.outage {
            let mut fields = String::new();
            push_field_u64(&mut fields, "lines_lost", outage.lines);
            push_field_str(&mut fields, "since", &time::rfc3339_millis(outage.since));
            push_field_str(&mut fields, "error", &outage.error);
            let recovered = self.render(now, "warn", "log lines were lost: the log could not be written", &fields);
            let said = format!(
                "damon: its log is written to {} again; {} lines were lost since {}\n",
                output.sink.name(),
                outage.lines,
                time::rfc3339_millis(outage.since)
            );
            if let Err(error) = output.sink.append(recovered.as_bytes()) {
                return self.lose(output, error, now);
            }
            output.outage = None;
            let _ = output.notices.write_all(said.as_bytes());
        }
        for note in &notes {
            if let Note::Skipped(error) = note {
                let _ = output.notices.write_all(format!("damon: {}\n", error).as_bytes());
            }
            let line = self.note_line(note, &output.sink.name(), now);
            if let Err(error) = output.sink.append(line.as_bytes()) {
                self.lose(output, error, now);
            }
        }
        if let Err(error) = output.sink.append(line.as_bytes()) {
            self.lose(output, error, now);
        }
    }

    /// Something damon did not make stands at the log's path (the workload may write the log's
    /// directory): the file is left for stderr for the rest of the run, which is said there
    /// once, in words and as a log line. stderr is Nomad's task log: the workload cannot plant
    /// anything there, and the operator reads it where the task's other output is.
    fn leave_the_file(&self, output: &mut Output, error: &PathError, now: SystemTime) {
        let said = format!("damon: {}; its log goes to stderr from now on\n", error);
        let _ = output.notices.write_all(said.as_bytes());
        if let Some(stream) = output.fallback.take() {
            output.sink = Sink::Stream(stream);
        }
        let mut fields = String::new();
        push_field_str(&mut fields, "error", &error.to_string());
        let line =
            self.render(now, "warn", "the log file was left: something damon did not make stands at its path", &fields);
        if let Err(error) = output.sink.append(line.as_bytes()) {
            self.lose(output, error, now);
        }
    }

    /// Counts a line that could not be written; says so on stderr once per outage.
    fn lose(&self, output: &mut Output, error: String, now: SystemTime) {
        self.lost.fetch_add(1, Ordering::Relaxed);
        match &mut output.outage {
            Some(outage) => outage.lines += 1,
            None => {
                let said = format!(
                    "damon: {}; its log lines are lost until it can write again (counted in damon_log_lines_lost_total)\n",
                    error
                );
                let _ = output.notices.write_all(said.as_bytes());
                output.outage = Some(Outage { since: now, lines: 1, error });
            }
        }
    }
}

impl Subscriber for JsonSubscriber {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= &MAX_LEVEL
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(MAX_LEVEL)
    }

    fn event(&self, event: &Event<'_>) {
        let now = SystemTime::now();
        let line = self.format_line(event, now);
        // Under one lock: lines from several threads never interleave.
        self.deliver(&mut lock(&self.output), &line, now);
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // Any id but 0, which tracing reserves.
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        _ => "trace",
    }
}

/// A field whose name starts with this holds JSON (made by [`json_array`] or [`json_object`]),
/// written as it is under the rest of its name.
const RAW_JSON_PREFIX: &str = "json.";

/// `["a","b"]`: strings as a JSON array, for a `json.NAME` field (the original's `cmdline`).
pub fn json_array<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, item);
    }
    out.push(']');
    out
}

/// `{"k":"v",...}`: string members as a JSON object, for a `json.NAME` field (the original's
/// `version`).
pub fn json_object<'a>(members: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, key);
        out.push(':');
        push_json_str(&mut out, value);
    }
    out.push('}');
    out
}

/// Collects the message and the other fields (as `,"name":value`, in the order given).
#[derive(Default)]
struct LineVisitor {
    msg: String,
    fields: String,
}

impl LineVisitor {
    fn push_key(&mut self, field: &Field) {
        self.fields.push(',');
        match field.name() {
            // A field named like one of the line's own keys gets the "fields." prefix, as logrus
            // (the original's logger) prefixes its clashes (fields.time, fields.level, fields.msg).
            name @ ("time" | "level" | "message") => push_json_str(&mut self.fields, &format!("fields.{}", name)),
            name => push_json_str(&mut self.fields, name),
        }
        self.fields.push(':');
    }

    /// For values whose Display is already valid JSON.
    fn push_raw(&mut self, field: &Field, value: &dyn fmt::Display) {
        self.push_key(field);
        let _ = write!(self.fields, "{}", value);
    }
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg.push_str(value);
        } else {
            self.push_key(field);
            push_json_str(&mut self.fields, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.msg, "{:?}", value);
        } else if let Some(name) = field.name().strip_prefix(RAW_JSON_PREFIX) {
            self.fields.push(',');
            push_json_str(&mut self.fields, name);
            self.fields.push(':');
            let _ = write!(self.fields, "{:?}", value);
        } else {
            self.push_key(field);
            // write!, not format!: a Debug or Display that fails must not panic here.
            let mut text = String::new();
            let _ = write!(text, "{:?}", value);
            push_json_str(&mut self.fields, &text);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push_raw(field, &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push_raw(field, &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push_raw(field, &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity; Display of a finite f64 is a valid JSON number.
        if value.is_finite() {
            self.push_raw(field, &value);
        } else {
            self.push_raw(field, &"null");
        }
    }
}

/// Appends `,"name":"value"`.
fn push_field_str(out: &mut String, name: &str, value: &str) {
    out.push(',');
    push_json_str(out, name);
    out.push(':');
    push_json_str(out, value);
}

/// Appends `,"name":value`.
fn push_field_u64(out: &mut String, name: &str, value: u64) {
    out.push(',');
    push_json_str(out, name);
    let _ = write!(out, ":{}", value);
}

/// Appends `s` as a quoted JSON string, escaping what RFC 8259 requires.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;
    use std::sync::atomic::AtomicBool;

    /// Collects what is written, for reading back; fails while `failing` is set.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>, Arc<AtomicBool>);

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
        fn fail(&self, failing: bool) {
            self.1.store(failing, Ordering::SeqCst);
        }
    }

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.1.load(Ordering::SeqCst) {
                return Err(io::Error::new(io::ErrorKind::Other, "no space left (test)"));
            }
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A counter of its own, so that tests running in parallel do not share one.
    fn counter() -> &'static AtomicU64 {
        Box::leak(Box::new(AtomicU64::new(0)))
    }

    fn with_sink(sink: Sink, notices: Capture, labels: &[(&'static str, String)], f: impl FnOnce()) {
        let subscriber = JsonSubscriber::new(sink, Box::new(notices), Box::new(Capture::default()), labels, counter());
        tracing::subscriber::with_default(subscriber, f);
    }

    fn with_stream(writer: Box<dyn Write + Send>, labels: &[(&'static str, String)], f: impl FnOnce()) {
        with_sink(Sink::Stream(writer), Capture::default(), labels, f)
    }

    fn open_file(settings: &LogSettings) -> Sink {
        Sink::File(Box::new(
            RotatingFile::open(&settings.path, settings.max_size_bytes, settings.max_files, &[]).unwrap(),
        ))
    }

    fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("damon-logging-{}-{}", std::process::id(), name));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn settings(path: PathBuf, max_size_bytes: u64, max_files: usize) -> LogSettings {
        let labels = vec![("nomad_task_name", "web".to_string())];
        LogSettings { path, max_size_bytes, max_files, labels, workload_dirs: Vec::new() }
    }

    /// Checks the time prefix and returns the rest of the line after it.
    fn after_time(line: &str) -> &str {
        assert!(line.starts_with("{\"time\":\""), "{}", line);
        let time = &line[9..33];
        assert!(time.ends_with('Z') && humantime::parse_rfc3339(time).is_ok(), "{}", line);
        &line[33..]
    }

    #[test]
    fn line_shape_and_escaping() {
        let capture = Capture::default();
        let labels = [("nomad_task_name", "w\"eb".to_string()), ("nomad_alloc_index", "0".to_string())];
        with_stream(Box::new(capture.clone()), &labels, || {
            tracing::info!(
                text = "a\"b\\c\nd\te\u{1}\u{8}é",
                n = 42u64,
                neg = -7i64,
                ok = true,
                ratio = 0.5f64,
                nan = f64::NAN,
                shown = %"x y",
                dbg = ?Some("q"),
                time = "clash",
                "hello \"{}\"", "world"
            );
            tracing::debug!("filtered out");
            tracing::warn!(message = "plain");
        });
        let out = capture.text();
        let lines: Vec<&str> = out.split_inclusive('\n').collect();
        assert_eq!(lines.len(), 2, "{}", out);
        assert_eq!(
            after_time(lines[0]),
            concat!(
                r#"","level":"info","message":"hello \"world\"","text":"a\"b\\c\nd\te\u0001\bé","n":42,"neg":-7,"#,
                r#""ok":true,"ratio":0.5,"nan":null,"shown":"x y","dbg":"Some(\"q\")","fields.time":"clash","#,
                r#""nomad_task_name":"w\"eb","nomad_alloc_index":"0"}"#,
                "\n"
            )
        );
        assert_eq!(
            after_time(lines[1]),
            "\",\"level\":\"warn\",\"message\":\"plain\",\"nomad_task_name\":\"w\\\"eb\",\"nomad_alloc_index\":\"0\"}\n"
        );
    }

    /// A Display that fails (as humantime's RFC 3339 does after 9999) costs its field, not damon.
    #[test]
    fn a_failing_display_does_not_panic() {
        struct Failing;
        impl fmt::Display for Failing {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                Err(fmt::Error)
            }
        }
        let capture = Capture::default();
        with_stream(Box::new(capture.clone()), &[], || tracing::info!(bad = %Failing, "still logged"));
        assert!(capture.text().contains("\"message\":\"still logged\",\"bad\":\"\"}"), "{}", capture.text());
    }

    /// An outage is said once, each lost line counted, and its end said in the log and on stderr.
    #[test]
    fn lost_lines_are_counted_and_said_once_per_outage() {
        let (sink, notices) = (Capture::default(), Capture::default());
        let lost = counter();
        let subscriber = JsonSubscriber::new(
            Sink::Stream(Box::new(sink.clone())),
            Box::new(notices.clone()),
            Box::new(Capture::default()),
            &[],
            lost,
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(i = 1u64, "written");
            sink.fail(true);
            for i in 0..5u64 {
                tracing::info!(i, "lost");
            }
            assert_eq!(notices.text().matches("its log lines are lost").count(), 1, "{}", notices.text());
            sink.fail(false);
            tracing::info!(i = 2u64, "written");
            sink.fail(true);
            tracing::error!("lost again");
            sink.fail(false);
            tracing::info!(i = 3u64, "written");
        });
        assert_eq!(lost.load(Ordering::SeqCst), 6);
        let text = sink.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{}", text);
        assert!(lines[0].contains("\"message\":\"written\",\"i\":1"), "{}", text);
        assert!(lines[1].contains("\"level\":\"warn\",\"message\":\"log lines were lost: the log could not be written\",\"lines_lost\":5,\"since\":\""), "{}", text);
        assert!(lines[1].contains("\"error\":\"cannot write its log to stderr: no space left (test)\""), "{}", text);
        assert!(lines[2].contains("\"message\":\"written\",\"i\":2"), "{}", text);
        assert!(lines[3].contains("\"lines_lost\":1,"), "{}", text);
        assert!(lines[4].contains("\"message\":\"written\",\"i\":3"), "{}", text);
        let said = notices.text();
        assert_eq!(said.matches("its log lines are lost until it can write again").count(), 2, "{}", said);
        assert!(said.contains("damon: its log is written to stderr again; 5 lines were lost since "), "{}", said);
        assert!(said.contains("again; 1 lines were lost since "), "{}", said);
        assert_eq!(said.lines().count(), 4, "{}", said);
    }

    fn rotated(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.retain(|p| p.file_name().unwrap().to_string_lossy().starts_with("damon.log."));
        files
    }

    #[test]
    fn appends_then_rotates_at_the_limit_keeping_max_files() {
        let dir = fresh_dir("rotate");
        let path = dir.join("damon.log");
        fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let max_size_bytes = 400;
        let sink = open_file(&settings(path.clone(), max_size_bytes, 2));
        with_sink(sink, Capture::default(), &[], || tracing::info!(i = 0u64, "first"));
        let content = fs::read_to_string(&path).unwrap();
        assert!(content.starts_with("{\"earlier\":true}\n{\"time\""), "{}", content);
        assert!(rotated(&dir).is_empty());

        let sink = open_file(&settings(path.clone(), max_size_bytes, 2));
        with_sink(sink, Capture::default(), &[], || {
            for i in 1..40u64 {
                tracing::info!(i, padding = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "line");
            }
        });
        let files = rotated(&dir);
        assert_eq!(files.len(), 2, "{:?}", files);
        for file in files.iter().chain(Some(&path)) {
            let content = fs::read_to_string(file).unwrap();
            // Rotation happens once a file has passed the limit, before the next line.
            let last_line_bytes = content.lines().last().map_or(0, |l| l.len() + 1);
            assert!((content.len() - last_line_bytes) as u64 <= max_size_bytes, "{:?}: {}", file, content.len());
            if file != &path {
                assert!(content.len() as u64 > max_size_bytes, "{:?}: {}", file, content.len());
            }
            // Every file holds whole lines only.
            assert!(content.ends_with("}\n"), "{:?}", file);
            assert!(content.lines().all(|l| l.starts_with("{\"time\":") && l.ends_with('}')), "{:?}", file);
        }
        assert!(fs::read_to_string(&path).unwrap().contains("\"i\":39,"));
        let _ = fs::remove_dir_all(&dir);
    }

    /// The directory removed while damon runs: the next line makes it again, says so, and
    /// nothing is lost. (Unix: Windows cannot remove a directory holding an open file.)
    #[cfg(unix)]
    #[test]
    fn a_removed_directory_comes_back_with_the_next_line() {
        let dir = fresh_dir("removed");
        let path = dir.join("logs").join("damon.log");
        let (notices, lost) = (Capture::default(), counter());
        let subscriber = JsonSubscriber::new(
            open_file(&settings(path.clone(), 1000, 2)),
            Box::new(notices.clone()),
            Box::new(Capture::default()),
            &[],
            lost,
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before");
            fs::remove_dir_all(dir.join("logs")).unwrap();
            tracing::info!("after");
        });
        let content = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = content.lines().collect();
        assert_eq!(lines.len(), 2, "{}", content);
        assert!(lines[0].contains("\"message\":\"the log file had vanished from its path"), "{}", content);
        assert!(lines[1].contains("\"message\":\"after\""), "{}", content);
        assert_eq!((lost.load(Ordering::SeqCst), notices.text()), (0, String::new()));
        let _ = fs::remove_dir_all(&dir);
    }

    /// Something planted at the log's path while damon runs (the workload may write the
    /// directory): nothing is written through it, the log goes on on stderr, said once.
    #[cfg(unix)]
    #[test]
    fn a_link_planted_at_the_log_path_sends_the_log_to_stderr() {
        let dir = fresh_dir("planted");
        let path = dir.join("damon.log");
        let canary = dir.join("canary");
        fs::write(&canary, "canary\n").unwrap();
        let (notices, fallback, lost) = (Capture::default(), Capture::default(), counter());
        let sink = open_file(&settings(path.clone(), 1000, 2));
        let subscriber = JsonSubscriber::new(sink, Box::new(notices.clone()), Box::new(fallback.clone()), &[], lost);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before");
            fs::remove_file(&path).unwrap();
            std::os::unix::fs::symlink(&canary, &path).unwrap();
            tracing::info!("after");
            tracing::info!("again");
        });
        assert_eq!(fs::read_to_string(&canary).unwrap(), "canary\n");
        let said = notices.text();
        let found = format!("found a symbolic link to {} at {}", canary.display(), path.display());
        assert!(said.starts_with(&format!("damon: {}, which damon did not make", found)), "{}", said);
        assert!(said.ends_with("; its log goes to stderr from now on\n") && said.lines().count() == 1, "{}", said);
        let stderr = fallback.text();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 3, "{}", stderr);
        assert!(lines[0].contains("\"level\":\"warn\",\"message\":\"the log file was left: something damon did not make stands at its path\""), "{}", stderr);
        assert!(lines[0].contains(&found), "{}", stderr);
        assert!(lines[1].contains("\"message\":\"after\"") && lines[2].contains("\"message\":\"again\""), "{}", stderr);
        assert_eq!(lost.load(Ordering::SeqCst), 0);
        let _ = fs::remove_dir_all(&dir);
    }

    /// A link at the next rotated name: the name is skipped, said once, nothing written there.
    #[cfg(unix)]
    #[test]
    fn a_link_at_a_rotated_name_is_skipped_and_said() {
        let dir = fresh_dir("planted-rotated");
        let path = dir.join("damon.log");
        let canary = dir.join("canary");
        fs::write(&canary, "canary\n").unwrap();
        let suffix = time::rotated_suffix(SystemTime::now());
        // This second's and the next one's first names.
        let next = time::rotated_suffix(SystemTime::now() + std::time::Duration::from_secs(1));
        for taken in [&suffix, &next] {
            std::os::unix::fs::symlink(&canary, dir.join(format!("damon.log.{}", taken))).unwrap();
        }
        let (notices, lost) = (Capture::default(), counter());
        let sink = open_file(&settings(path.clone(), 10, 0));
        let subscriber = JsonSubscriber::new(sink, Box::new(notices.clone()), Box::new(Capture::default()), &[], lost);
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..3u64 {
                tracing::info!(i, "past the size at once");
            }
        });
        assert_eq!(fs::read_to_string(&canary).unwrap(), "canary\n");
        let said = notices.text();
        assert!(said.lines().count() >= 1 && said.lines().all(|l| l.contains("which damon did not make")), "{}", said);
        // The note is in the file written after the rotation that skipped the name.
        let content: String = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !fs::symlink_metadata(p).unwrap().file_type().is_symlink())
            .map(|p| fs::read_to_string(p).unwrap())
            .collect();
        assert!(
            content.contains("\"message\":\"a rotated name was skipped: something damon did not make stands there\""),
            "{}",
            content
        );
        assert!(fs::symlink_metadata(dir.join(format!("damon.log.{}", suffix))).unwrap().file_type().is_symlink());
        assert_eq!(lost.load(Ordering::SeqCst), 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn unusable_directory_falls_back_to_stderr() {
        let dir = fresh_dir("fallback");
        let blocker = dir.join("blocker");
        fs::write(&blocker, "a regular file").unwrap();
        let bad = settings(blocker.join("sub").join("damon.log"), 1000, 1);
        // Installs the process-wide subscriber (stderr); other tests use scoped ones.
        let guard = init(&bad);
        tracing::info!("after fallback");
        drop(guard);
        let _ = fs::remove_dir_all(&dir);
    }
}
