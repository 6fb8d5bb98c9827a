//! `docs/airgap.md`, executed (issue 10: "the air-gapped walk-through is executed by a test, step
//! by step, in namespaces"). Each host of the walk-through is a network namespace of
//! `scripts/cluster.sh` (`NAME-1` … `NAME-N`, 10.78.0.I on one bridge, no route out), so mDNS
//! and the default ports work as they do on a real LAN. Each node has a temp HOME, which is also
//! the working directory, so the doc's default repo `~/.cidfs` is used as written. Its PATH is the
//! usual one with a directory holding only `cidfs` (a link to the binary under test) in front.
//! Before the first step, node 1's HOME gets `app.tar`, a docker-archive of a small generated
//! image, the file that the doc carries in on a USB stick.
//!
//! # The convention
//! A step is an HTML comment on the line right before a fenced `sh` (or `bash`) block:
//!
//! ```text
//! <!-- step: on=1,2,3 [save=VAR | save-line=VAR match="TEXT"] [run=VAR] [background | wait-lines=N | fails="TEXT"] -->
//! ```
//!
//! - `on=LIST`: run the block on these nodes, one after the other, as
//!   `ip netns exec NS env -i HOME=… PATH=… RUST_LOG=… VARS… bash -e -o pipefail -c BLOCK`; it
//!   must exit 0. Blocks without a marker (`text` examples, prose commands) are not run.
//! - `save=VAR`: the block's last non-empty stdout line becomes `$VAR` in every later step (one
//!   node only).
//! - `save-line=VAR match="TEXT"`: the one stdout line that starts with TEXT (after leading
//!   spaces) becomes `$VAR`.
//! - `run=VAR`: run the saved `$VAR` instead of the block; the block in the doc shows an example.
//! - `background`: start the block with `exec` put before its last command, so the process is the
//!   daemon itself. It must log `daemon is ready` within [`START_TIMEOUT`]. The test owns it and
//!   kills it by PID at the end, also when the test fails.
//! - `wait-lines=N`: re-run the block (bounded polling, [`WAIT_LINES_TIMEOUT`]) until it exits 0
//!   with at least N non-empty stdout lines (`cidfs swarm peers` while mDNS finds the others).
//! - `fails="TEXT"`: the block must exit non-zero, and its stderr or stdout must hold TEXT (so
//!   that it fails for the reason the doc gives, not because of a typo).
//!
//! A failing step panics with the doc line, the block, its stdout and stderr and the end of
//! every daemon's log. A doc without steps fails, and so does a marker this test does not
//! understand. After the last step the test checks the outcome, not just exit codes: `$IMAGE`
//! is the pushed image's CID; nodes 2 and 3 hold it in `~/app` (tag `v1`), with the manifest
//! node 1 pushed and exactly the generator's file tree; they fetched blocks from peers, node 1
//! sent some, node 3's registry endpoint served the manifest; nodes 1-3 share one swarm key
//! (mode 0600), log one fingerprint and see exactly each other. An outsider (node 4, when the
//! doc has one) holds another key, has no peers, and node 1 logged its failed handshake.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::images::gen::{self, GenSpec, GeneratedImage};
use crate::images::tree::{assert_same_tree, layers_of_oci_layout, tree_of_layers};
use crate::util::{eventually, pipe_lines, try_run, wait_bounded, Cluster, BIN, START_TIMEOUT};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/airgap.md");
/// Bound of one run of one block.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound of a `wait-lines` step.
const WAIT_LINES_TIMEOUT: Duration = Duration::from_secs(60);
const RUST_LOG: &str = "info,cidfs_p2p=debug,libp2p=warn";
/// Lines of each daemon log shown when a step fails.
const LOG_TAIL: usize = 60;

