//! The deploy files (issue 10), checked by the tools that read them, with no systemd, Docker or
//! Kubernetes to run them: `systemd-analyze verify` for the unit, kubernetes-validate
//! (`scripts/test.sh` installs it into target/venv) for the manifests, and the compose contract
//! that tests/deploy.rs relies on. Each check also meets a broken copy, to show it can fail.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_yaml_ng::Value;

use crate::util::{run_bounded, BIN};

const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// kubernetes-validate bundles schemas from 1.25 on; the manifests target 1.30 and later.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn toml_table(text: &str, what: &str) -> toml::Table {
    text.parse().unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s:?}")))
        .collect()
}

/// Everything a finished command printed.
fn printed(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Fails unless `program` runs (with `--version`); `hint` says how to install it.
fn require_tool(program: &Path, hint: &str) {
    let mut cmd = Command::new(program);
    cmd.arg("--version");
    let ran = crate::util::try_run(cmd, TOOL_TIMEOUT);
    assert!(
        ran.is_some_and(|o| o.status.success()),
        "{} does not run: {hint}",
        program.display()
    );
}

/// Why the cidfs CLI refuses `args`, if it does: clap parses every flag and value before the
/// trailing --help.
fn cli_refusal(args: &[&str]) -> Option<String> {
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--help");
    let out = run_bounded(cmd, TOOL_TIMEOUT);
    (!out.status.success()).then(|| printed(&out))
}

fn assert_cli_accepts(args: &[&str], whose: &str) {
    if let Some(e) = cli_refusal(args) {
        panic!("{whose}: `cidfs {}` is refused:\n{e}", args.join(" "));
    }
}

/// Dotted names of the keys of `doc` that `reference` lacks, or has with another type.
fn unknown_keys(doc: &toml::Table, reference: &toml::Table, prefix: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for (k, v) in doc {
        let name = format!("{prefix}{k}");
        match (v, reference.get(k)) {
            (toml::Value::Table(t), Some(toml::Value::Table(r))) => {
                bad.extend(unknown_keys(t, r, &format!("{name}.")))
            }
            (v, Some(r)) if v.type_str() == r.type_str() => {}
            _ => bad.push(name),
        }
    }
    bad
}

/// A cidfs.toml uses only keys of config/cidfs.toml, with the same types.
fn assert_known_config(text: &str, what: &str) -> toml::Table {
    let reference = toml_table(&read(&repo_file("config/cidfs.toml")), "config/cidfs.toml");
    let doc = toml_table(text, what);
    let bad = unknown_keys(&doc, &reference, "");
    assert!(
        bad.is_empty(),
        "{what}: keys config/cidfs.toml lacks (or types it differs in): {bad:?}"
    );
    doc
}

// ---------------------------------------------------------------------------------------------
// systemd

/// `systemd-analyze verify` on `unit`: Err(what it printed) unless it prints nothing at all
/// (it exits 0 on "Unknown key" warnings). verify also wants ExecStart's binary to exist, so a
/// drop-in runs the unit's own ExecStart arguments with the binary under test.
fn verify_unit(unit: &Path) -> Result<(), String> {
    let text = read(unit);
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart= line");
    let args = exec.split_once(' ').map_or("", |(_, a)| a);
    let dropins = tempfile::tempdir().unwrap();
    let name = unit.file_name().unwrap().to_str().unwrap();
    let dir = dropins.path().join(format!("{name}.d"));
    fs::create_dir(&dir).unwrap();
    fs::write(
        dir.join("binary-under-test.conf"),
        format!("[Service]\nExecStart=\nExecStart={BIN} {args}\n"),
    )
    .unwrap();
    let mut cmd = Command::new("systemd-analyze");
    cmd.args(["verify", "--man=no", "--generators=no"])
        .arg(unit)
        // verify appends this to the unit's own directory; the trailing ':' keeps the defaults
        .env(
            "SYSTEMD_UNIT_PATH",
            format!("{}:", dropins.path().display()),
        )
        .current_dir(dropins.path());
    let out = run_bounded(cmd, TOOL_TIMEOUT);
    let said = printed(&out);
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{said}", out.status))
    }
}

fn require_systemd_analyze() {
    require_tool(
        Path::new("systemd-analyze"),
        "install systemd (scripts/test.sh does: apt-get install systemd)",
    );
}

