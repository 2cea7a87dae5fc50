//! Every Win32 call damon makes, each behind a safe function. This is the only file of the
//! Windows backend with `unsafe`; the rest works with `OwnedHandle`s and Rust types.
//!
//! Each return value is checked against the failure value the function documents (FALSE,
//! NULL, INVALID_HANDLE_VALUE, u32::MAX) by one small helper per convention, and the error
//! names the call that failed.

use std::ffi::OsStr;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::path::Path;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicIsize, AtomicU32, Ordering};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    GetHandleInformation, GetLastError, SetHandleInformation, BOOL, ERROR_INSUFFICIENT_BUFFER, ERROR_MORE_DATA, FALSE,
    FILETIME, HANDLE, HANDLE_FLAG_INHERIT, INVALID_HANDLE_VALUE, NTSTATUS, STATUS_SUCCESS, TRUE, WAIT_FAILED,
    WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Security::{
    CreateRestrictedToken, CreateWellKnownSid, WinBuiltinAdministratorsSid, DISABLE_MAX_PRIVILEGE, LUA_TOKEN,
    SECURITY_MAX_SID_SIZE, SID_AND_ATTRIBUTES, TOKEN_ADJUST_DEFAULT, TOKEN_ADJUST_SESSIONID, TOKEN_ASSIGN_PRIMARY,
    TOKEN_DUPLICATE, TOKEN_QUERY,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FileDispositionInfo, GetFileInformationByHandle, MoveFileExW, SetFileInformationByHandle,
    BY_HANDLE_FILE_INFORMATION, FILE_DISPOSITION_INFO, FILE_FLAGS_AND_ATTRIBUTES, FILE_SHARE_MODE, OPEN_EXISTING,
};
use windows_sys::Win32::System::Console::{
    AttachConsole, FreeConsole, GenerateConsoleCtrlEvent, GetStdHandle, SetConsoleCtrlHandler, STD_ERROR_HANDLE,
    STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, IsProcessInJob, JobObjectBasicProcessIdList,
    JobObjectExtendedLimitInformation, QueryInformationJobObject, SetInformationJobObject, TerminateJobObject,
    JOBOBJECTINFOCLASS, JOBOBJECT_BASIC_PROCESS_ID_LIST, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOBOBJECT_IO_RATE_CONTROL_INFORMATION, JOB_OBJECT_IO_RATE_CONTROL_ENABLE,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::ProcessStatus::{
    K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS, PROCESS_MEMORY_COUNTERS_EX,
};
use windows_sys::Win32::System::Registry::{RegGetValueW, HKEY_LOCAL_MACHINE, RRF_RT_REG_DWORD};
use windows_sys::Win32::System::SystemInformation::OSVERSIONINFOW;
use windows_sys::Win32::System::Threading::{
    CreateEventW, CreateProcessAsUserW, CreateProcessW, DeleteProcThreadAttributeList, GetActiveProcessorCount,
    GetActiveProcessorGroupCount, GetCurrentProcess, GetExitCodeProcess, GetProcessHandleCount, GetProcessTimes,
    InitializeProcThreadAttributeList, OpenProcess, OpenProcessToken, ResumeThread, SetEvent, TerminateProcess,
    UpdateProcThreadAttribute, WaitForMultipleObjects, ALL_PROCESSOR_GROUPS, CREATE_NO_WINDOW, CREATE_SUSPENDED,
    CREATE_UNICODE_ENVIRONMENT, DETACHED_PROCESS, EXTENDED_STARTUPINFO_PRESENT, INFINITE, LPPROC_THREAD_ATTRIBUTE_LIST,
    PROCESS_ACCESS_RIGHTS, PROCESS_INFORMATION, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_VM_READ,
    PROC_THREAD_ATTRIBUTE_HANDLE_LIST, PROC_THREAD_ATTRIBUTE_JOB_LIST, STARTF_USESTDHANDLES, STARTUPINFOEXW,
    STARTUPINFOW,
};
use windows_sys::Win32::System::IO::{
    CreateIoCompletionPort, GetQueuedCompletionStatus, PostQueuedCompletionStatus, OVERLAPPED,
};

/// A failed Win32 call: which one, and the error code Windows gave.
#[derive(Debug)]
struct Win32Error {
    call: &'static str,
    code: i32,
}

impl std::fmt::Display for Win32Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.call, io::Error::from_raw_os_error(self.code))
    }
}

impl std::error::Error for Win32Error {}

fn last_error(call: &'static str) -> io::Error {
    let error = io::Error::last_os_error();
    let code = error.raw_os_error().unwrap_or(0);
    io::Error::new(error.kind(), Win32Error { call, code })
}

/// The Windows error code behind an error from this module.
pub fn error_code(error: &io::Error) -> Option<u32> {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<Win32Error>())
        .map(|e| e.code as u32)
        .or(error.raw_os_error().map(|c| c as u32))
}

/// For functions that return FALSE on failure.
fn check(result: BOOL, call: &'static str) -> io::Result<()> {
    if result == FALSE {
        Err(last_error(call))
    } else {
        Ok(())
    }
}

/// For functions that return NULL on failure; the handle becomes owned (closed on drop).
fn owned(handle: HANDLE, call: &'static str) -> io::Result<OwnedHandle> {
    if handle.is_null() || handle == INVALID_HANDLE_VALUE {
        Err(last_error(call))
    } else {
        // SAFETY: the call just created this handle and returned it to us alone.
        Ok(unsafe { OwnedHandle::from_raw_handle(handle as RawHandle) })
    }
}

fn raw(handle: &OwnedHandle) -> HANDLE {
    handle.as_raw_handle() as HANDLE
}

fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(std::iter::once(0)).collect()
}

fn size_u32<T>() -> u32 {
    size_of::<T>() as u32
}

// ---- Job Objects

pub fn create_job(name: &OsStr) -> io::Result<OwnedHandle> {
    let name = wide(name);
    // SAFETY: `name` is a NUL-terminated UTF-16 string that outlives the call; no security attributes.
    owned(unsafe { CreateJobObjectW(null(), name.as_ptr()) }, "CreateJobObjectW")
}

