//! `-M csync2`, through the binary, with a real two-node csync2 cluster on
//! loopback: node `127.0.0.1` is livesync's side (its tree is the watch
//! dir), node `127.0.0.2` is a real `csync2 -ii` server started by the test
//! on a free port. One config (in a temp `CSYNC2_SYSTEM_DIR`, so /etc is
//! never read) names both nodes, a pre-shared key, `nossl` (no certificates
//! needed on loopback) and a `prefix` that puts the tree at a different path
//! on each node; each node has its own database dir (`-D`). Each test checks
//! node 2's tree against the watch dir byte for byte (`tree_diff`).

mod common;
#[path = "common/servers.rs"]
mod servers;

use common::*;
use servers::{listening, Server};
use std::ffi::OsString;
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
const NODE1: &str = "127.0.0.1";
const NODE2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Two csync2 nodes sharing one config; node 2 runs as a server.
struct Cluster {
    env: TestEnv,
    etc: PathBuf,
    db1: PathBuf,
    db2: PathBuf,
    port: u16,
    peer: Option<Server>,
}

impl Cluster {
    fn new() -> Cluster {
        let env = TestEnv::new();
        let etc = env.root.join("etc");
        let db1 = env.root.join("db1");
        let db2 = env.root.join("db2");
        for d in [&etc, &db1, &db2] {
            fs::create_dir(d).unwrap();
        }
        let key = etc.join("csync2.key");
        let st = Command::new("csync2")
            .arg("-k")
            .arg(&key)
            .stdin(Stdio::null())
            .status()
            .expect("run csync2 -k");
        assert!(st.success(), "csync2 -k failed: {st}");
        fs::write(
            etc.join("csync2.cfg"),
            format!(
                "nossl * *;\n\
                 group livesync {{\n    host {NODE1};\n    host {NODE2};\n    key {};\n    \
                 include %tree%;\n    auto none;\n}}\n\
                 prefix tree {{\n    on {NODE1}: {};\n    on {NODE2}: {};\n}}\n",
                key.display(),
                env.src.display(),
                env.dst.display()
            ),
        )
        .unwrap();
        let mut c = Cluster {
            env,
            etc,
            db1,
            db2,
            port: 0,
            peer: None,
        };
        let mut last = String::new();
        for _ in 0..5 {
            c.port = free_port_on_node2();
            match c.spawn_peer() {
                Ok(s) => {
                    c.peer = Some(s);
                    return c;
                }
                Err(e) => last = e,
            }
        }
        panic!("cannot start the csync2 peer: {last}");
    }

    fn spawn_peer(&self) -> Result<Server, String> {
        let mut cmd = Command::new("csync2");
        cmd.env("CSYNC2_SYSTEM_DIR", &self.etc)
            .arg("-ii")
            .arg("-v")
            .arg("-N")
            .arg(NODE2.to_string())
            .arg("-D")
            .arg(&self.db2)
            .arg("-p")
            .arg(self.port.to_string());
        Server::spawn(
            cmd,
            "csync2 -ii",
            (NODE2, self.port),
            self.env.root.join("peer.log"),
        )
    }

    fn stop_peer(&mut self) {
        if let Some(mut p) = self.peer.take() {
            p.kill();
        }
    }

    fn restart_peer(&mut self) {
        self.stop_peer();
        let res = poll_until(T, || match self.spawn_peer() {
            Ok(s) => {
                self.peer = Some(s);
                true
            }
            Err(_) => false,
        });
        res.unwrap_or_else(|e| panic!("cannot restart the csync2 peer: {e}"));
    }

    fn peer_log(&self) -> String {
        self.peer.as_ref().map(|p| p.log_text()).unwrap_or_default()
    }

    fn diff(&self) -> Option<String> {
        self.env.diff()
    }

    fn has(&self, rel_path: &[u8]) -> bool {
        fs::symlink_metadata(self.env.dst_path(rel_path)).is_ok()
    }

    /// livesync -M csync2 as node 1 (no `-D`: the peers are csync2's).
    fn start(&self) -> Daemon {
        Daemon::bare()
            .args(["-H", "/NULL/", "-W"])
            .arg(&self.env.src)
            .args(["-M", "csync2", "-t0", "-w0", "--", "-N", NODE1, "-D"])
            .arg(&self.db1)
            .args(["-p", &self.port.to_string()])
            .env("CSYNC2_SYSTEM_DIR", &self.etc)
            .start()
    }