#[test]
fn systemd_unit_verifies() {
    require_systemd_analyze();
    // verify reads the drop-ins beside the unit too: this is the unit with host-mounts.conf
    let unit = repo_file("deploy/systemd/cidfs.service");
    if let Err(e) = verify_unit(&unit) {
        panic!(
            "systemd-analyze verify {} (with its drop-in): {e}",
            unit.display()
        );
    }
    // and the unit alone, as seed and registry nodes run it
    let alone = tempfile::tempdir().unwrap();
    let copy = alone.path().join("cidfs.service");
    fs::copy(&unit, &copy).unwrap();
    if let Err(e) = verify_unit(&copy) {
        panic!("systemd-analyze verify {} (alone): {e}", unit.display());
    }
}

#[test]
fn systemd_verify_rejects_a_broken_unit() {
    require_systemd_analyze();
    let good = read(&repo_file("deploy/systemd/cidfs.service"));
    let dir = tempfile::tempdir().unwrap();
    for (from, to, named) in [
        ("ProtectClock=", "ProtectClok=", "ProtectClok"),
        ("DevicePolicy=closed", "DevicePolicy=shut", "shut"),
        ("[Install]", "[Instal]", "Instal"),
    ] {
        let broken = good.replacen(from, to, 1);
        assert_ne!(broken, good, "the unit has no {from}");
        let unit = dir.path().join("cidfs.service");
        fs::write(&unit, broken).unwrap();
        let e = verify_unit(&unit).expect_err("a broken unit must not verify");
        assert!(e.contains(named), "{to}: {e}");
    }
}

/// Settings that put the service in its own mount namespace, whose mounts systemd makes slaves
/// of the host's: the FUSE mounts would then never reach podman, CRI-O or containerd (so
/// host-mounts.conf lifts the ones the unit uses).
const MOUNT_NAMESPACE_SETTINGS: &[&str] = &[
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateMounts",
    "PrivateIPC",
    "PrivateUsers",
    "ReadWritePaths",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "ExecPaths",
    "NoExecPaths",
    "TemporaryFileSystem",
    "BindPaths",
    "BindReadOnlyPaths",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectProc",
    "ProcSubset",
    "MountFlags",
    "MountAPIVFS",
    "RootDirectory",
    "RootImage",
    "DynamicUser",
    "LogNamespace",
];

/// `key=value` settings of a unit file (comments and section headers left out).
fn unit_settings(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect()
}

#[test]
fn systemd_unit_is_hardened_and_its_dropin_frees_the_mounts() {
    let text = read(&repo_file("deploy/systemd/cidfs.service"));
    let settings = unit_settings(&text);
    let has = |key: &str, value: &str| settings.iter().any(|(k, v)| *k == key && v.contains(value));
    assert!(has("ProtectSystem", "strict"), "ProtectSystem=strict");
    assert!(
        has("ReadWritePaths", "/var/lib/cidfs"),
        "the repo stays writable"
    );
    assert!(
        has("CapabilityBoundingSet", "CAP_SYS_ADMIN"),
        "mount(2) needs CAP_SYS_ADMIN"
    );
    assert!(has("DeviceAllow", "/dev/fuse rw"), "FUSE needs /dev/fuse");
    assert!(has("Restart", "on-failure"));
    assert!(
        has("Environment", "LIBP2P_FORCE_PNET=1"),
        "the node must refuse to run without a key"
    );
    assert!(has("Environment", "CIDFS_PATH=/var/lib/cidfs") && has("StateDirectory", "cidfs"));
    let exec = settings.iter().find(|(k, _)| *k == "ExecStart").unwrap().1;
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    assert_cli_accepts(&args, "deploy/systemd/cidfs.service ExecStart");

    // host-mounts.conf resets exactly the unit's mount-namespace lines, to off or empty: with
    // it, no mount namespace is left to keep the FUSE mounts from the host
    let dropin = read(&repo_file(
        "deploy/systemd/cidfs.service.d/host-mounts.conf",
    ));
    let mut lifted: Vec<&str> = Vec::new();
    for (k, v) in unit_settings(&dropin) {
        assert!(
            MOUNT_NAMESPACE_SETTINGS.contains(&k),
            "host-mounts.conf touches {k}=, which is not a mount-namespace setting"
        );
        assert!(
            v == "no" || v.is_empty(),
            "host-mounts.conf: {k}={v} must be no or empty"
        );
        lifted.push(k);
    }
    let mut namespaced: Vec<&str> = settings
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| MOUNT_NAMESPACE_SETTINGS.contains(k))
        .collect();
    lifted.sort_unstable();
    namespaced.sort_unstable();
    namespaced.dedup();
    assert_eq!(
        lifted, namespaced,
        "host-mounts.conf must lift every mount-namespace setting of the unit, and only those"
    );
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