/// Sets one information class of a job. `T` must be the structure that class takes.
pub fn set_job_information<T: Copy>(job: &OwnedHandle, class: JOBOBJECTINFOCLASS, info: &T) -> io::Result<()> {
    // SAFETY: `info` points to a live `T` of the size passed, the structure the caller names with `class`.
    let result = unsafe { SetInformationJobObject(raw(job), class, info as *const T as *const _, size_u32::<T>()) };
    check(result, "SetInformationJobObject")
}

/// An exported function of a module every process has loaded (kernel32, ntdll), looked up by
/// name at run time; `None` if the module or the export is not there. `name` ends with a NUL.
fn loaded_module_function(module: &str, name: &[u8]) -> Option<unsafe extern "system" fn() -> isize> {
    debug_assert_eq!(name.last(), Some(&0), "the export's name must end with a NUL");
    let module = wide(OsStr::new(module));
    // SAFETY: both names are NUL-terminated and alive for the calls; the modules are loaded in
    // every process and their handles need no release.
    unsafe {
        let handle = GetModuleHandleW(module.as_ptr());
        if handle.is_null() {
            None
        } else {
            GetProcAddress(handle, name.as_ptr())
        }
    }
}

/// The version of Windows this host runs, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WindowsVersion {
    pub major: u32,
    pub minor: u32,
    pub build: u32,
}

impl std::fmt::Display for WindowsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// ntdll's RtlGetVersion.
type RtlGetVersion = unsafe extern "system" fn(*mut OSVERSIONINFOW) -> NTSTATUS;

/// The host's real Windows version, from ntdll's RtlGetVersion (GetVersionExW reports 6.2,
/// Windows 8, to a program without a compatibility manifest, which damon.exe has not). Looked
/// up rather than imported: windows-sys declares it under the Wdk features, which damon does
/// not enable. Wine reports the version its prefix is set to (Windows 10 by default).
pub fn os_version() -> io::Result<WindowsVersion> {
    let function = loaded_module_function("ntdll.dll", b"RtlGetVersion\0")
        .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "ntdll.dll has no RtlGetVersion"))?;
    // SAFETY: the export of that name has this signature (wdm.h, ntddk.h).
    let function = unsafe { std::mem::transmute::<unsafe extern "system" fn() -> isize, RtlGetVersion>(function) };
    // SAFETY: OSVERSIONINFOW is plain data; all-zero is a valid value.
    let mut info: OSVERSIONINFOW = unsafe { zeroed() };
    info.dwOSVersionInfoSize = size_u32::<OSVERSIONINFOW>();
    // SAFETY: `info` is a live, writable OSVERSIONINFOW whose size field is set, as the
    // function requires; it fills the structure and keeps no pointer to it.
    let status = unsafe { function(&mut info) };
    if status != STATUS_SUCCESS {
        return Err(io::Error::new(io::ErrorKind::Other, format!("RtlGetVersion returned NTSTATUS {:#010x}", status)));
    }
    Ok(WindowsVersion { major: info.dwMajorVersion, minor: info.dwMinorVersion, build: info.dwBuildNumber })
}

/// kernel32's SetIoRateControlInformationJobObject.
type SetIoRateControl = unsafe extern "system" fn(HANDLE, *const JOBOBJECT_IO_RATE_CONTROL_INFORMATION) -> u32;

/// SetIoRateControlInformationJobObject, looked up when an IO limit is asked for rather than
/// imported: Windows 10 and Server 2016 have it, earlier versions do not (an import would keep
/// damon.exe from loading there at all), and Wine 8 exports a stub that aborts the process
/// when called, so under Wine (whose ntdll exports wine_get_version) it counts as missing.
fn io_rate_control_function() -> Option<SetIoRateControl> {
    if loaded_module_function("ntdll.dll", b"wine_get_version\0").is_some() {
        return None;
    }
    let function = loaded_module_function("kernel32.dll", b"SetIoRateControlInformationJobObject\0")?;
    // SAFETY: the export of that name has this signature (jobapi2.h).
    Some(unsafe { std::mem::transmute::<unsafe extern "system" fn() -> isize, SetIoRateControl>(function) })
}

/// The job's IO rate control on every volume (no volume named: each volume gets the limits,
/// not all of them together); 0 is no limit.
pub fn set_io_rate_control(job: &OwnedHandle, max_bandwidth: i64, max_iops: i64) -> io::Result<()> {
    let function = io_rate_control_function().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "SetIoRateControlInformationJobObject is not there (Windows 10 / Server 2016 and later have it; Wine \
             does not implement it)",
        )
    })?;
    let info = JOBOBJECT_IO_RATE_CONTROL_INFORMATION {
        MaxIops: max_iops,
        MaxBandwidth: max_bandwidth,
        ReservationIops: 0,
        VolumeName: std::ptr::null(),
        // The function requires 0 here.
        BaseIoSize: 0,
        ControlFlags: JOB_OBJECT_IO_RATE_CONTROL_ENABLE as u32,
    };
    // SAFETY: `info` is a live structure that the call reads and does not keep; its volume name
    // is null, which the function takes as every volume.
    let result = unsafe { function(raw(job), &info) };
    // Nonzero on success, zero with the error in GetLastError (its documentation).
    check(if result == 0 { FALSE } else { TRUE }, "SetIoRateControlInformationJobObject")
}

/// Sets an information class that takes an array (JobObjectGroupInformationEx). `T` must be
/// the element type that class takes.
pub fn set_job_information_list<T: Copy>(job: &OwnedHandle, class: JOBOBJECTINFOCLASS, info: &[T]) -> io::Result<()> {
    let bytes = std::mem::size_of_val(info) as u32;
    // SAFETY: `info` points to `info.len()` live elements of `T`, `bytes` long in all, the
    // structures the caller names with `class`.
    let result = unsafe { SetInformationJobObject(raw(job), class, info.as_ptr() as *const _, bytes) };
    check(result, "SetInformationJobObject")
}

