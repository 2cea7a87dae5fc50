//! DAMON_SANDBOX on Windows: the closest a Job Object gives to Linux's sandbox. The job's UI
//! restrictions (JOB_OBJECT_UILIMIT_*) keep the workload from other desktops, global atoms,
//! USER handles of processes outside the job, system parameters and display settings, the
//! clipboard, and from logging off or shutting Windows down. No process can break away from
//! the job: damon never sets JOB_OBJECT_LIMIT_BREAKAWAY_OK or SILENT_BREAKAWAY_OK, so a
//! CreateProcess with CREATE_BREAKAWAY_FROM_JOB fails. The paths of DAMON_SANDBOX_PATHS are
//! Landlock's, Linux only: on Windows what a workload may open is its token's business, which
//! DAMON_RESTRICTED_TOKEN=Y narrows.

use windows_sys::Win32::System::JobObjects::{
    JOB_OBJECT_UILIMIT, JOB_OBJECT_UILIMIT_DESKTOP, JOB_OBJECT_UILIMIT_DISPLAYSETTINGS, JOB_OBJECT_UILIMIT_EXITWINDOWS,
    JOB_OBJECT_UILIMIT_GLOBALATOMS, JOB_OBJECT_UILIMIT_HANDLES, JOB_OBJECT_UILIMIT_READCLIPBOARD,
    JOB_OBJECT_UILIMIT_SYSTEMPARAMETERS, JOB_OBJECT_UILIMIT_WRITECLIPBOARD,
};

use super::identity::Identity;
use crate::config::{SandboxMode, SandboxSettings};
use crate::platform::IdentityError;

/// Every UI restriction a job has.
pub const UI_RESTRICTIONS: JOB_OBJECT_UILIMIT = JOB_OBJECT_UILIMIT_DESKTOP
    | JOB_OBJECT_UILIMIT_DISPLAYSETTINGS
    | JOB_OBJECT_UILIMIT_EXITWINDOWS
    | JOB_OBJECT_UILIMIT_GLOBALATOMS
    | JOB_OBJECT_UILIMIT_HANDLES
    | JOB_OBJECT_UILIMIT_READCLIPBOARD
    | JOB_OBJECT_UILIMIT_SYSTEMPARAMETERS
    | JOB_OBJECT_UILIMIT_WRITECLIPBOARD;

const ENFORCED: &str = "UI restrictions (desktop, display settings, exit Windows, global atoms, USER handles, \
                        clipboard, system parameters), no breakaway from the job";

#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    mode: Option<SandboxMode>,
}

impl Sandbox {
    pub fn none() -> Sandbox {
        Sandbox::default()
    }

    /// Never an error on Windows: the job gives every part of the Windows sandbox, or damon
    /// does not start (the container's creation fails).
    pub fn resolve(settings: &SandboxSettings, _identity: &Identity) -> Result<Sandbox, IdentityError> {
        if let Some((mask, source)) = &settings.extra_capabilities {
            return Err(IdentityError {
                source: source.clone(),
                value: crate::config::capability_names(*mask),
                reason: "Linux capabilities have no meaning on Windows, where the token decides: unset it".to_string(),
            });
        }
        Ok(Sandbox { mode: Some(settings.mode).filter(|m| *m != SandboxMode::Off) })
    }

    /// The UI restrictions to set on the job, if the sandbox is on.
    pub fn ui_restrictions(&self) -> Option<JOB_OBJECT_UILIMIT> {
        self.mode.map(|_| UI_RESTRICTIONS)
    }

    pub fn enforced(&self) -> String {
        match self.mode {
            None => "off".to_string(),
            Some(_) => ENFORCED.to_string(),
        }
    }

    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let mut facts = vec![("sandbox", self.enforced())];
        if self.mode.is_some() {
            facts.push(("sandbox paths", "Linux only (Landlock); on Windows the token decides".to_string()));
        }
        facts
    }
}
