//! Start-up settings of `kms-sidecar serve`, from flags or the environment.

use std::path::PathBuf;

use clap::Args;

/// Where and how the sidecar listens.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Path of the Unix socket to listen on.
    #[arg(long = "socket", env = "PW_SIDECAR_SOCKET")]
    pub socket_path: PathBuf,

    /// Permission bits of the socket file, in octal. Only the owner and the
    /// configured group may connect: the peer's uid decides what it may do.
    #[arg(long, env = "PW_SIDECAR_SOCKET_MODE", default_value = "660", value_parser = parse_octal_mode)]
    pub socket_mode: u32,

    /// Seconds to let in-flight requests finish after SIGTERM or SIGINT.
    #[arg(long, env = "PW_SIDECAR_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

fn parse_octal_mode(text: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .map_err(|_| format!("socket mode must be octal like 660, got {text:?}"))?;
    if mode & !0o777 != 0 {
        return Err(format!("socket mode {text} has bits outside 0777"));
    }
    if mode & 0o007 != 0 {
        return Err(format!(
            "socket mode {text} lets any local user connect; drop the 'other' bits"
        ));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::parse_octal_mode;

    #[test]
    fn accepts_owner_and_group_modes() {
        assert_eq!(parse_octal_mode("660"), Ok(0o660));
        assert_eq!(parse_octal_mode("0o600"), Ok(0o600));
    }

    #[test]
    fn refuses_world_access_and_garbage() {
        assert!(parse_octal_mode("666").is_err());
        assert!(parse_octal_mode("1777").is_err());
        assert!(parse_octal_mode("rw-rw----").is_err());
    }
}