/// Reads one fixed-size information class of a job. `T` must be the structure that class returns.
pub fn query_job_information<T: Copy>(job: &OwnedHandle, class: JOBOBJECTINFOCLASS) -> io::Result<T> {
    // SAFETY: the Win32 information structures are plain data for which all-zero bytes are valid.
    let mut info: T = unsafe { zeroed() };
    // SAFETY: `info` is writable and as large as the size passed.
    let result = unsafe {
        QueryInformationJobObject(raw(job), class, &mut info as *mut T as *mut _, size_u32::<T>(), null_mut())
    };
    check(result, "QueryInformationJobObject")?;
    Ok(info)
}

/// The ids of the processes in the job now.
pub fn job_process_ids(job: &OwnedHandle) -> io::Result<Vec<usize>> {
    let header = size_of::<JOBOBJECT_BASIC_PROCESS_ID_LIST>() - size_of::<usize>();
    let mut capacity = 64;
    loop {
        // usize elements keep the buffer aligned for the structure, which starts with two u32s.
        let mut buffer = vec![0usize; (header / size_of::<usize>()) + capacity];
        let bytes = (buffer.len() * size_of::<usize>()) as u32;
        // SAFETY: `buffer` is writable, aligned for the structure and `bytes` long.
        let result = unsafe {
            QueryInformationJobObject(
                raw(job),
                JobObjectBasicProcessIdList,
                buffer.as_mut_ptr() as *mut _,
                bytes,
                null_mut(),
            )
        };
        // SAFETY: GetLastError only reads this thread's last error value.
        let error = unsafe { GetLastError() };
        if result == FALSE && error != ERROR_MORE_DATA && error != ERROR_INSUFFICIENT_BUFFER {
            return Err(last_error("QueryInformationJobObject(JobObjectBasicProcessIdList)"));
        }
        // SAFETY: the buffer starts with the structure's header, written by the call.
        let list = unsafe { &*(buffer.as_ptr() as *const JOBOBJECT_BASIC_PROCESS_ID_LIST) };
        let (assigned, listed) = (list.NumberOfAssignedProcesses as usize, list.NumberOfProcessIdsInList as usize);
        if result != FALSE && listed <= capacity {
            let ids_start = header / size_of::<usize>();
            return Ok(buffer[ids_start..ids_start + listed].to_vec());
        }
        capacity = assigned.max(capacity * 2);
    }
}

pub fn assign_to_job(job: &OwnedHandle, process: &OwnedHandle) -> io::Result<()> {
    // SAFETY: both handles are open for the duration of the call.
    check(unsafe { AssignProcessToJobObject(raw(job), raw(process)) }, "AssignProcessToJobObject")
}

pub fn is_in_job(process: &OwnedHandle, job: &OwnedHandle) -> io::Result<bool> {
    let mut result: BOOL = FALSE;
    // SAFETY: both handles are open; `result` is writable.
    check(unsafe { IsProcessInJob(raw(process), raw(job), &mut result) }, "IsProcessInJob")?;
    Ok(result != FALSE)
}

/// The job damon.exe itself runs in, if any (Nomad 1.9+'s executor puts itself and the task in
/// one): its limits, as the null job handle names the caller's own job. `None` outside a job.
pub fn enclosing_job_limits() -> io::Result<Option<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>> {
    let mut in_job: BOOL = FALSE;
    // SAFETY: GetCurrentProcess returns a pseudo-handle that needs no closing; a null job asks
    // about any job; `in_job` is writable.
    check(unsafe { IsProcessInJob(GetCurrentProcess(), null_mut(), &mut in_job) }, "IsProcessInJob")?;
    if in_job == FALSE {
        return Ok(None);
    }
    // SAFETY: the structure is plain data for which all-zero bytes are valid.
    let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { zeroed() };
    // SAFETY: a null job handle names the job of the calling process; `info` is writable and as
    // large as the size passed.
    let result = unsafe {
        QueryInformationJobObject(
            null_mut(),
            JobObjectExtendedLimitInformation,
            &mut info as *mut JOBOBJECT_EXTENDED_LIMIT_INFORMATION as *mut _,
            size_u32::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>(),
            null_mut(),
        )
    };
    check(result, "QueryInformationJobObject(null, JobObjectExtendedLimitInformation)")?;
    Ok(Some(info))
}

pub fn terminate_job(job: &OwnedHandle, exit_code: u32) -> io::Result<()> {
    // SAFETY: the job handle is open.
    check(unsafe { TerminateJobObject(raw(job), exit_code) }, "TerminateJobObject")
}

// ---- I/O completion ports (job notifications)

pub fn create_completion_port() -> io::Result<OwnedHandle> {
    // SAFETY: INVALID_HANDLE_VALUE with no existing port creates a new, unassociated port.
    let port = unsafe { CreateIoCompletionPort(INVALID_HANDLE_VALUE, null_mut(), 0, 1) };
    owned(port, "CreateIoCompletionPort")
}

/// One completion packet: for job notifications, the message, the key given when the job
/// was associated, and the process id the message is about.
pub struct Completion {
    pub message: u32,
    pub key: usize,
    pub process_id: usize,
}

/// Blocks until a packet arrives on the port.
pub fn next_completion(port: &OwnedHandle) -> io::Result<Completion> {
    let (mut message, mut key, mut overlapped): (u32, usize, *mut OVERLAPPED) = (0, 0, null_mut());
    // SAFETY: the out-parameters are writable; job notifications carry a process id in the
    // OVERLAPPED pointer's place, which is only read as a number, never dereferenced.
    let result = unsafe { GetQueuedCompletionStatus(raw(port), &mut message, &mut key, &mut overlapped, INFINITE) };
    check(result, "GetQueuedCompletionStatus")?;
    Ok(Completion { message, key, process_id: overlapped as usize })
}

pub fn post_completion(port: &OwnedHandle, message: u32, key: usize) -> io::Result<()> {
    // SAFETY: the port handle is open; no OVERLAPPED is passed.
    check(unsafe { PostQueuedCompletionStatus(raw(port), message, key, null()) }, "PostQueuedCompletionStatus")
}