    /// Polls `cond`, failing at once if livesync exits; on failure shows
    /// both logs.
    fn wait<R: Pending>(&self, live: &mut Daemon, what: &str, mut cond: impl FnMut() -> R) {
        let mut exited = false;
        let res = poll_until(T, || {
            if !live.running() {
                exited = true;
                return None;
            }
            cond().pending()
        });
        if res.is_err() || exited {
            panic!(
                "{what}: {}\n{}\n--- peer log ---\n{}",
                res.err().unwrap_or_else(|| "livesync exited".to_string()),
                live.context(),
                self.peer_log()
            );
        }
    }

    fn wait_synced(&self, live: &mut Daemon, what: &str) {
        self.wait(live, what, || self.diff());
    }
}

fn free_port_on_node2() -> u16 {
    let l = TcpListener::bind((NODE2, 0)).expect("bind 127.0.0.2:0");
    l.local_addr().expect("local addr").port()
}

fn csync2_available() -> bool {
    require_tool("csync2")
}

#[test]
fn csync2_two_nodes_on_loopback_mirror_live() {
    if !csync2_available() {
        return;
    }
    let c = Cluster::new();
    assert!(listening(NODE2, c.port), "peer not listening");
    c.env.write("top.txt", "top");
    c.env.mkdir_p("gone/deeper");
    c.env.write("gone/deeper/inner", "inner");
    std::os::unix::fs::symlink("top.txt", c.env.src_path("link")).unwrap();
    let mut live = c.start();
    c.wait_synced(&mut live, "initial sync");

    c.env.write("new.txt", "created");
    c.env.mkdir_p("dir/sub");
    c.env.write("dir/sub/deep", "deep");
    c.wait_synced(&mut live, "created files");

    c.env.write("top.txt", "modified, and longer than before");
    c.env.write("dir/sub/deep", "DEEP");
    c.wait_synced(&mut live, "modified files");

    fs::remove_file(c.env.src_path("new.txt")).unwrap();
    fs::remove_dir_all(c.env.src_path("gone")).unwrap();
    c.wait_synced(&mut live, "deletions");
    assert!(!c.has(b"gone"));

    fs::rename(c.env.src_path("dir"), c.env.src_path("renamed dir")).unwrap();
    c.wait_synced(&mut live, "renamed directory");
    assert!(c.has(b"renamed dir/sub/deep") && !c.has(b"dir"));

    for name in [&b"with space"[..], b"line\nbreak", b"latin1-\xe9\xff"] {
        c.env.write(name, name);
    }
    c.env.mkdir_p(b"odd \xfe dir");
    c.env.write(b"odd \xfe dir/x\ny", "x");
    c.wait_synced(&mut live, "awkward names");
    fs::remove_file(c.env.src_path(b"line\nbreak")).unwrap();
    fs::remove_dir_all(c.env.src_path(b"odd \xfe dir")).unwrap();
    c.wait_synced(&mut live, "awkward names removed");
    c.wait(&mut live, "the peer logged its updates", || {
        c.peer_log().contains("Updated")
    });
}

/// The peer goes down while files change: `csync2 -u` fails, the batch is
/// retried with backoff (the changes stay dirty in csync2's database), and
/// everything arrives once the peer is back.
#[test]
fn csync2_peer_down_and_back_converges() {
    if !csync2_available() {
        return;
    }
    let mut c = Cluster::new();
    c.env.write("before", "1");
    let mut live = c.start();
    c.wait_synced(&mut live, "initial sync");
    // The peer's connection child records what it received in its database
    // when the connection ends; killed before that, the peer would take its
    // own copy for a local change (a conflict csync2 leaves to an admin).
    c.wait(&mut live, "the peer finished the initial sync", || {
        c.peer_log().contains("Finished with 0 errors")
    });

    c.stop_peer();
    c.env.write("while-down", "made while the peer was down");
    c.env.write("before", "changed while down");
    live.wait_for_log(T, "failed (try 2)");
    assert!(c.diff().is_some(), "synced although the peer was down");
    assert!(
        live.log().contains("csync2 exited with code 1"),
        "{}",
        live.log()
    );

    c.restart_peer();
    c.wait_synced(&mut live, "the retried batch after the peer came back");
}

/// csync2's peers come from its config: a `-D` is refused with a message
/// that says so (rather than silently ignored).
#[test]
fn csync2_refuses_a_destination() {
    let env = TestEnv::new();
    let r = run_livesync(
        &[
            OsString::from("-W"),
            env.src.clone().into(),
            "-D".into(),
            env.dst.clone().into(),
            "-M".into(),
            "csync2".into(),
            "-S".into(),
            "/bin/true".into(),
        ],
        secs(10.0),
    );
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("drop -D"), "{}", r.stderr);
}
