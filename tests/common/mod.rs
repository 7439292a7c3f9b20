//! Helpers for tests that run the netbootd binary: private temp directories, a clean
//! environment (no NETBOOTD_/SMEE_ variables leak in from the machine), and a running server
//! whose log lines can be awaited with a deadline.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub mod byo;
pub mod kube;
pub mod netns;

pub const BIN: &str = env!("CARGO_BIN_EXE_netbootd");

/// A peer program the test command builds or unpacks: the path in the environment variable
/// `var` (tests/run.sh exports them), else `path` below target/peers.
pub fn peer(var: &str, path: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/peers")
            .join(path)
    })
}

/// The tools (on PATH, or a path) of `tools` that are missing.
pub fn missing_tools(tools: &[&str]) -> Vec<String> {
    tools
        .iter()
        .filter(|tool| {
            let on_path = std::env::var_os("PATH")
                .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
                .unwrap_or(false);
            !on_path && !Path::new(tool).is_file()
        })
        .map(|tool| tool.to_string())
        .collect()
}

/// A loopback test that runs third-party tools: without one it fails, naming what is missing
/// (a test never reports "ok" without having run).
pub fn need_tools(test: &str, tools: &[&str]) {
    let missing = missing_tools(tools);
    if !missing.is_empty() {
        panic!(
            "{test}: cannot run without {} (./tests/run.sh installs them)",
            missing.join(", ")
        );
    }
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("netbootd-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config that needs nothing from the host: "auto" is loopback's address and the iPXE
/// directory is the test's own, so `check` reports no host-dependent warnings.
pub fn base_config(dir: &TempDir, hardware: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.path("ipxe")).unwrap();
    // Every file the default --dhcp-ipxe-binaries table names (check warns about a missing one).
    for binary in ["undionly.kpxe", "ipxe.efi", "snp.efi"] {
        dir.write(&format!("ipxe/{binary}"), "placeholder");
    }
    dir.write(
        "netbootd.toml",
        &format!(
            "public-ip-interface = \"lo\"\nipxe-dir = \"ipxe\"\nbackend-file-path = {:?}\n",
            hardware.display().to_string()
        ),
    )
}

/// A loopback port free for both TCP and UDP when asked (the server binds it right after).
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The binary with an empty environment plus `env`.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env)
        .stdin(Stdio::null())
        .output()
        .expect("netbootd runs")
}

/// curl, silent but for errors, 10 s at most.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl runs")
}

/// Status and body of a GET of `url` (with `extra` curl arguments).
pub fn http_get(url: &str, extra: &[&str]) -> (u16, String) {
    let mut args = vec!["-w", "\n%{http_code}"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = text(&curl(&args).stdout);
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_string())
}

/// Status and body of a plain GET.
pub fn get(url: &str) -> (u16, String) {
    http_get(url, &[])
}

/// netbootd with DHCP, TFTP and syslog off and HTTP on a free loopback port, plus `args`,
/// once it serves HTTP; returns it and its base URL (`http://127.0.0.1:PORT`).
pub fn start_http_only(args: &[&str]) -> (Server, String) {
    let port = free_port().to_string();
    let mut all = vec![
        "--dhcp-enabled=false",
        "--tftp-enabled=false",
        "--syslog-enabled=false",
        "--http-addr",
        "127.0.0.1",
        "--http-port",
        &port,
    ];
    all.extend_from_slice(args);
    let mut server = Server::start(&all);
    server.wait_for("HTTP on 127.0.0.1", Duration::from_secs(20));
    (server, format!("http://127.0.0.1:{port}"))
}

/// Waits for a helper that prints `ready` on its standard output (piped) once it listens.
pub fn wait_ready(child: &mut Child) {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the helper did not start");
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A netbootd process whose stderr lines arrive on a channel. Killed if still running on drop.
pub struct Server {
    pub child: Child,
    lines: Receiver<(Instant, String)>,
    pub seen: Vec<String>,
    /// When each line of `seen` arrived.
    pub seen_at: Vec<Instant>,
    /// The private state directory, removed with the server.
    _state: Option<TempDir>,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        Server::spawn(command(args, &[]))
    }

    /// Runs `cmd` (the binary, possibly behind `ip netns exec`) with its stderr captured.
    /// Unless the test names one, the server gets a state directory of its own (where it keeps
    /// the last good inventory), so that no two tests share one.
    pub fn spawn(mut cmd: Command) -> Server {
        let named = cmd
            .get_args()
            .any(|a| a.to_str().is_some_and(|a| a.starts_with("--state-dir")))
            || cmd.get_envs().any(|(k, _)| k == "NETBOOTD_STATE_DIR");
        let state = (!named).then(|| {
            let dir = TempDir::new("state");
            // Writable after a privilege drop to nobody.
            std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .unwrap();
            cmd.env("NETBOOTD_STATE_DIR", &dir.0);
            dir
        });
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netbootd");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            lines,
            seen: Vec::new(),
            seen_at: Vec::new(),
            _state: state,
        }
    }

    /// Waits for a log line containing `needle`; returns it and how long it took.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> (String, Duration) {
        let start = Instant::now();
        loop {
            let left = limit.checked_sub(start.elapsed()).unwrap_or_default();
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    self.seen.push(line.clone());
                    self.seen_at.push(at);
                    if line.contains(needle) {
                        return (line, start.elapsed());
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no log line with {needle:?} within {limit:?}; log so far:\n{}",
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "netbootd exited before logging {needle:?}; log:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything logged so far (waiting up to `settle` for lines still on their way).
    pub fn log(&mut self, settle: Duration) -> String {
        while let Ok((at, line)) = self.lines.recv_timeout(settle) {
            self.seen.push(line);
            self.seen_at.push(at);
        }
        self.seen.join("\n")
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal)
            .expect("signal netbootd");
    }

    /// Sends `signal`, waits for netbootd to log that it is stopping, and returns its exit code.
    pub fn stop(&mut self, signal: nix::sys::signal::Signal, limit: Duration) -> i32 {
        self.signal(signal);
        self.wait_for(&format!("stopping on {signal}"), limit);
        self.wait_exit(limit)
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> i32 {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("netbootd did not exit within {limit:?}");
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
