//! Damon's own log (never the child's stdout/stderr): one flat JSON object per line, in the
//! shape the original Damon wrote with logrus (`time`, `level`, `msg`, then the event's
//! fields, then the nomad_* labels), to a file rotated by size with timestamped backups like
//! lumberjack's. The module owns the global tracing subscriber; the rest of damon only uses
//! the tracing macros.

use std::fmt::{self, Write as _};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use file_rotate::compression::Compression;
use file_rotate::suffix::{AppendTimestamp, DateFrom, FileLimit};
use file_rotate::{ContentLimit, FileRotate};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::Registry;

/// Lines below this level are dropped.
const MAX_LEVEL: LevelFilter = LevelFilter::INFO;
/// Suffix of rotated files (`damon.log.2024-05-01T10-00-00`, then `.1`, `.2` within one
/// second); file-rotate forbids `.` in it, so this is lumberjack's layout without millis.
const ROTATED_SUFFIX_FORMAT: &str = "%Y-%m-%dT%H-%M-%S";

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
}

type SharedWriter = Arc<Mutex<Box<dyn Write + Send>>>;

/// A panic while writing must not silence the log for the rest of the run.
fn lock(writer: &SharedWriter) -> MutexGuard<'_, Box<dyn Write + Send>> {
    writer.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps the log alive; dropping it flushes.
pub struct LogGuard {
    writer: SharedWriter,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let _ = lock(&self.writer).flush();
    }
}

/// Installs the global tracing subscriber. Never fails: if the file (or its directory) cannot
/// be opened or created, lines go to stderr instead, and the first line logged says why.
pub fn init(settings: &LogSettings) -> LogGuard {
    match open_rotating(settings) {
        Ok(file) => install(Box::new(file), &settings.labels),
        Err(error) => {
            let guard = install(Box::new(io::stderr()), &settings.labels);
            tracing::warn!(path = %settings.path.display(), error = %error, "cannot open log file, logging to stderr");
            guard
        }
    }
}

fn install(writer: Box<dyn Write + Send>, labels: &[(&'static str, String)]) -> LogGuard {
    let layer = JsonLayer::new(writer, labels);
    let guard = LogGuard { writer: Arc::clone(&layer.writer) };
    // Only the first call can win; a later one (tests) keeps logging where it did.
    let _ = tracing::subscriber::set_global_default(Registry::default().with(MAX_LEVEL).with(layer));
    guard
}

/// Opens (appending: a restarted task keeps its earlier lines) the size-rotated log file.
fn open_rotating(settings: &LogSettings) -> io::Result<FileRotate<AppendTimestamp>> {
    // FileRotate::new panics when the directory cannot be created or listed or the path has no
    // parent or name, and silently drops every line when the file cannot be opened, so all of
    // that is checked here first, on an absolute path.
    let path =
        if settings.path.is_relative() { std::env::current_dir()?.join(&settings.path) } else { settings.path.clone() };
    let dir = match (path.parent(), path.file_name()) {
        (Some(dir), Some(_)) => dir,
        _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "the log path has no file name")),
    };
    fs::create_dir_all(dir)?;
    fs::read_dir(dir)?;
    OpenOptions::new().create(true).append(true).open(&path)?;
    // BytesSurpassed rotates between writes, and each line is one write, so no line is split.
    let max_size_bytes = usize::try_from(settings.max_size_bytes).unwrap_or(usize::MAX).max(1);
    let file_limit = match settings.max_files {
        0 => FileLimit::Unlimited,
        n => FileLimit::MaxFiles(n),
    };
    let suffix = AppendTimestamp::with_format(ROTATED_SUFFIX_FORMAT, file_limit, DateFrom::Now);
    Ok(FileRotate::new(
        &path,
        suffix,
        ContentLimit::BytesSurpassed(max_size_bytes),
        Compression::None,
        #[cfg(unix)]
        None,
    ))
}

/// Formats each event as one JSON line and writes it whole; spans are ignored.
pub struct JsonLayer {
    writer: SharedWriter,
    /// `,"label":"value"` for every label, rendered once.
    labels_json: String,
}

