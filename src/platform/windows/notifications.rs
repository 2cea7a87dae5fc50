//! The job's notifications: one thread blocks on an I/O completion port bound to the job and
//! counts what Windows reports (limit notifications by kind, memory limit hits, processes
//! started and ended), logging what an operator needs to know.

use std::io;
use std::os::windows::io::OwnedHandle;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use windows_sys::Win32::System::JobObjects::{
    JOB_OBJECT_LIMIT_CPU_RATE_CONTROL, JOB_OBJECT_LIMIT_IO_RATE_CONTROL, JOB_OBJECT_LIMIT_JOB_MEMORY,
    JOB_OBJECT_LIMIT_JOB_READ_BYTES, JOB_OBJECT_LIMIT_JOB_WRITE_BYTES,
};
use windows_sys::Win32::System::SystemServices::{
    JOB_OBJECT_MSG_ABNORMAL_EXIT_PROCESS, JOB_OBJECT_MSG_ACTIVE_PROCESS_LIMIT, JOB_OBJECT_MSG_ACTIVE_PROCESS_ZERO,
    JOB_OBJECT_MSG_EXIT_PROCESS, JOB_OBJECT_MSG_JOB_MEMORY_LIMIT, JOB_OBJECT_MSG_NEW_PROCESS,
    JOB_OBJECT_MSG_NOTIFICATION_LIMIT, JOB_OBJECT_MSG_PROCESS_MEMORY_LIMIT,
};

use super::ffi;
use super::job::JobObject;

/// Tags packets from the job; anything else on the port is damon's own stop request.
const JOB_KEY: usize = 1;
const STOP_KEY: usize = 2;

/// What the notification thread has counted so far.
#[derive(Default)]
pub struct Counters {
    pub cpu_notifications: AtomicU64,
    pub memory_notifications: AtomicU64,
    pub io_notifications: AtomicU64,
    /// The job's hard memory limit refused an allocation.
    pub memory_limit_hits: AtomicU64,
    /// The job's active process limit refused a new process.
    pub process_limit_hits: AtomicU64,
    pub processes_started: AtomicU64,
    pub processes_ended: AtomicU64,
}

pub struct Notifications {
    port: Arc<OwnedHandle>,
    thread: Option<JoinHandle<()>>,
    pub counters: Arc<Counters>,
    /// Signalled each time the job's last process has ended (JOB_OBJECT_MSG_ACTIVE_PROCESS_ZERO).
    pub emptied: Arc<OwnedHandle>,
}

impl Notifications {
    /// Binds a new port to the job and starts the thread that reads it.
    pub fn start(job: Arc<JobObject>, limits: ReportedLimits) -> io::Result<Notifications> {
        let port = Arc::new(ffi::create_completion_port()?);
        job.notify_port(&port, JOB_KEY)?;
        let counters = Arc::new(Counters::default());
        let emptied = Arc::new(ffi::create_event()?);
        let (thread_port, thread_counters, thread_emptied) =
            (Arc::clone(&port), Arc::clone(&counters), Arc::clone(&emptied));
        let thread = std::thread::Builder::new()
            .name("job-notifications".to_string())
            .spawn(move || read_port(&thread_port, &job, &thread_counters, &thread_emptied, limits))?;
        Ok(Notifications { port, thread: Some(thread), counters, emptied })
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        if ffi::post_completion(&self.port, 0, STOP_KEY).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// The limits the log lines name.
#[derive(Debug, Clone, Copy)]
pub struct ReportedLimits {
    pub memory_limit_mib: u64,
    pub process_limit: u64,
}

fn read_port(port: &OwnedHandle, job: &JobObject, counters: &Counters, emptied: &OwnedHandle, limits: ReportedLimits) {
    loop {
        let packet = match ffi::next_completion(port) {
            Ok(packet) => packet,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the job's notifications");
                return;
            }
        };
        if packet.key == STOP_KEY {
            return;
        }
        let pid = packet.process_id;
        match packet.message {
            JOB_OBJECT_MSG_NEW_PROCESS => {
                counters.processes_started.fetch_add(1, Ordering::Relaxed);
            }
            JOB_OBJECT_MSG_EXIT_PROCESS => {
                counters.processes_ended.fetch_add(1, Ordering::Relaxed);
            }
            JOB_OBJECT_MSG_ABNORMAL_EXIT_PROCESS => {
                counters.processes_ended.fetch_add(1, Ordering::Relaxed);
                let exit_code = ffi::exit_code_of(pid as u32).map(|code| format!("{:#x}", code));
                tracing::warn!(pid, exit_code, "a process of the workload ended abnormally");
            }
            JOB_OBJECT_MSG_JOB_MEMORY_LIMIT | JOB_OBJECT_MSG_PROCESS_MEMORY_LIMIT => {
                counters.memory_limit_hits.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    pid,
                    "memory limit of {} MiB exceeded: process {} was refused memory by the job",
                    limits.memory_limit_mib,
                    pid
                );
            }
            JOB_OBJECT_MSG_ACTIVE_PROCESS_LIMIT => {
                // A fork bomb sends one per refusal: the first is logged, the rest counted.
                let earlier_refusals = counters.process_limit_hits.fetch_add(1, Ordering::Relaxed);
                if earlier_refusals == 0 {
                    tracing::error!(
                        process_limit = limits.process_limit,
                        "process limit of {} reached: the job refuses new processes",
                        limits.process_limit
                    );
                }
            }
            JOB_OBJECT_MSG_NOTIFICATION_LIMIT => {
                let violated = job.violated_limits().unwrap_or(0);
                if violated & JOB_OBJECT_LIMIT_CPU_RATE_CONTROL != 0 {
                    counters.cpu_notifications.fetch_add(1, Ordering::Relaxed);
                }
                if violated & JOB_OBJECT_LIMIT_JOB_MEMORY != 0 {
                    counters.memory_notifications.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(pid, "the workload passed its soft memory limit");
                }
                let io_limits = JOB_OBJECT_LIMIT_IO_RATE_CONTROL
                    | JOB_OBJECT_LIMIT_JOB_READ_BYTES
                    | JOB_OBJECT_LIMIT_JOB_WRITE_BYTES;
                if violated & io_limits != 0 {
                    counters.io_notifications.fetch_add(1, Ordering::Relaxed);
                }
            }
            JOB_OBJECT_MSG_ACTIVE_PROCESS_ZERO => {
                tracing::debug!("no process is left in the job");
                if let Err(e) = ffi::set_event(emptied) {
                    tracing::warn!(error = %e, "cannot tell that the job is empty");
                }
            }
            _ => {}
        }
    }
}