fn kubernetes_validate() -> PathBuf {
    let tool = repo_file("target/venv/bin/kubernetes-validate");
    require_tool(
        &tool,
        "run scripts/test.sh, which installs it (python3 -m venv target/venv && \
         target/venv/bin/pip install kubernetes-validate==1.37.0)",
    );
    tool
}

/// kubernetes-validate --strict (unknown fields are errors) on `files`: Err(its output) unless
/// every file passes with no warning (an unknown kind is only a warning).
fn validate_manifests(tool: &Path, files: &[PathBuf], version: &str) -> Result<(), String> {
    let mut cmd = Command::new(tool);
    cmd.args(["--strict", "-k", version]).args(files);
    let out = run_bounded(cmd, TOOL_TIMEOUT);
    let said = printed(&out);
    let passed = |f: &PathBuf| {
        let f = f.display().to_string();
        said.lines()
            .any(|l| l.starts_with(&format!("INFO {f} passed")))
    };
    let clean = said
        .lines()
        .all(|l| l.starts_with("INFO ") && l.contains(" passed "));
    if out.status.success() && clean && files.iter().all(passed) {
        Ok(())
    } else {
        Err(format!("{}\n{said}", out.status))
    }
}

fn kubernetes_manifests() -> Vec<PathBuf> {
    let dir = repo_file("deploy/kubernetes");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let names: Vec<_> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "configmap.yaml",
            "daemonset.yaml",
            "namespace.yaml",
            "node-snippets.yaml",
            "secret.yaml"
        ]
    );
    files
}

#[test]
fn kubernetes_manifests_validate() {
    let tool = kubernetes_validate();
    let files = kubernetes_manifests();
    for version in KUBERNETES_VERSIONS {
        if let Err(e) = validate_manifests(&tool, &files, version) {
            panic!("deploy/kubernetes against Kubernetes {version}: {e}");
        }
    }
}

#[test]
fn kubernetes_validate_rejects_a_broken_manifest() {
    let tool = kubernetes_validate();
    let good = read(&repo_file("deploy/kubernetes/daemonset.yaml"));
    let dir = tempfile::tempdir().unwrap();
    for (i, (from, to)) in [
        ("mountPropagation:", "mountPropagaton:"),
        (
            "terminationGracePeriodSeconds: 30",
            "terminationGracePeriodSeconds: thirty",
        ),
        ("kind: DaemonSet", "kind: DaemonSets"),
    ]
    .into_iter()
    .enumerate()
    {
        let broken = good.replacen(from, to, 1);
        assert_ne!(broken, good, "daemonset.yaml has no {from}");
        let file = dir.path().join(format!("broken{i}.yaml"));
        fs::write(&file, broken).unwrap();
        assert!(
            validate_manifests(&tool, &[file], KUBERNETES_VERSIONS[0]).is_err(),
            "kubernetes-validate accepted {to}"
        );
    }
}

/// The value after `flag` in `args`.
fn flag_value<'a>(args: &[&'a str], flag: &str) -> &'a Path {
    let i = args
        .iter()
        .position(|a| *a == flag)
        .unwrap_or_else(|| panic!("no {flag}"));
    Path::new(args[i + 1])
}

/// The first container's volumeMount that holds `path`, and the pod volume it mounts.
fn volume_of<'a>(pod: &'a Value, path: &Path) -> (&'a Value, &'a Value) {
    let mount = pod["containers"][0]["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("{} is in no volume", path.display()));
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("no volume {:?}", mount["name"]));
    (mount, volume)
}

