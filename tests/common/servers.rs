//! Real servers for the remote-destination tests: an `rsync --daemon` and an
//! OpenSSH `sshd`, each bound to 127.0.0.1 on a free port, configured from
//! files in its own temp dir, and killed (with its whole process group) when
//! its guard is dropped; plus the generic [`Server`] guard that other
//! loopback servers (the csync2 peer in tests/csync2.rs) use.
//!
//! These helpers start and stop servers and report how to reach them; they
//! hold no test logic and never touch anything but loopback and their own
//! temp dirs — with one exception: OpenSSH's sshd refuses to start as root
//! without its privilege separation directory `/run/sshd`, which Debian's
//! init script creates at boot; [`Sshd::start`] creates it (0755) when it is
//! missing, as that script would.
//!
//! Include it from a test file with `#[path = "common/servers.rs"] mod servers;`
//! next to `mod common;`.

#![allow(dead_code)] // each test binary uses a different subset

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::fs;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    free_port_on(LOCALHOST)
}

/// A port on `addr` (a loopback address) that was free a moment ago.
pub fn free_port_on(addr: Ipv4Addr) -> u16 {
    let l = TcpListener::bind((addr, 0)).unwrap_or_else(|e| panic!("bind {addr}:0: {e}"));
    l.local_addr().expect("local addr").port()
}

/// Whether something accepts TCP connections on `addr`:`port`.
pub fn listening(addr: Ipv4Addr, port: u16) -> bool {
    TcpStream::connect_timeout(&(addr, port).into(), Duration::from_millis(200)).is_ok()
}

