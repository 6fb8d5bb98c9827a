//! `dockerd` (Debian `docker.io`) on a containerd of the test's own, with its data, exec root
//! and socket in a temp dir; no bridge, no iptables. Stopped by PID on drop; whatever it left
//! mounted under its temp dir is unmounted.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::runtimes::{
    check, kill_mentioning, unmount_under, Containerd, CMD_TIMEOUT, START_TIMEOUT,
};
use crate::util::{eventually, pipe_lines, run_bounded, try_run, wait_bounded};

pub struct Dockerd {
    child: Child,
    sock: PathBuf,
    pub dir: tempfile::TempDir,
    /// Declared last: dropped after dockerd has stopped.
    containerd: Containerd,
}

impl Dockerd {
    pub fn start() -> Dockerd {
        let containerd = Containerd::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let sock = d.join("docker.sock");
        let mut child = Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--containerd")
            .arg(containerd.address())
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--storage-driver",
                "overlay2",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dockerd (Debian package docker.io)");
        let lines = pipe_lines(child.stderr.take().expect("stderr"), d.join("dockerd.log"));
        std::thread::spawn(move || while lines.recv().is_ok() {});
        let me = Dockerd {
            child,
            sock,
            dir,
            containerd,
        };
        let up = eventually(START_TIMEOUT, || {
            try_run(me.command(&["version"]), Duration::from_secs(5))
                .filter(|o| o.status.success())
                .map(|_| ())
        });
        assert!(up.is_some(), "dockerd did not start:\n{}", me.log());
        me
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        // `docker login` writes here, not in the user's home
        c.env("DOCKER_CONFIG", self.dir.path().join("config"))
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args);
        c
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        run_bounded(self.command(args), CMD_TIMEOUT)
    }

    pub fn docker_ok(&self, args: &[&str]) -> String {
        check(&format!("docker {}", args.join(" ")), self.docker(args))
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        if wait_bounded(&mut self.child, Duration::from_secs(15)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        kill_mentioning(&self.sock.to_string_lossy());
        unmount_under(self.dir.path());
    }
}
