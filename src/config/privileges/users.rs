//! Users and groups named on the command line (`-u`, `-g`, the handler
//! and privileged identities): a name or a number, resolved once. Portable;
//! shared by the Linux privilege code and its stand-in elsewhere.

/// A user name or number.
pub fn resolve_user(option: &str, spec: &str) -> Result<u32, String> {
    if let Ok(n) = spec.parse::<u32>() {
        return Ok(n);
    }
    match nix::unistd::User::from_name(spec) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        _ => Err(format!(
            "{option} {spec:?}: no such user; give a user name or a number"
        )),
    }
}

/// A group name or number.
pub fn resolve_group(option: &str, spec: &str) -> Result<u32, String> {
    if let Ok(n) = spec.parse::<u32>() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(spec) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(format!(
            "{option} {spec:?}: no such group; give a group name or a number"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups_resolve() {
        assert_eq!(resolve_user("-u", "0"), Ok(0));
        assert_eq!(resolve_user("-u", "root"), Ok(0));
        assert!(resolve_user("-u", "no-such-livesync-user")
            .expect_err("bad")
            .contains("-u \"no-such-livesync-user\": no such user"));
        assert_eq!(resolve_group("-g", "12"), Ok(12));
        assert!(resolve_group("-g", "no-such-livesync-group").is_err());
    }
}