/// Raw handle value of a port, for JOBOBJECT_ASSOCIATE_COMPLETION_PORT.
pub fn handle_value(handle: &OwnedHandle) -> HANDLE {
    raw(handle)
}

// ---- Events and waiting

pub fn create_event() -> io::Result<OwnedHandle> {
    // SAFETY: an unnamed auto-reset event, initially not signalled.
    owned(unsafe { CreateEventW(null(), FALSE, FALSE, null()) }, "CreateEventW")
}

/// Signals an event made by [`create_event`].
pub fn set_event(event: &OwnedHandle) -> io::Result<()> {
    // SAFETY: the event handle is open.
    check(unsafe { SetEvent(raw(event)) }, "SetEvent")
}

/// Waits until one of `handles` is signalled (its index) or `timeout` passes (`None`).
pub fn wait_any(handles: &[&OwnedHandle], timeout: Option<Duration>) -> io::Result<Option<usize>> {
    let raw_handles: Vec<HANDLE> = handles.iter().map(|h| raw(h)).collect();
    let timeout_ms = timeout.map_or(INFINITE, |t| t.as_millis().min(u128::from(INFINITE - 1)) as u32);
    // SAFETY: every handle is open for the duration of the call; the count matches the slice.
    let result = unsafe { WaitForMultipleObjects(raw_handles.len() as u32, raw_handles.as_ptr(), FALSE, timeout_ms) };
    match result {
        WAIT_TIMEOUT => Ok(None),
        WAIT_FAILED => Err(last_error("WaitForMultipleObjects")),
        index if (index as usize) < WAIT_OBJECT_0 as usize + raw_handles.len() => {
            Ok(Some((index - WAIT_OBJECT_0) as usize))
        }
        other => Err(io::Error::new(io::ErrorKind::Other, format!("WaitForMultipleObjects returned {}", other))),
    }
}

// ---- Console control events

/// The control event the handler saw last, and the event it signals (a raw handle value;
/// the handler runs on a thread of the system's and can reach nothing else).
static CTRL_TYPE: AtomicU32 = AtomicU32::new(0);
static CTRL_EVENT: AtomicIsize = AtomicIsize::new(0);

unsafe extern "system" fn ctrl_handler(ctrl_type: u32) -> BOOL {
    CTRL_TYPE.store(ctrl_type, Ordering::SeqCst);
    let event = CTRL_EVENT.load(Ordering::SeqCst);
    if event != 0 {
        // SAFETY: the event handle stays open for the whole process (see install_ctrl_handler).
        unsafe { SetEvent(event as HANDLE) };
    }
    // Handled: damon decides when to stop; the default would end damon at once.
    TRUE
}

/// Routes Ctrl+C, Ctrl+Break and close events to `event` (kept open for the process's life).
pub fn install_ctrl_handler(event: OwnedHandle) -> io::Result<()> {
    // Leaked on purpose: the handler may run until the process ends.
    CTRL_EVENT.store(raw(&event) as isize, Ordering::SeqCst);
    std::mem::forget(event);
    // SAFETY: the handler only touches atomics and an event handle that is never closed.
    check(unsafe { SetConsoleCtrlHandler(Some(ctrl_handler), TRUE) }, "SetConsoleCtrlHandler")
}

/// The control event last received (CTRL_C_EVENT, CTRL_BREAK_EVENT, ...).
pub fn last_ctrl_type() -> u32 {
    CTRL_TYPE.load(Ordering::SeqCst)
}

/// Sends console control event `event` (CTRL_C_EVENT, CTRL_BREAK_EVENT) to every process
/// attached to the console of process `process_id`: this process leaves its own console (if
/// any), attaches to that one, ignores the event itself, and generates it for process group 0
/// (the whole console: Windows delivers Ctrl+C no other way). Run by damon.exe's console-event
/// helper, a process of its own (see console.rs), never by damon.exe itself.
pub fn deliver_console_event(event: u32, process_id: u32) -> io::Result<()> {
    // SAFETY: no arguments; failing only means there was no console to leave.
    unsafe { FreeConsole() };
    // SAFETY: plain values.
    check(unsafe { AttachConsole(process_id) }, CONSOLE_EVENT_STEPS[0])?;
    // SAFETY: the handler touches nothing; it only keeps the event from ending this process.
    check(unsafe { SetConsoleCtrlHandler(Some(ignore_ctrl), TRUE) }, CONSOLE_EVENT_STEPS[1])?;
    // SAFETY: plain values.
    check(unsafe { GenerateConsoleCtrlEvent(event, 0) }, CONSOLE_EVENT_STEPS[2])
}

/// The calls of [`deliver_console_event`], in order.
pub const CONSOLE_EVENT_STEPS: [&str; 3] = ["AttachConsole", "SetConsoleCtrlHandler", "GenerateConsoleCtrlEvent"];

/// Which of [`CONSOLE_EVENT_STEPS`] `error` (from [`deliver_console_event`]) comes from.
pub fn console_event_step(error: &io::Error) -> Option<usize> {
    let call = error.get_ref()?.downcast_ref::<Win32Error>()?.call;
    CONSOLE_EVENT_STEPS.iter().position(|step| *step == call)
}

unsafe extern "system" fn ignore_ctrl(_ctrl_type: u32) -> BOOL {
    TRUE
}

/// Runs `command_line` without a console and without any of damon's handles, and waits for
/// it at most `timeout`: its exit code, or an error if it could not run or did not end.
pub fn run_detached(command_line: &OsStr, timeout: Duration) -> io::Result<u32> {
    let mut command_line = wide(command_line);
    // SAFETY: STARTUPINFOW is plain data; all-zero with `cb` set is its documented initial state.
    let mut startup: STARTUPINFOW = unsafe { zeroed() };
    startup.cb = size_u32::<STARTUPINFOW>();
    // SAFETY: PROCESS_INFORMATION is plain data, filled by the call.
    let mut info: PROCESS_INFORMATION = unsafe { zeroed() };
    // SAFETY: the command line is a writable NUL-terminated buffer; the startup info lives
    // until the call returns; nothing is inherited.
    let created = unsafe {
        CreateProcessW(
            null(),
            command_line.as_mut_ptr(),
            null(),
            null(),
            FALSE,
            DETACHED_PROCESS | CREATE_UNICODE_ENVIRONMENT,
            null(),
            null(),
            &startup,
            &mut info,
        )
    };
    check(created, "CreateProcessW")?;
    let process = owned(info.hProcess, "CreateProcessW")?;
    drop(owned(info.hThread, "CreateProcessW")?);
    if wait_any(&[&process], Some(timeout))?.is_none() {
        let _ = terminate_process_now(&process);
        return Err(io::Error::new(io::ErrorKind::TimedOut, "the helper did not end in time"));
    }
    exit_code(&process)
}