impl JsonLayer {
    pub fn new(writer: Box<dyn Write + Send>, labels: &[(&'static str, String)]) -> Self {
        let mut labels_json = String::new();
        for (name, value) in labels {
            labels_json.push(',');
            push_json_str(&mut labels_json, name);
            labels_json.push(':');
            push_json_str(&mut labels_json, value);
        }
        JsonLayer { writer: Arc::new(Mutex::new(writer)), labels_json }
    }

    fn format_line(&self, event: &Event<'_>) -> String {
        let mut visitor = LineVisitor::default();
        event.record(&mut visitor);
        let time = humantime::format_rfc3339_millis(SystemTime::now());
        let mut line = String::with_capacity(64 + visitor.msg.len() + visitor.fields.len() + self.labels_json.len());
        let _ = write!(line, "{{\"time\":\"{}\",\"level\":\"{}\",\"msg\":", time, level_name(event.metadata().level()));
        push_json_str(&mut line, &visitor.msg);
        line.push_str(&visitor.fields);
        line.push_str(&self.labels_json);
        line.push_str("}\n");
        line
    }
}

impl<S: Subscriber> Layer<S> for JsonLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let line = self.format_line(event);
        // One write_all under the lock: lines from several threads never interleave.
        if lock(&self.writer).write_all(line.as_bytes()).is_err() {
            // A full disk or a vanished directory must neither stop damon nor lose the line.
            let _ = io::stderr().write_all(line.as_bytes());
        }
    }
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
            // logrus renames fields that clash with its own keys the same way.
            name @ ("time" | "level" | "msg") => push_json_str(&mut self.fields, &format!("fields.{}", name)),
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
        } else {
            self.push_key(field);
            push_json_str(&mut self.fields, &format!("{:?}", value));
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
    use std::path::Path;

    /// Collects what the layer writes, for reading back.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn with_layer(writer: Box<dyn Write + Send>, labels: &[(&'static str, String)], f: impl FnOnce()) {
        let subscriber = Registry::default().with(MAX_LEVEL).with(JsonLayer::new(writer, labels));
        tracing::subscriber::with_default(subscriber, f);
    }

    fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("damon-logging-{}-{}", std::process::id(), name));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn settings(path: PathBuf, max_size_bytes: u64, max_files: usize) -> LogSettings {
        LogSettings { path, max_size_bytes, max_files, labels: vec![("nomad_task_name", "web".to_string())] }
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
        with_layer(Box::new(capture.clone()), &labels, || {
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
        let out = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.split_inclusive('\n').collect();
        assert_eq!(lines.len(), 2, "{}", out);
        assert_eq!(
            after_time(lines[0]),
            concat!(
                r#"","level":"info","msg":"hello \"world\"","text":"a\"b\\c\nd\te\u0001\bé","n":42,"neg":-7,"#,
                r#""ok":true,"ratio":0.5,"nan":null,"shown":"x y","dbg":"Some(\"q\")","fields.time":"clash","#,
                r#""nomad_task_name":"w\"eb","nomad_alloc_index":"0"}"#,
                "\n"
            )
        );
        assert_eq!(
            after_time(lines[1]),
            "\",\"level\":\"warn\",\"msg\":\"plain\",\"nomad_task_name\":\"w\\\"eb\",\"nomad_alloc_index\":\"0\"}\n"
        );
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
        let writer = open_rotating(&settings(path.clone(), max_size_bytes, 2)).unwrap();
        with_layer(Box::new(writer), &[], || tracing::info!(i = 0u64, "first"));
        let content = fs::read_to_string(&path).unwrap();
        assert!(content.starts_with("{\"earlier\":true}\n{\"time\""), "{}", content);
        assert!(rotated(&dir).is_empty());

        let writer = open_rotating(&settings(path.clone(), max_size_bytes, 2)).unwrap();
        with_layer(Box::new(writer), &[], || {
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

    #[test]
    fn unusable_directory_falls_back_to_stderr() {
        let dir = fresh_dir("fallback");
        let blocker = dir.join("blocker");
        fs::write(&blocker, "a regular file").unwrap();
        let bad = settings(blocker.join("sub").join("damon.log"), 1000, 1);
        assert!(open_rotating(&bad).is_err());
        assert!(open_rotating(&settings(dir.clone(), 1000, 1)).is_err(), "a directory is not a log file");
        // Installs the process-wide subscriber (stderr); other tests use scoped ones.
        let guard = init(&bad);
        tracing::info!("after fallback");
        drop(guard);
        let _ = fs::remove_dir_all(&dir);
    }
}