#[test]
fn the_airgap_walkthrough_runs_as_written() {
    let _turn = crate::util::swarm_turn();
    let started = Instant::now();
    let doc = std::fs::read_to_string(DOC).expect("read docs/airgap.md");
    let steps = parse_steps(&doc).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !steps.is_empty(),
        "docs/airgap.md has no `<!-- step: … -->` markers, so the test would check nothing"
    );
    let nodes = steps.iter().flat_map(|s| s.on.iter().copied()).max();
    let nodes = nodes.unwrap_or(0);
    assert!(
        nodes >= 3,
        "the walk-through runs on {nodes} nodes; it is meant for 3 or more"
    );
    let mut walk = Walk::new(nodes);
    let img = walk.put_image();
    for s in &steps {
        walk.step(s);
    }
    walk.check_outcome(&img);
    eprintln!(
        "docs/airgap.md: {} steps on {nodes} nodes in {:.1}s",
        steps.len(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// the doc's steps

#[derive(Debug, Clone, PartialEq)]
enum Mode {
    Run,
    Background,
    WaitLines(usize),
    /// Must exit non-zero, saying this (on stderr or stdout).
    Fails(String),
}

#[derive(Debug)]
enum Save {
    /// The last non-empty stdout line.
    Last(String),
    /// The stdout line that starts (after spaces) with the text.
    Line { var: String, prefix: String },
}

#[derive(Debug)]
struct Step {
    /// 1-based line of the marker in the doc.
    line: usize,
    on: Vec<usize>,
    mode: Mode,
    save: Option<Save>,
    /// Run this saved variable's value instead of the block.
    run: Option<String>,
    block: String,
}

/// Every step of the doc, in order, or what is wrong with a marker (naming its line).
fn parse_steps(doc: &str) -> Result<Vec<Step>, String> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut steps = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.trim().strip_prefix("<!-- step:") else {
            continue;
        };
        let bad = |what: &str| format!("docs/airgap.md:{}: {what}", i + 1);
        let words = rest
            .strip_suffix("-->")
            .ok_or_else(|| bad("a step marker ends with --> on its own line"))?;
        let fence = lines.get(i + 1).map(|l| l.trim()).unwrap_or_default();
        if fence != "```sh" && fence != "```bash" {
            return Err(bad(&format!(
                "a step marker must be followed by a ```sh block, not {fence:?}"
            )));
        }
        let body = &lines[i + 2..];
        let end = body
            .iter()
            .position(|l| l.trim() == "```")
            .ok_or_else(|| bad("the block never ends"))?;
        let block = body[..end].join("\n");
        if block.trim().is_empty() {
            return Err(bad("empty block"));
        }
        steps.push(parse_step(i + 1, words, block).map_err(|e| bad(&e))?);
    }
    Ok(steps)
}

fn parse_step(line: usize, words: &str, block: String) -> Result<Step, String> {
    let mut step = Step {
        line,
        on: Vec::new(),
        mode: Mode::Run,
        save: None,
        run: None,
        block,
    };
    let mut save_line: Option<String> = None;
    let mut prefix: Option<String> = None;
    let set_mode = |step: &mut Step, m: Mode| {
        if step.mode != Mode::Run {
            return Err(format!("{:?} and {m:?} in one step", step.mode));
        }
        step.mode = m;
        Ok(())
    };
    for (key, value) in split_words(words)? {
        match (key.as_str(), value) {
            ("on", Some(v)) => {
                step.on = v
                    .split(',')
                    .map(|n| match n.parse::<usize>() {
                        Ok(n) if n >= 1 => Ok(n),
                        _ => Err(format!("bad node {n:?} in on={v}")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            ("save", Some(v)) => step.save = Some(Save::Last(var_name(v)?)),
            ("save-line", Some(v)) => save_line = Some(var_name(v)?),
            ("match", Some(v)) if !v.is_empty() => prefix = Some(v),
            ("run", Some(v)) => step.run = Some(var_name(v)?),
            ("background", None) => set_mode(&mut step, Mode::Background)?,
            ("fails", Some(v)) if !v.is_empty() => set_mode(&mut step, Mode::Fails(v))?,
            ("wait-lines", Some(v)) => match v.parse::<usize>() {
                Ok(n) if n >= 1 => set_mode(&mut step, Mode::WaitLines(n))?,
                _ => return Err(format!("bad wait-lines={v}")),
            },
            (k, v) => {
                let v = v.map(|v| format!("={v}")).unwrap_or_default();
                return Err(format!("unknown step word {k}{v}"));
            }
        }
    }
    match (save_line, prefix) {
        (Some(var), Some(prefix)) if step.save.is_none() => {
            step.save = Some(Save::Line { var, prefix })
        }
        (None, None) => {}
        _ => return Err("save-line=VAR needs match=\"TEXT\" (and no save=)".into()),
    }
    if step.on.is_empty() {
        return Err("a step needs on=NODES".into());
    }
    if step.save.is_some() && (step.on.len() != 1 || step.mode != Mode::Run) {
        return Err("save and save-line run on one node, in a plain step".into());
    }
    Ok(step)
}

/// `key`, `key=value` and `key="value with spaces"`, separated by spaces.
fn split_words(s: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut chars = s.trim().chars().peekable();
    while chars.peek().is_some() {
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != ' ' && *c != '=') {
            key.push(c);
        }
        let mut value = None;
        if chars.next_if_eq(&'=').is_some() {
            let mut v = String::new();
            if chars.next_if_eq(&'"').is_some() {
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => v.push(c),
                        None => return Err(format!("unclosed quote after {key}=")),
                    }
                }
            } else {
                while let Some(c) = chars.next_if(|c| *c != ' ') {
                    v.push(c);
                }
            }
            value = Some(v);
        }
        out.push((key, value));
        while chars.next_if_eq(&' ').is_some() {}
    }
    Ok(out)
}

fn var_name(v: String) -> Result<String, String> {
    let ok = v.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && v.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(v)
    } else {
        Err(format!("{v:?} is not a variable name (A-Z, 0-9, _)"))
    }
}