pub const LOCALHOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// A server child in its own process group, killed with that group (SIGKILL)
/// on drop, and told to die with the test process (PR_SET_PDEATHSIG).
pub struct Server {
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    /// Spawns `cmd` (stdout and stderr to `log`) and waits until it accepts
    /// connections on `addr`:`port`. Returns Err with the log when it exits
    /// first (port taken) or does not listen within 10 s.
    pub fn spawn(
        mut cmd: Command,
        what: &str,
        (addr, port): (Ipv4Addr, u16),
        log: PathBuf,
    ) -> Result<Server, String> {
        let out = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // SAFETY: prctl in the forked child before exec, async-signal-safe.
        #[cfg(target_os = "linux")] // PR_SET_PDEATHSIG is Linux's
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().map_err(|e| format!("spawn {what}: {e}"))?;
        let mut server = Server {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(c) = server.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    server.child = None;
                    return Err(format!("{what} exited ({st}): {}", server.log_text()));
                }
            }
            if listening(addr, port) {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{what} does not listen on {addr}:{port} after 10 s: {}",
                    server.log_text()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Kills the server's process group and reaps the server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The group id is our child's pid.
            let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `f` with fresh ports until the server it starts listens (another
/// process may take a port between our probe and the server's bind).
pub fn with_free_port<T>(what: &str, mut f: impl FnMut(u16) -> Result<T, String>) -> T {
    let mut last = String::new();
    for _ in 0..5 {
        match f(free_port()) {
            Ok(t) => return t,
            Err(e) => last = e,
        }
    }
    panic!("cannot start {what}: {last}");
}

fn write_file(p: &Path, text: &str, mode: u32) {
    fs::write(p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

fn is_root() -> bool {
    // SAFETY: plain syscall without arguments.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------
// rsync --daemon
// ---------------------------------------------------------------------------

/// `rsync --daemon --no-detach` on 127.0.0.1 with one writable module,
/// `module`, whose files live in `dir`.
pub struct Rsyncd {
    pub port: u16,
    pub dir: PathBuf,
    pub module: String,
    conf: PathBuf,
    log: PathBuf,
    server: Server,
}

impl Rsyncd {
    /// Starts a daemon serving `dir` (which must exist) as module `module`;
    /// its config and log go into `work` (an existing temp dir).
    pub fn start(work: &Path, dir: &Path, module: &str) -> Rsyncd {
        let conf = work.join("rsyncd.conf");
        let log = work.join("rsyncd.log");
        let mut text = format!(
            "use chroot = false\nmunge symlinks = false\nmax connections = 0\n\n[{module}]\n    \
             path = {}\n    read only = false\n",
            dir.display()
        );
        if is_root() {
            text.push_str("    uid = root\n    gid = root\n");
        }
        write_file(&conf, &text, 0o600);
        let (port, server) = with_free_port("rsync --daemon", |port| {
            Rsyncd::spawn(&conf, &log, port).map(|server| (port, server))
        });
        Rsyncd {
            port,
            dir: dir.to_path_buf(),
            module: module.to_string(),
            conf,
            log,
            server,
        }
    }

    fn spawn(conf: &Path, log: &Path, port: u16) -> Result<Server, String> {
        let mut cmd = Command::new("rsync");
        cmd.arg("--daemon")
            .arg("--no-detach")
            .arg(format!("--config={}", conf.display()))
            .arg("--address=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--log-file={}", log.display()));
        Server::spawn(
            cmd,
            "rsync --daemon",
            (LOCALHOST, port),
            log.with_extension("out"),
        )
    }

    /// `rsync://127.0.0.1:PORT/MODULE/` plus `sub` (no leading slash).
    pub fn url(&self, sub: &str) -> String {
        format!("rsync://127.0.0.1:{}/{}/{sub}", self.port, self.module)
    }

    /// Kills the daemon (and any transfer it is serving).
    pub fn stop(&mut self) {
        self.server.kill();
    }

    /// Starts the daemon again on the same port (after [`Rsyncd::stop`]).
    pub fn restart(&mut self) {
        self.server.kill();
        // The old socket may linger a moment; retry the same port briefly.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Rsyncd::spawn(&self.conf, &self.log, self.port) {
                Ok(s) => {
                    self.server = s;
                    return;
                }
                Err(e) if Instant::now() >= deadline => {
                    panic!("cannot restart rsync --daemon on port {}: {e}", self.port)
                }
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The daemon's transfer log, for failure messages.
    pub fn log_text(&self) -> String {
        let mut s = fs::read_to_string(&self.log).unwrap_or_default();
        s.push_str(&self.server.log_text());
        s
    }
}

// ---------------------------------------------------------------------------
// sshd
// ---------------------------------------------------------------------------

/// The sshd binary, where Debian puts it.
pub const SSHD: &str = "/usr/sbin/sshd";

/// OpenSSH's sshd on 127.0.0.1 with a throwaway host key, accepting one
/// throwaway client key for the current user (root included: pubkey only).
pub struct Sshd {
    pub port: u16,
    /// The client's private key.
    pub key: PathBuf,
    pub user: String,
    conf: PathBuf,
    log: PathBuf,
    server: Server,
}

impl Sshd {
    /// Starts sshd with its keys and config in `work` (an existing temp
    /// dir). `env` is set in every session (sshd's `SetEnv`), so that the
    /// remote side of a test stays inside temp dirs too.
    pub fn start(work: &Path, env: &[(&str, &Path)]) -> Sshd {
        if is_root() && !Path::new("/run/sshd").is_dir() {
            fs::create_dir_all("/run/sshd").expect("create /run/sshd (sshd's privsep dir)");
            fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755))
                .expect("chmod /run/sshd");
        }
        let host_key = work.join("ssh_host_ed25519_key");
        let key = work.join("client_key");
        for k in [&host_key, &key] {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "livesync-test", "-f"])
                .arg(k)
                .stdin(Stdio::null())
                .status()
                .expect("run ssh-keygen");
            assert!(st.success(), "ssh-keygen -f {} failed: {st}", k.display());
        }
        let auth = work.join("authorized_keys");
        let pubkey = fs::read_to_string(key.with_extension("pub")).expect("read client_key.pub");
        write_file(&auth, &pubkey, 0o600);
        let mut conf = format!(
            "HostKey {}\nPidFile none\nAuthorizedKeysFile {}\nStrictModes no\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nLogLevel ERROR\n",
            host_key.display(),
            auth.display()
        );
        if !env.is_empty() {
            conf.push_str("SetEnv");
            for (k, v) in env {
                conf.push_str(&format!(" {k}={}", v.display()));
            }
            conf.push('\n');
        }
        let conf_path = work.join("sshd_config");
        write_file(&conf_path, &conf, 0o600);
        let log = work.join("sshd.log");
        let (port, server) = with_free_port("sshd", |port| {
            Sshd::spawn(&conf_path, &log, port).map(|s| (port, s))
        });
        let user = nix_user();
        Sshd {
            port,
            key,
            user,
            conf: conf_path,
            log,
            server,
        }
    }

    fn spawn(conf: &Path, log: &Path, port: u16) -> Result<Server, String> {
        let mut cmd = Command::new(SSHD);
        cmd.arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(conf)
            .arg("-p")
            .arg(port.to_string())
            .args(["-o", "ListenAddress=127.0.0.1"]);
        Server::spawn(cmd, "sshd", (LOCALHOST, port), log.to_path_buf())
    }

    /// Kills sshd (its listener; sessions in flight die with their clients).
    pub fn stop(&mut self) {
        self.server.kill();
    }

    /// Starts sshd again on the same port (after [`Sshd::stop`]).
    pub fn restart(&mut self) {
        self.server.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Sshd::spawn(&self.conf, &self.log, self.port) {
                Ok(s) => {
                    self.server = s;
                    return;
                }
                Err(e) if Instant::now() >= deadline => {
                    panic!("cannot restart sshd on port {}: {e}", self.port)
                }
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The ssh command line (no host) that reaches this server without
    /// prompts or known_hosts writes: what rsync's `-e`/`RSYNC_RSH` takes.
    pub fn ssh_command(&self) -> String {
        format!("ssh {}", self.ssh_args())
    }

    /// Just the options of [`Sshd::ssh_command`].
    pub fn ssh_args(&self) -> String {
        format!(
            "-p {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o BatchMode=yes -o LogLevel=ERROR -o IdentitiesOnly=yes",
            self.port,
            self.key.display()
        )
    }

    /// `user@127.0.0.1`.
    pub fn host(&self) -> String {
        format!("{}@127.0.0.1", self.user)
    }

    pub fn log_text(&self) -> String {
        self.server.log_text()
    }
}

/// The current user's name (sshd logs in as it).
fn nix_user() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or NULL; it is
    // read at once, on this thread.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() {
            panic!("no passwd entry for the current uid");
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

/// `OsString` from a `String`, for argv building.
pub fn os(s: impl Into<String>) -> OsString {
    OsString::from(s.into())
}