/// The pieces the manifests must agree on: the config keys, the DaemonSet's paths, the node
/// snippets (copies of deploy/containerd and deploy/podman).
#[test]
fn kubernetes_manifests_agree_with_the_repo() {
    let cm = yaml(&repo_file("deploy/kubernetes/configmap.yaml"));
    let text = cm["data"]["cidfs.toml"]
        .as_str()
        .expect("configmap data cidfs.toml");
    let config = assert_known_config(text, "configmap.yaml cidfs.toml");
    let socket = config["snapshotter"]["socket"].as_str().unwrap();
    let store = config["layer_store"]["mountpoint"].as_str().unwrap();
    assert!(socket.starts_with("/var/lib/cidfs/") && store.starts_with("/var/lib/cidfs/"));

    let snippets = yaml(&repo_file("deploy/kubernetes/node-snippets.yaml"));
    for (key, file) in [
        ("containerd.toml", "deploy/containerd/config.toml"),
        ("storage.conf", "deploy/podman/storage.conf"),
        ("registries.conf", "deploy/podman/registries.conf"),
    ] {
        let copy = snippets["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key}"));
        assert_eq!(
            copy,
            read(&repo_file(file)),
            "node-snippets.yaml {key} differs from {file}"
        );
    }
    let containerd = toml_table(
        &read(&repo_file("deploy/containerd/config.toml")),
        "containerd",
    );
    assert_eq!(
        containerd["proxy_plugins"]["cidfs"]["address"].as_str(),
        Some(socket)
    );
    assert!(read(&repo_file("deploy/podman/storage.conf")).contains(&format!("\"{store}:ref\"")));

    let ds = yaml(&repo_file("deploy/kubernetes/daemonset.yaml"));
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args = strings(&c["args"]);
    assert_cli_accepts(&args, "daemonset.yaml args");
    // every file the args name lies in a volume from the right source
    let (_, config_vol) = volume_of(pod, flag_value(&args, "--config"));
    assert_eq!(config_vol["configMap"]["name"], cm["metadata"]["name"]);
    let secret = yaml(&repo_file("deploy/kubernetes/secret.yaml"));
    let key_path = flag_value(&args, "--swarm-key");
    let (_, key_vol) = volume_of(pod, key_path);
    assert_eq!(key_vol["secret"]["secretName"], secret["metadata"]["name"]);
    let key_file = key_path.file_name().unwrap().to_str().unwrap();
    assert!(
        secret["stringData"][key_file].is_string(),
        "the Secret has no {key_file}"
    );
    let (state, state_vol) = volume_of(pod, Path::new(store));
    assert_eq!(state["mountPropagation"].as_str(), Some("Bidirectional"));
    assert_eq!(
        state_vol["hostPath"]["path"].as_str(),
        Some("/var/lib/cidfs")
    );
    let env = c["env"].as_sequence().unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "LIBP2P_FORCE_PNET" && e["value"] == "1"));
    // readiness looks at the store (a full disk: not ready); liveness only at the process (a
    // restart would not free the disk, and would drop every mount)
    for (probe, path) in [("readinessProbe", "/healthz"), ("livenessProbe", "/livez")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(
            (get["path"].as_str(), get["port"].as_u64()),
            (Some(path), Some(5001))
        );
    }
    assert_eq!(config["api"]["listen"].as_str(), Some("127.0.0.1:5001"));
    // Prometheus scrapes the metrics listener, whose port the annotations name
    let metrics = config["metrics"]["listen"]
        .as_str()
        .expect("metrics.listen");
    let port = metrics.rsplit(':').next().unwrap();
    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"].as_str(), Some(port));
}

// ---------------------------------------------------------------------------------------------
// Docker Compose

/// YAML anchors (`&x`), aliases (`*x`) and merge keys (`<<:`): tests/deploy.rs reads the file
/// literally, so none may appear outside comments.
fn yaml_indirections(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split(" #").next().unwrap())
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter(|l| {
            l.contains("<<:")
                || l.split(|c: char| c.is_whitespace() || "[]{},".contains(c))
                    .any(|t| t.starts_with('&') || t.starts_with('*'))
        })
        .map(str::to_owned)
        .collect()
}

const COMPOSE_COMMAND: [&str; 7] = [
    "daemon",
    "--config",
    "/etc/cidfs/cidfs.toml",
    "--swarm-key",
    "/run/secrets/swarm_key",
    "--log-format",
    "json",
];