/// The block with `exec` before its last command (after any `NAME=value` words), so the
/// process started is that command itself.
fn exec_last_command(line: usize, block: &str) -> String {
    let mut lines: Vec<String> = block.lines().map(str::to_string).collect();
    let last = lines
        .iter()
        .rposition(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .unwrap_or_else(|| panic!("docs/airgap.md:{line}: a background block needs a command"));
    let words: Vec<&str> = lines[last].split_whitespace().collect();
    let is_assignment = |w: &str| {
        w.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    let n = words.iter().take_while(|w| is_assignment(w)).count();
    let mut with_exec: Vec<&str> = words[..n].to_vec();
    with_exec.push("exec");
    with_exec.extend_from_slice(&words[n..]);
    lines[last] = with_exec.join(" ");
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------------
// the hosts

/// A `background` step's process, killed by PID on drop.
struct Background {
    node: usize,
    child: Child,
    log: PathBuf,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_bounded(&mut self.child, Duration::from_secs(30));
    }
}

/// The state of a walk through the doc. Fields drop in order: the daemons die before their
/// namespaces go, and the temp dir goes last.
struct Walk {
    daemons: Vec<Background>,
    cluster: Cluster,
    nodes: usize,
    /// `NAME=value` of the saved variables, in the order they were saved.
    vars: Vec<(String, String)>,
    path: String,
    tmp: tempfile::TempDir,
}

impl Walk {
    fn new(nodes: usize) -> Walk {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir bin");
        std::os::unix::fs::symlink(BIN, bin.join("cidfs")).expect("link cidfs");
        for n in 1..=nodes {
            std::fs::create_dir(tmp.path().join(format!("home{n}"))).expect("mkdir home");
        }
        let usual = std::env::var("PATH").unwrap_or_else(|_| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
        });
        Walk {
            daemons: Vec::new(),
            cluster: Cluster::up(nodes, ""),
            nodes,
            vars: Vec::new(),
            path: format!("{}:{usual}", bin.display()),
            tmp,
        }
    }

    fn home(&self, node: usize) -> PathBuf {
        self.tmp.path().join(format!("home{node}"))
    }

    /// Puts `app.tar`, a docker-archive of a small generated image, in node 1's HOME.
    fn put_image(&self) -> GeneratedImage {
        let spec = GenSpec {
            tag: "v1".into(),
            big_file_size: 1 << 20,
            seed: 10,
            ..Default::default()
        };
        let img = gen::build_oci_layout(&self.tmp.path().join("layout"), &spec);
        let tar = self.home(1).join("app.tar");
        gen::to_docker_archive(&img.layout, &img.tag, &tar, "example/app:1.0");
        img
    }

    fn command(&self, node: usize, script: &str) -> Command {
        let home = self.home(node);
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.cluster.ns(node), "env", "-i"])
            .arg(format!("HOME={}", home.display()))
            .arg(format!("PATH={}", self.path))
            .arg(format!("RUST_LOG={RUST_LOG}"));
        for (k, v) in &self.vars {
            c.arg(format!("{k}={v}"));
        }
        c.args(["bash", "-e", "-o", "pipefail", "-c", script])
            .current_dir(home)
            .stdin(Stdio::null());
        c
    }

    /// Runs `script` on `node` (bounded); `None` if it timed out.
    fn run(&self, node: usize, script: &str) -> Option<Output> {
        try_run(self.command(node, script), STEP_TIMEOUT)
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn step(&mut self, s: &Step) {
        let script = match &s.run {
            Some(v) => match self.var(v) {
                Some(line) => line.to_string(),
                None => panic!("docs/airgap.md:{}: run={v}, but no step saved {v}", s.line),
            },
            None => s.block.clone(),
        };
        for &node in &s.on {
            let t = Instant::now();
            match &s.mode {
                Mode::Background => self.start(s, node, &script),
                Mode::Run => {
                    let out = self.run(node, &script);
                    let out = match out {
                        Some(o) if o.status.success() => o,
                        o => self.fail(s, node, &script, "failed", o.as_ref()),
                    };
                    if let Some(save) = &s.save {
                        self.save(s, node, &script, save, &out);
                    }
                }
                Mode::Fails(text) => match self.run(node, &script) {
                    Some(o) if !o.status.success() && said(&o, text) => {}
                    Some(o) if !o.status.success() => {
                        let what = format!("failed without saying {text:?}");
                        self.fail(s, node, &script, &what, Some(&o))
                    }
                    o => self.fail(s, node, &script, "should have failed", o.as_ref()),
                },
                &Mode::WaitLines(n) => {
                    let mut last = None;
                    let done = eventually(WAIT_LINES_TIMEOUT, || {
                        let out = self.run(node, &script)?;
                        let ok = out.status.success() && non_empty_lines(&out.stdout).len() >= n;
                        last = Some(out);
                        ok.then_some(())
                    });
                    if done.is_none() {
                        let what =
                            format!("printed fewer than {n} lines for {WAIT_LINES_TIMEOUT:?}");
                        self.fail(s, node, &script, &what, last.as_ref());
                    }
                }
            }
            eprintln!(
                "docs/airgap.md:{} on node {node}: {:?} done in {:.1}s",
                s.line,
                s.mode,
                t.elapsed().as_secs_f64()
            );
        }
    }

    fn save(&mut self, s: &Step, node: usize, script: &str, save: &Save, out: &Output) {
        let lines = non_empty_lines(&out.stdout);
        let (var, value) = match save {
            Save::Last(var) => (var, lines.last().cloned()),
            Save::Line { var, prefix } => {
                let found: Vec<&String> = lines
                    .iter()
                    .filter(|l| l.starts_with(prefix.as_str()))
                    .collect();
                (var, (found.len() == 1).then(|| found[0].clone()))
            }
        };
        match value {
            Some(v) => self.vars.push((var.clone(), v)),
            None => self.fail(
                s,
                node,
                script,
                &format!("printed no line to save as {var}"),
                Some(out),
            ),
        }
    }

    /// Starts a `background` step on `node` and waits (bounded) for `daemon is ready`.
    fn start(&mut self, s: &Step, node: usize, script: &str) {
        let script = exec_last_command(s.line, script);
        let mut cmd = self.command(node, &script);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn a background step");
        let log = self
            .tmp
            .path()
            .join(format!("node{node}-{}.log", self.daemons.len()));
        let stderr = child.stderr.take().expect("stderr");
        let lines = pipe_lines(stderr, log.clone());
        self.daemons.push(Background { node, child, log });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) if l.contains("daemon is ready") => return,
                Ok(_) => {}
                Err(_) => {
                    let what = format!("did not log `daemon is ready` within {START_TIMEOUT:?} (it exited, or is still starting)");
                    self.fail(s, node, &script, &what, None)
                }
            }
        }
    }

    fn fail(&self, s: &Step, node: usize, script: &str, what: &str, out: Option<&Output>) -> ! {
        let (stdout, stderr, status) = match out {
            Some(o) => (
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
                o.status.to_string(),
            ),
            None => (
                String::new(),
                String::new(),
                "no exit status (timed out or in the background)".into(),
            ),
        };
        panic!(
            "docs/airgap.md:{} on node {node}: the block {what} ({status})\n--- block ---\n{script}\n\
             --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n{}",
            s.line,
            self.daemon_logs()
        );
    }

    fn daemon_logs(&self) -> String {
        let mut all = String::new();
        for d in &self.daemons {
            let log = std::fs::read_to_string(&d.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            all.push_str(&format!(
                "--- node {} daemon (pid {}), last {} lines of {} ---\n{}\n",
                d.node,
                d.child.id(),
                tail.len(),
                d.log.display(),
                tail.join("\n")
            ));
        }
        all
    }

    // -----------------------------------------------------------------------------------------
    // what the walk-through must have achieved

    /// Runs `cidfs ARGS` on `node` and returns stdout (panics with the daemon logs on failure).
    fn cidfs(&self, node: usize, args: &str) -> String {
        let out = self.run(node, &format!("cidfs {args}"));
        match out {
            Some(o) if o.status.success() => String::from_utf8(o.stdout).expect("utf-8"),
            o => panic!(
                "after the walk-through, `cidfs {args}` on node {node} failed: {}\n{}",
                o.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_else(|| "timed out".into()),
                self.daemon_logs()
            ),
        }
    }

    /// One numeric line (`Key: value`) of `cidfs repo stat` on `node`.
    fn stat(&self, node: usize, key: &str) -> u64 {
        let out = self.cidfs(node, "repo stat");
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("node {node}: repo stat has no {key}:\n{out}"))
    }

    fn peer_id(&self, node: usize) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.cidfs(node, "id")).expect("id json");
        v["ID"].as_str().expect("ID").to_string()
    }

    /// The peer IDs `cidfs swarm peers` lists on `node`.
    fn peers(&self, node: usize) -> BTreeSet<String> {
        self.cidfs(node, "swarm peers")
            .lines()
            .filter_map(|l| l.rsplit("/p2p/").next())
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.trim().to_string())
            .collect()
    }

    /// Everything the daemons of `node` logged.
    fn daemon_log(&self, node: usize) -> String {
        let logs = self.daemons.iter().filter(|d| d.node == node);
        logs.map(|d| std::fs::read_to_string(&d.log).unwrap_or_default())
            .collect()
    }

    /// The fingerprint the daemons of `node` logged (`swarm key fingerprint: …`), if any.
    fn logged_fingerprint(&self, node: usize) -> Option<String> {
        self.daemon_log(node).lines().find_map(|l| {
            let f = l.split("swarm key fingerprint: ").nth(1)?;
            Some(f.split_whitespace().next()?.to_string())
        })
    }

    fn check_outcome(&self, img: &GeneratedImage) {
        let members = [1, 2, 3];
        let image = self
            .var("IMAGE")
            .expect("the walk-through saves the pushed image's CID as IMAGE")
            .to_string();
        assert!(
            image.starts_with("bafkrei"),
            "IMAGE={image:?} is not an image CID"
        );

        // nodes 2 and 3 pulled the manifest node 1 pushed, and the exact files of the image
        let inspect: serde_json::Value =
            serde_json::from_str(&self.cidfs(1, &format!("image inspect --json {image}")))
                .expect("inspect json");
        let pushed = inspect["images"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["platform"] == "linux/amd64")
            .and_then(|i| i["descriptor"]["digest"].as_str())
            .unwrap_or_else(|| panic!("node 1 inspects no linux/amd64 manifest: {inspect}"));
        for node in [2, 3] {
            let layout = self.home(node).join("app");
            assert!(
                layout.join("index.json").is_file(),
                "node {node} has no OCI layout at ~/app"
            );
            let pulled = layers_of_oci_layout(&layout, Some("v1"));
            assert_eq!(
                pulled.manifest_digest, pushed,
                "node {node} pulled another manifest than node 1 pushed"
            );
            assert_same_tree(&img.expected, &tree_of_layers(&pulled.layers));
            // it came over the swarm
            let fetched = self.stat(node, "BlocksFetched");
            assert!(fetched > 0, "node {node} fetched no block from its peers");
        }
        assert!(self.stat(1, "BlocksSent") > 0, "node 1 sent no block");
        assert!(
            self.stat(3, "RegistryManifests") > 0,
            "node 3's registry endpoint served no manifest"
        );

        // one key, one fingerprint; each member sees exactly the other members
        let key_of = |node: usize| {
            let path = self.home(node).join(".cidfs/swarm.key");
            let meta = std::fs::metadata(&path)
                .unwrap_or_else(|e| panic!("node {node}: {}: {e}", path.display()));
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                meta.permissions().mode() & 0o777,
                0o600,
                "node {node}: swarm.key mode"
            );
            std::fs::read(&path).expect("read swarm.key")
        };
        let key = key_of(1);
        let fingerprint = self.logged_fingerprint(1);
        assert!(
            fingerprint.is_some(),
            "node 1's daemon logged no key fingerprint"
        );
        let ids: Vec<String> = members.iter().map(|&n| self.peer_id(n)).collect();
        for (i, &node) in members.iter().enumerate() {
            assert!(
                key_of(node) == key,
                "node {node} holds another swarm key than node 1"
            );
            assert_eq!(
                self.logged_fingerprint(node),
                fingerprint,
                "node {node}'s fingerprint"
            );
            let expected: BTreeSet<String> = ids
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, id)| id.clone())
                .collect();
            assert_eq!(self.peers(node), expected, "the peers of node {node}");
        }

        // an outsider (any node past 3) holds its own key, reached node 1 (whose log shows the
        // failed handshake: the wrong key, not a wrong address) and got in nowhere
        for node in 4..=self.nodes {
            if self.daemons.iter().any(|d| d.node == node) {
                assert!(key_of(node) != key, "node {node} holds the members' key");
                assert_ne!(self.logged_fingerprint(node), fingerprint);
                assert!(
                    self.peers(node).is_empty(),
                    "outsider node {node} has peers"
                );
                let from = format!("/ip4/10.78.0.{node}/");
                let refused = eventually(Duration::from_secs(30), || {
                    let log = self.daemon_log(1);
                    let mut lines = log.lines();
                    lines
                        .any(|l| l.contains("incoming connection failed") && l.contains(&from))
                        .then_some(())
                });
                assert!(
                    refused.is_some(),
                    "node 1 logged no failed incoming connection from node {node} ({from})\n{}",
                    self.daemon_logs()
                );
            }
        }
    }
}