// ---- Processes

pub struct Process {
    pub handle: OwnedHandle,
    pub thread: OwnedHandle,
    pub id: u32,
}

/// damon's standard handles (Nomad's log pipes, or the console), each made inheritable where
/// it takes the flag.
fn inheritable_std_handles() -> [HANDLE; 3] {
    [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE].map(|which| {
        // SAFETY: GetStdHandle only reads the process's standard handle table.
        let handle = unsafe { GetStdHandle(which) };
        if !handle.is_null() && handle != INVALID_HANDLE_VALUE {
            // SAFETY: the handle is one of damon's own standard handles. A console handle may
            // refuse the flag; the child then gets the console through inheritance of it.
            unsafe { SetHandleInformation(handle, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT) };
        }
        handle
    })
}

/// The handles the child inherits, and all it inherits: those of `std_handles` that
/// PROC_THREAD_ATTRIBUTE_HANDLE_LIST takes, each once. The list refuses a handle that is not
/// inheritable and a duplicate (stdout and stderr are often one handle); NULL and
/// INVALID_HANDLE_VALUE stand for no stream, and a console pseudo-handle of Windows 7 (its
/// low two bits set) is no kernel handle (the child reaches the console without it).
fn handles_to_inherit(std_handles: &[HANDLE; 3]) -> Vec<HANDLE> {
    let mut list = Vec::new();
    for &handle in std_handles {
        if handle.is_null() || handle == INVALID_HANDLE_VALUE || handle as usize & 3 == 3 || list.contains(&handle) {
            continue;
        }
        let mut flags = 0u32;
        // SAFETY: GetHandleInformation only reads the entry of a handle damon holds; `flags`
        // is writable.
        let read = unsafe { GetHandleInformation(handle, &mut flags) };
        if read != FALSE && flags & HANDLE_FLAG_INHERIT != 0 {
            list.push(handle);
        }
    }
    list
}

/// A PROC_THREAD_ATTRIBUTE_LIST for CreateProcess: the handles the child inherits and the job
/// it starts in.
struct AttributeList {
    buffer: Vec<usize>,
    /// What the attributes point to: the list holds these addresses until it is deleted.
    values: Vec<Box<[HANDLE]>>,
}

impl AttributeList {
    fn new(attributes: u32) -> io::Result<AttributeList> {
        let mut size = 0usize;
        // SAFETY: a size query with a null list; it fails with ERROR_INSUFFICIENT_BUFFER by design.
        unsafe { InitializeProcThreadAttributeList(null_mut(), attributes, 0, &mut size) };
        let mut buffer = vec![0usize; size / size_of::<usize>() + 1];
        let list = buffer.as_mut_ptr() as LPPROC_THREAD_ATTRIBUTE_LIST;
        // SAFETY: `buffer` is at least `size` bytes and aligned.
        let result = unsafe { InitializeProcThreadAttributeList(list, attributes, 0, &mut size) };
        check(result, "InitializeProcThreadAttributeList")?;
        Ok(AttributeList { buffer, values: Vec::new() })
    }

    /// Sets an attribute whose value is an array of handles; `call` names it in an error.
    fn set(&mut self, attribute: u32, handles: Vec<HANDLE>, call: &'static str) -> io::Result<()> {
        let handles = handles.into_boxed_slice();
        // SAFETY: the list was initialized in `new`; `handles` is moved into `self.values`
        // below, so its heap address stays valid as long as the list, which outlives the
        // CreateProcess call.
        let updated = unsafe {
            UpdateProcThreadAttribute(
                self.as_ptr(),
                0,
                attribute as usize,
                handles.as_ptr() as *const _,
                std::mem::size_of_val(&*handles),
                null_mut(),
                null(),
            )
        };
        self.values.push(handles);
        check(updated, call)
    }

    fn as_ptr(&mut self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        self.buffer.as_mut_ptr() as LPPROC_THREAD_ATTRIBUTE_LIST
    }
}

impl Drop for AttributeList {
    fn drop(&mut self) {
        // SAFETY: the list was initialized in `new` (Drop runs only for a built struct).
        unsafe { DeleteProcThreadAttributeList(self.as_ptr()) };
    }
}