#[test]
fn compose_file_is_well_formed() {
    let dir = repo_file("deploy/compose");
    let path = dir.join("compose.yaml");
    let text = read(&path);
    let found = yaml_indirections(&text);
    assert!(found.is_empty(), "compose.yaml must be literal: {found:?}");
    assert_eq!(yaml_indirections("a: &x 1\nb: *x\nc:\n  <<: *x\n").len(), 3);
    let doc = yaml(&path);

    let services = doc["services"].as_mapping().expect("services");
    let names: Vec<_> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(names, ["node1", "node2", "node3"]);
    let volumes: BTreeSet<_> = doc["volumes"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(volumes, BTreeSet::from(["node1", "node2", "node3"]));
    assert_eq!(
        doc["secrets"]["swarm_key"]["file"].as_str(),
        Some("./swarm.key")
    );
    assert!(read(&dir.join(".gitignore"))
        .lines()
        .any(|l| l == "swarm.key"));

    for (name, s) in services {
        let name = name.as_str().unwrap();
        let ctx = dir.join(s["build"]["context"].as_str().unwrap());
        let dockerfile = ctx.join(s["build"]["dockerfile"].as_str().unwrap());
        assert!(dockerfile.is_file(), "{name}: no {}", dockerfile.display());
        assert!(read(&dockerfile).contains(r#"ENTRYPOINT ["cidfs"]"#));
        assert_eq!(s["image"].as_str(), Some("cidfs:local"), "{name}");
        let command = strings(&s["command"]);
        assert_eq!(command, COMPOSE_COMMAND, "{name}");
        let env = s["environment"].as_mapping().expect("environment as a map");
        for (k, v) in [
            ("CIDFS_PATH", "/var/lib/cidfs"),
            ("LIBP2P_FORCE_PNET", "1"),
            ("RUST_LOG", "info"),
        ] {
            assert_eq!(env.get(k).and_then(Value::as_str), Some(v), "{name}: {k}");
        }

        let binds: Vec<(&str, &str)> = strings(&s["volumes"])
            .into_iter()
            .map(|v| {
                let mut p = v.split(':');
                (
                    p.next().unwrap(),
                    p.next().unwrap_or_else(|| panic!("{name}: {v}")),
                )
            })
            .collect();
        for (source, _) in &binds {
            if source.starts_with('.') {
                assert!(
                    !source.starts_with("../"),
                    "{name}: {source} is outside deploy/compose"
                );
                assert!(
                    dir.join(source).is_file(),
                    "{name}: {source} does not exist"
                );
            } else {
                assert!(
                    volumes.contains(source),
                    "{name}: volume {source} is not declared"
                );
            }
        }
        let config = command[command.iter().position(|a| *a == "--config").unwrap() + 1];
        assert!(
            binds.contains(&("./cidfs.toml", config)),
            "{name}: {config} is not ./cidfs.toml"
        );
        assert!(s["volumes"]
            .as_sequence()
            .unwrap()
            .contains(&"./cidfs.toml:/etc/cidfs/cidfs.toml:ro".into()));
        assert!(
            binds.contains(&(name, "/var/lib/cidfs")),
            "{name}: its own volume"
        );

        assert_eq!(strings(&s["secrets"]), ["swarm_key"], "{name}");
        assert_eq!(strings(&s["devices"]), ["/dev/fuse:/dev/fuse"], "{name}");
        assert_eq!(strings(&s["cap_add"]), ["SYS_ADMIN"], "{name}");
        assert_eq!(
            strings(&s["security_opt"]),
            ["apparmor:unconfined"],
            "{name}"
        );
        assert_eq!(
            strings(&s["healthcheck"]["test"]),
            ["CMD", "cidfs", "id"],
            "{name}"
        );
        assert!(
            s["healthcheck"]["interval"].is_string(),
            "{name}: healthcheck interval"
        );
        assert_eq!(s["restart"].as_str(), Some("unless-stopped"), "{name}");
        let ports = if name == "node1" {
            vec!["127.0.0.1:9101:9101", "127.0.0.1:5050:5050"]
        } else {
            vec![]
        };
        assert_eq!(
            s.get("ports").map(strings).unwrap_or_default(),
            ports,
            "{name}"
        );
    }
    assert_cli_accepts(&COMPOSE_COMMAND, "compose.yaml command");

    let config = assert_known_config(&read(&dir.join("cidfs.toml")), "deploy/compose/cidfs.toml");
    // only /metrics and /healthz (and the read-only registry) beyond loopback
    assert_eq!(config["api"]["listen"].as_str(), Some("127.0.0.1:5001"));
    assert_eq!(config["metrics"]["listen"].as_str(), Some("0.0.0.0:9101"));
    assert_eq!(config["registry"]["listen"].as_str(), Some("0.0.0.0:5050"));
    assert!(
        config["swarm"].get("swarm_key").is_none(),
        "the command line passes the key"
    );
}

/// The config check can fail: a misspelt key and a mistyped value are both named.
#[test]
fn config_check_names_unknown_keys() {
    let reference = toml_table(&read(&repo_file("config/cidfs.toml")), "config/cidfs.toml");
    let doc = toml_table(
        "[api]\nlisten_on = \"x\"\n[swarm]\nmdns = \"yes\"\n[nope]\n",
        "test",
    );
    assert_eq!(
        unknown_keys(&doc, &reference, ""),
        ["api.listen_on", "nope", "swarm.mdns"]
    );
}

/// The CLI check can fail: a flag the daemon lacks and a value it does not take are refused.
#[test]
fn cli_check_refuses_unknown_flags() {
    assert!(cli_refusal(&["daemon", "--log-format", "json"]).is_none());
    let e = cli_refusal(&["daemon", "--swarm-keyfile", "/k"]).expect("unknown flag");
    assert!(e.contains("--swarm-keyfile"), "{e}");
    let e = cli_refusal(&["daemon", "--log-format", "xml"]).expect("unknown value");
    assert!(e.contains("xml"), "{e}");
}
