//! Who the child runs as. On Windows it is always damon's own account: DAMON_RESTRICTED_TOKEN
//! restricts that account's token (see `ffi::restricted_token`), and DAMON_USER, which would
//! need the other account's password or a service's logon rights, is not supported. Refusing
//! it is safer than running the workload as an account the operator did not ask for.

use crate::config::UserSetting;
use crate::platform::IdentityError;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    restricted: bool,
}

impl Identity {
    pub fn unchanged() -> Identity {
        Identity::default()
    }

    pub fn resolve(user: Option<&UserSetting>, restricted: bool) -> Result<Identity, IdentityError> {
        match user {
            Some(setting) => Err(IdentityError {
                source: setting.source.clone(),
                value: setting.spec.to_string(),
                reason: "not supported on Windows: the child runs as damon's own account (DAMON_RESTRICTED_TOKEN=Y \
                         takes its privileges away); unset it"
                    .to_string(),
            }),
            None => Ok(Identity { restricted }),
        }
    }

    pub fn describe_user(&self) -> String {
        "damon's own account".to_string()
    }

    pub fn describe_privileges(&self) -> &'static str {
        if self.restricted {
            "restricted token: every privilege removed, Administrators deny-only"
        } else {
            "unchanged"
        }
    }
}