/// Creates a suspended process in its own process group, with damon's standard handles,
/// console, environment and directory. It inherits damon's standard handles and no other
/// handle (PROC_THREAD_ATTRIBUTE_HANDLE_LIST): whatever else damon holds or was left by its
/// launcher stays out of the workload's reach. With `job`, it asks Windows to create it inside
/// the job (PROC_THREAD_ATTRIBUTE_JOB_LIST, Windows 10 and later); callers check and assign if
/// the attribute was not honoured. With `token`, the process runs with that token.
pub fn create_suspended_process(
    command_line: &OsStr,
    job: Option<&OwnedHandle>,
    token: Option<&OwnedHandle>,
) -> io::Result<Process> {
    let mut command_line = wide(command_line);
    let std_handles = inheritable_std_handles();
    // SAFETY: STARTUPINFOEXW is plain data; all-zero is its documented initial state.
    let mut startup: STARTUPINFOEXW = unsafe { zeroed() };
    startup.StartupInfo.cb = size_u32::<STARTUPINFOEXW>();
    startup.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    startup.StartupInfo.hStdInput = std_handles[0];
    startup.StartupInfo.hStdOutput = std_handles[1];
    startup.StartupInfo.hStdError = std_handles[2];
    let mut attributes = AttributeList::new(2)?;
    let inherited = handles_to_inherit(&std_handles);
    // No standard handle to pass: nothing is inherited (a handle list names at least one).
    let inherit = if inherited.is_empty() { FALSE } else { TRUE };
    if inherit == TRUE {
        attributes.set(
            PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
            inherited,
            "UpdateProcThreadAttribute(PROC_THREAD_ATTRIBUTE_HANDLE_LIST)",
        )?;
    }
    if let Some(job) = job {
        // Refused before Windows 10: the caller then assigns the suspended child itself.
        let _ = attributes.set(
            PROC_THREAD_ATTRIBUTE_JOB_LIST,
            vec![raw(job)],
            "UpdateProcThreadAttribute(PROC_THREAD_ATTRIBUTE_JOB_LIST)",
        );
    }
    startup.lpAttributeList = attributes.as_ptr();
    // A console of its own, without a window (its standard handles are still damon's): the
    // stop's console events go there, to the job's console processes and to nothing else.
    let flags = CREATE_SUSPENDED | CREATE_NO_WINDOW | CREATE_UNICODE_ENVIRONMENT | EXTENDED_STARTUPINFO_PRESENT;
    // SAFETY: PROCESS_INFORMATION is plain data, filled by the call.
    let mut info: PROCESS_INFORMATION = unsafe { zeroed() };
    let startup_ptr = &startup as *const STARTUPINFOEXW as *const _;
    // SAFETY: the command line is a writable NUL-terminated buffer (CreateProcess may modify
    // it); the startup info and attribute list live until the call returns; the environment
    // and directory are inherited (null).
    let created = unsafe {
        match token {
            None => CreateProcessW(
                null(),
                command_line.as_mut_ptr(),
                null(),
                null(),
                inherit,
                flags,
                null(),
                null(),
                startup_ptr,
                &mut info,
            ),
            Some(token) => CreateProcessAsUserW(
                raw(token),
                null(),
                command_line.as_mut_ptr(),
                null(),
                null(),
                inherit,
                flags,
                null(),
                null(),
                startup_ptr,
                &mut info,
            ),
        }
    };
    check(created, if token.is_some() { "CreateProcessAsUserW" } else { "CreateProcessW" })?;
    Ok(Process {
        handle: owned(info.hProcess, "CreateProcessW")?,
        thread: owned(info.hThread, "CreateProcessW")?,
        id: info.dwProcessId,
    })
}

/// Ends a process at once (a child that could not be put in its job, or the uncontained child).
pub fn terminate_process_now(process: &OwnedHandle) -> io::Result<()> {
    // SAFETY: the process handle is open.
    check(unsafe { TerminateProcess(raw(process), TERMINATE_EXIT_CODE) }, "TerminateProcess")
}

/// The exit code of a process ended by [`terminate_process_now`].
const TERMINATE_EXIT_CODE: u32 = 137;

pub fn resume(thread: &OwnedHandle) -> io::Result<()> {
    // SAFETY: the thread handle is open.
    if unsafe { ResumeThread(raw(thread)) } == u32::MAX {
        return Err(last_error("ResumeThread"));
    }
    Ok(())
}

pub fn exit_code(process: &OwnedHandle) -> io::Result<u32> {
    let mut code = 0u32;
    // SAFETY: the process handle is open; `code` is writable.
    check(unsafe { GetExitCodeProcess(raw(process), &mut code) }, "GetExitCodeProcess")?;
    Ok(code)
}

/// Opens a process of the job by id, for reading.
fn open_process(process_id: u32, access: PROCESS_ACCESS_RIGHTS) -> Option<OwnedHandle> {
    // SAFETY: plain values; the returned handle is checked and owned.
    owned(unsafe { OpenProcess(access, FALSE, process_id) }, "OpenProcess").ok()
}

/// The exit code of a process by id, while any handle keeps its record alive.
pub fn exit_code_of(process_id: u32) -> Option<u32> {
    exit_code(&open_process(process_id, PROCESS_QUERY_LIMITED_INFORMATION)?).ok()
}

/// A process's memory counters, the extended structure with PrivateUsage.
fn memory_counters(process: HANDLE) -> Option<PROCESS_MEMORY_COUNTERS_EX> {
    // SAFETY: plain data, filled by the call.
    let mut counters: PROCESS_MEMORY_COUNTERS_EX = unsafe { zeroed() };
    counters.cb = size_u32::<PROCESS_MEMORY_COUNTERS_EX>();
    // SAFETY: `process` is open for the call; `counters` is writable and its size is passed;
    // the EX structure extends the base one, as the size tells the function.
    let ok = unsafe {
        K32GetProcessMemoryInfo(
            process,
            &mut counters as *mut PROCESS_MEMORY_COUNTERS_EX as *mut PROCESS_MEMORY_COUNTERS,
            counters.cb,
        )
    };
    if ok == FALSE {
        None
    } else {
        Some(counters)
    }
}

/// Memory of a process by id: (working set, private commit) in bytes.
pub fn process_memory(process_id: u32) -> Option<(u64, u64)> {
    let handle = open_process(process_id, PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_VM_READ)?;
    let counters = memory_counters(raw(&handle))?;
    Some((counters.WorkingSetSize as u64, counters.PrivateUsage as u64))
}