/// Whether a command's stderr or stdout holds `text`.
fn said(out: &Output, text: &str) -> bool {
    String::from_utf8_lossy(&out.stderr).contains(text)
        || String::from_utf8_lossy(&out.stdout).contains(text)
}

fn non_empty_lines(b: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(b)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The marker parser itself, on a doc of its own.
#[test]
fn markers_parse_and_bad_ones_name_their_line() {
    let doc = "x\n<!-- step: on=1 save-line=JOIN match=\"cidfs init --swarm-key-from \" -->\n\
               ```sh\ncidfs init --private\n```\n\
               <!-- step: on=2,3 wait-lines=2 -->\n```bash\ncidfs swarm peers\n```\n";
    let steps = parse_steps(doc).expect("parses");
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].line, 2);
    assert!(matches!(&steps[0].save, Some(Save::Line { var, prefix })
        if var == "JOIN" && prefix == "cidfs init --swarm-key-from "));
    assert_eq!(steps[0].block, "cidfs init --private");
    assert_eq!(steps[1].on, vec![2, 3]);
    assert_eq!(steps[1].mode, Mode::WaitLines(2));
    for (bad, why) in [
        (
            "<!-- step: on=1 backgruond -->\n```sh\ntrue\n```",
            "unknown step word",
        ),
        (
            "<!-- step: on=1 -->\n\n```sh\ntrue\n```",
            "must be followed",
        ),
        ("<!-- step: on=1,2 save=X -->\n```sh\ntrue\n```", "one node"),
        (
            "<!-- step: on=1 fails=x background -->\n```sh\ntrue\n```",
            "in one step",
        ),
        (
            "<!-- step: on=1 save-line=X -->\n```sh\ntrue\n```",
            "needs match",
        ),
        ("<!-- step: save=X -->\n```sh\ntrue\n```", "needs on="),
    ] {
        let err = parse_steps(&format!("text\n{bad}\n")).expect_err(bad);
        assert!(
            err.starts_with("docs/airgap.md:2: ") && err.contains(why),
            "{bad}: {err}"
        );
    }
    assert_eq!(
        exec_last_command(1, "export A=1  # x\nB=2 cidfs daemon\n# done"),
        "export A=1  # x\nB=2 exec cidfs daemon\n# done"
    );
}