/// damon's own CPU time, memory, start time and handle count.
pub fn own_process() -> crate::platform::OwnProcess {
    let mut figures = crate::platform::OwnProcess::default();
    // SAFETY: plain data, filled by the calls; GetCurrentProcess is a pseudo-handle.
    let (mut creation, mut exit, mut kernel, mut user): (FILETIME, FILETIME, FILETIME, FILETIME) = unsafe { zeroed() };
    // SAFETY: the out-parameters are writable.
    if unsafe { GetProcessTimes(GetCurrentProcess(), &mut creation, &mut exit, &mut kernel, &mut user) } != FALSE {
        let ticks = |t: FILETIME| (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime);
        figures.cpu_seconds = (ticks(kernel) + ticks(user)) as f64 / 1e7;
        // FILETIME counts 100 ns since 1601; Unix time starts 11644473600 s later.
        figures.start_time_seconds = ticks(creation) as f64 / 1e7 - 11_644_473_600.0;
    }
    // SAFETY: GetCurrentProcess returns a pseudo-handle that is always valid in this process.
    if let Some(counters) = memory_counters(unsafe { GetCurrentProcess() }) {
        figures.resident_bytes = counters.WorkingSetSize as u64;
        figures.virtual_bytes = counters.PrivateUsage as u64;
    }
    let mut handles = 0u32;
    // SAFETY: `handles` is writable.
    if unsafe { GetProcessHandleCount(GetCurrentProcess(), &mut handles) } != FALSE {
        figures.open_fds = Some(u64::from(handles));
    }
    figures
}

// ---- Files (the log's directory, anchored_dir.rs)

/// Opens what exists at `path` (OPEN_EXISTING) with the access, sharing and flags given.
pub fn open_existing(
    path: &Path,
    access: u32,
    share: FILE_SHARE_MODE,
    flags: FILE_FLAGS_AND_ATTRIBUTES,
) -> io::Result<OwnedHandle> {
    let path = wide(path.as_os_str());
    // SAFETY: `path` is a NUL-terminated UTF-16 string that outlives the call; no security
    // attributes, no template; the returned handle is checked and owned.
    let handle = unsafe { CreateFileW(path.as_ptr(), access, share, null(), OPEN_EXISTING, flags, null_mut()) };
    // CreateFileW fails with INVALID_HANDLE_VALUE, which `owned` checks.
    owned(handle, "CreateFileW")
}

/// What GetFileInformationByHandle tells of an open file.
pub struct FileInformation {
    pub volume_serial_number: u32,
    pub file_index: u64,
    pub attributes: u32,
    pub links: u32,
}

pub fn file_information(file: &impl AsRawHandle) -> io::Result<FileInformation> {
    // SAFETY: plain data, filled by the call.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { zeroed() };
    // SAFETY: the handle is open for the call (the borrow); `info` is writable.
    let result = unsafe { GetFileInformationByHandle(file.as_raw_handle() as HANDLE, &mut info) };
    check(result, "GetFileInformationByHandle")?;
    Ok(FileInformation {
        volume_serial_number: info.dwVolumeSerialNumber,
        file_index: (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
        attributes: info.dwFileAttributes,
        links: info.nNumberOfLinks,
    })
}

/// Renames `from` to `to`, failing if `to` exists: no MOVEFILE_REPLACE_EXISTING (std's
/// rename sets it), and no MOVEFILE_COPY_ALLOWED (a copy would follow what stands at `from`).
pub fn move_file_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (wide(from.as_os_str()), wide(to.as_os_str()));
    // SAFETY: both are NUL-terminated UTF-16 strings that outlive the call.
    check(unsafe { MoveFileExW(from.as_ptr(), to.as_ptr(), 0) }, "MoveFileExW")
}

/// Deletes the file open as `file` (opened with DELETE access) once its last handle closes:
/// the file checked through this handle is the one deleted, whatever took its name meanwhile.
pub fn delete_on_close(file: &OwnedHandle) -> io::Result<()> {
    let info = FILE_DISPOSITION_INFO { DeleteFile: 1 };
    let (pointer, size) = (&info as *const FILE_DISPOSITION_INFO as *const _, size_u32::<FILE_DISPOSITION_INFO>());
    // SAFETY: the handle is open; `pointer` is to a live structure of the size passed, the one
    // FileDispositionInfo takes, which the call reads and does not keep.
    let result = unsafe { SetFileInformationByHandle(raw(file), FileDispositionInfo, pointer, size) };
    check(result, "SetFileInformationByHandle(FileDispositionInfo)")
}

// ---- Restricted token

/// A primary token like damon's, with every privilege but SeChangeNotify removed, as a
/// limited-user (LUA) token, and BUILTIN\Administrators set to deny-only.
pub fn restricted_token() -> io::Result<OwnedHandle> {
    let mut token: HANDLE = null_mut();
    let access = TOKEN_DUPLICATE | TOKEN_ASSIGN_PRIMARY | TOKEN_QUERY | TOKEN_ADJUST_DEFAULT | TOKEN_ADJUST_SESSIONID;
    // SAFETY: GetCurrentProcess is a pseudo-handle; `token` is writable.
    check(unsafe { OpenProcessToken(GetCurrentProcess(), access, &mut token) }, "OpenProcessToken")?;
    let token = owned(token, "OpenProcessToken")?;
    let mut sid = [0u8; SECURITY_MAX_SID_SIZE as usize];
    let mut sid_size = SECURITY_MAX_SID_SIZE;
    // SAFETY: `sid` is a writable buffer of the size passed.
    let result = unsafe {
        CreateWellKnownSid(WinBuiltinAdministratorsSid, null_mut(), sid.as_mut_ptr() as *mut _, &mut sid_size)
    };
    check(result, "CreateWellKnownSid")?;
    let disable = [SID_AND_ATTRIBUTES { Sid: sid.as_mut_ptr() as *mut _, Attributes: 0 }];
    let mut restricted: HANDLE = null_mut();
    // SAFETY: `disable` and the SID it points to live until the call returns; `restricted` is writable.
    let result = unsafe {
        CreateRestrictedToken(
            raw(&token),
            DISABLE_MAX_PRIVILEGE | LUA_TOKEN,
            disable.len() as u32,
            disable.as_ptr(),
            0,
            null(),
            0,
            null(),
            &mut restricted,
        )
    };
    check(result, "CreateRestrictedToken")?;
    owned(restricted, "CreateRestrictedToken")
}

// ---- Host

/// MHz of one core, from the registry value the original read.
pub fn registry_mhz() -> io::Result<u32> {
    let key = wide(OsStr::new("HARDWARE\\DESCRIPTION\\System\\CentralProcessor\\0"));
    let value = wide(OsStr::new("~MHz"));
    let (mut mhz, mut size) = (0u32, size_u32::<u32>());
    // SAFETY: key and value names are NUL-terminated; `mhz` is a writable DWORD of the size passed.
    let status = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            key.as_ptr(),
            value.as_ptr(),
            RRF_RT_REG_DWORD,
            null_mut(),
            &mut mhz as *mut u32 as *mut _,
            &mut size,
        )
    };
    if status != 0 {
        return Err(io::Error::from_raw_os_error(status as i32));
    }
    Ok(mhz)
}

/// The active logical processors of each active processor group, in group order (Windows
/// puts at most 64 in a group; a host with more has several).
pub fn processor_groups() -> Vec<u32> {
    // SAFETY: plain value; 0 on failure, which gives an empty list.
    let groups = unsafe { GetActiveProcessorGroupCount() };
    // SAFETY: plain value; a group number below the active group count.
    (0..groups).map(|group| unsafe { GetActiveProcessorCount(group) }).collect()
}

pub fn logical_processors() -> u32 {
    // SAFETY: plain value.
    unsafe { GetActiveProcessorCount(ALL_PROCESSOR_GROUPS) }
}

// ---- Winsock: the metrics server's sockets

use windows_sys::Win32::Networking::WinSock::{listen, WSAGetLastError, WSAPoll, SOCKET, SOCKET_ERROR, WSAPOLLFD};

fn wsa_error(call: &'static str) -> io::Error {
    // SAFETY: reads this thread's last Winsock error, which the failed call has just set.
    let code = unsafe { WSAGetLastError() };
    io::Error::new(io::Error::from_raw_os_error(code).kind(), Win32Error { call, code })
}

/// Waits until one of `sockets` is ready or `timeout_ms` passes (-1: no limit), and fills in
/// their `revents`. The caller made each socket through std, which started Winsock.
pub fn wsa_poll(sockets: &mut [WSAPOLLFD], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: the pointer and length describe a live, writable slice for the whole call;
    // WSAPoll writes only the revents fields of those entries.
    let ready = unsafe { WSAPoll(sockets.as_mut_ptr(), sockets.len() as u32, timeout_ms) };
    if ready == SOCKET_ERROR {
        return Err(wsa_error("WSAPoll"));
    }
    Ok(ready as usize)
}

/// Listens again on a listening socket with another backlog: Windows keeps the first one
/// and returns success; Wine passes the new one on to its Linux socket.
pub fn listen_again(socket: SOCKET, backlog: i32) -> io::Result<()> {
    // SAFETY: a plain call on a socket handle the caller keeps open for its duration.
    if unsafe { listen(socket, backlog) } == SOCKET_ERROR {
        return Err(wsa_error("listen"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{File, OpenOptions};
    use std::os::windows::fs::OpenOptionsExt;
    use std::os::windows::process::CommandExt;
    use std::time::Instant;
    use windows_sys::Win32::Foundation::STILL_ACTIVE;

    /// Opens `path` sharing nothing: refused (ERROR_SHARING_VIOLATION) while any handle to it
    /// is open, ours or one a child inherited.
    fn open_alone(path: &Path) -> io::Result<File> {
        OpenOptions::new().write(true).create(true).truncate(true).share_mode(0).open(path)
    }

    /// `path` opened sharing nothing, its handle inheritable, as a launcher may leave one.
    fn inheritable_file(path: &Path) -> File {
        let file = open_alone(path).unwrap();
        // SAFETY: the handle is open (`file`); only its inherit flag changes.
        let set =
            unsafe { SetHandleInformation(file.as_raw_handle() as HANDLE, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT) };
        check(set, "SetHandleInformation").unwrap();
        file
    }

    #[test]
    fn the_child_inherits_no_handle_but_the_standard_ones() {
        let path = std::env::temp_dir().join(format!("damon-inherit-{}", std::process::id()));
        // Control: a child created with every inheritable handle (std's spawn) holds the file
        // open after we close it, so the check below can fail.
        let file = inheritable_file(&path);
        let mut control = std::process::Command::new("cmd.exe")
            .args(["/c", "exit"])
            .creation_flags(CREATE_SUSPENDED)
            .spawn()
            .unwrap();
        drop(file);
        let held = open_alone(&path).is_err();
        control.kill().unwrap();
        control.wait().unwrap();
        assert!(held, "the control child did not hold the inherited handle: the check could not fail");

        // damon's way: a handle list of the standard handles (under the test harness too).
        assert!(!handles_to_inherit(&inheritable_std_handles()).is_empty(), "no standard handle to list");
        let file = inheritable_file(&path);
        let child = create_suspended_process(OsStr::new("cmd.exe /c exit"), None, None).unwrap();
        drop(file);
        // Suspended, the child keeps what it inherited until it is terminated. A process
        // another test starts meanwhile (cmd for mklink) may hold the handle for a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut opened = open_alone(&path);
        while opened.is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            opened = open_alone(&path);
        }
        assert_eq!(exit_code(&child.handle).unwrap(), STILL_ACTIVE as u32, "the child is gone: nothing was shown");
        terminate_process_now(&child.handle).unwrap();
        drop(opened.expect("the child holds damon's inheritable handle"));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_list_names_each_open_inheritable_standard_handle_once() {
        let path = std::env::temp_dir().join(format!("damon-list-{}", std::process::id()));
        let inheritable = inheritable_file(&path);
        let plain = open_alone(&path.with_extension("plain")).unwrap();
        let (inheritable_handle, plain_handle) =
            (inheritable.as_raw_handle() as HANDLE, plain.as_raw_handle() as HANDLE);
        // stdout and stderr one handle, no stdin: listed once.
        assert_eq!(handles_to_inherit(&[null_mut(), inheritable_handle, inheritable_handle]), [inheritable_handle]);
        // INVALID_HANDLE_VALUE and a handle that is not inheritable would make the list refused.
        assert_eq!(handles_to_inherit(&[INVALID_HANDLE_VALUE, plain_handle, inheritable_handle]), [inheritable_handle]);
        drop((inheritable, plain));
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("plain"));
    }
}
