//! `sipwall run` as a fleet runs it: it follows its configuration file the
//! way Kubernetes updates a ConfigMap volume (a new directory, then a swap
//! of the `..data` symlink) with no SIGHUP, refuses a broken file swapped in
//! the same way and says so in its metrics; it answers the `/healthz` and
//! `/readyz` probes truthfully; and on exit it leaves the interface as it
//! found it: a filter attached before it started (or any, with
//! `--keep-attached`) stays attached and enforcing.
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use sipwall_tests::{
    netns::{TestLab, PBX_IFACE},
    service::{get, outsider_sip, sample, write_config, Service},
};

const PROVIDER_ONLY: &str =
    "[signalling]\nallow = [\"44.229.228.186/32\", \"44.238.177.138/32\"]\n";
const WITH_OUTSIDER: &str =
    "[signalling]\nallow = [\"44.229.228.186/32\", \"44.238.177.138/32\", \"203.0.113.0/24\"]\n";

/// A ConfigMap volume as the kubelet lays it out: `sipwall.toml ->
/// ..data/sipwall.toml`, `..data -> ..<timestamp>/`; updates go through
/// [`ConfigMapVolume::update`].
struct ConfigMapVolume {
    dir: PathBuf,
    generation: u32,
}

impl ConfigMapVolume {
    fn new(lab: &TestLab, text: &str) -> ConfigMapVolume {
        let dir = lab.dir().join("configmap");
        std::fs::create_dir_all(&dir).unwrap();
        let mut volume = ConfigMapVolume { dir, generation: 0 };
        volume.update(text);
        std::os::unix::fs::symlink("..data/sipwall.toml", volume.file()).unwrap();
        volume
    }

    fn file(&self) -> PathBuf {
        self.dir.join("sipwall.toml")
    }

    /// What the kubelet's atomic writer does: write the new contents into
    /// a fresh timestamped directory, point `..data_tmp` at it, rename
    /// `..data_tmp` over `..data`, remove the old directory.
    fn update(&mut self, text: &str) {
        let old = self.timestamp_dir();
        self.generation += 1;
        let new = self.timestamp_dir();
        std::fs::create_dir(self.dir.join(&new)).unwrap();
        std::fs::write(self.dir.join(&new).join("sipwall.toml"), text).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&new, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        if self.generation > 1 {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }

    fn timestamp_dir(&self) -> String {
        format!(
            "..2026_11_28_22_00_{:02}.{}",
            self.generation,
            1000 + self.generation
        )
    }
}

/// Polls `cond` every 20 ms; returns how long it took to hold, or panics
/// after `limit`.
fn within(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn metrics(lab: &TestLab) -> String {
    let (code, body) = get(lab, "/metrics");
    assert_eq!(code, 200, "{body}");
    body
}

fn reload_metrics(body: &str) -> (f64, f64, f64, f64) {
    let one = |name: &str, labels: &[(&str, &str)]| {
        sample(body, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{body}"))
    };
    (
        one("sipwall_config_last_reload_successful", &[]),
        one("sipwall_config_last_reload_success_timestamp_seconds", &[]),
        one("sipwall_config_reloads_total", &[("result", "success")]),
        one("sipwall_config_reloads_total", &[("result", "failure")]),
    )
}

#[test]
fn a_configmap_symlink_swap_is_applied_within_2s_without_sighup_and_a_broken_one_refused() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let mut volume = ConfigMapVolume::new(&lab, PROVIDER_ONLY);
    let service = Service::start(&lab, &volume.file());
    assert_eq!(outsider_sip(&lab, 3), 0, "the outsider is denied at first");
    let (ok, started_at, successes, failures) = reload_metrics(&metrics(&lab));
    assert_eq!((ok, successes, failures), (1.0, 0.0, 0.0));

    // The kubelet's update: no signal is sent.
    volume.update(WITH_OUTSIDER);
    let took = within(
        Duration::from_secs(2),
        "the swapped-in file applied",
        || lab.allowlist().contains(&"203.0.113.0/24".to_string()),
    );
    eprintln!("a ..data swap was applied after {took:?}");
    // The service logs after the maps change: give its line a moment.
    within(Duration::from_secs(2), "the reload logged", || {
        service
            .log()
            .contains("configuration file changed: configuration reloaded")
    });
    assert!(!service.log().contains("SIGHUP"), "{}", service.log());
    assert_eq!(
        outsider_sip(&lab, 5),
        5,
        "after the swap the outsider is allowed"
    );
    let (ok, applied_at, successes, failures) = reload_metrics(&metrics(&lab));
    assert_eq!((ok, successes, failures), (1.0, 1.0, 0.0));
    assert!(
        applied_at > started_at,
        "the success timestamp did not move"
    );

    // A broken file, swapped in the same way, within 2 s: refused, logged,
    // the policy stays, the metrics say so.
    let allowed = lab.allowlist();
    volume.update("[signalling]\nallow = [\"203.0.113.0/33\"]\n");
    within(Duration::from_secs(2), "the broken file refused", || {
        service.log().contains("kept the running policy")
    });
    let refusal = service.wait_log("kept the running policy", 0, Duration::ZERO);
    assert!(
        refusal.contains("configuration file changed")
            && service.log().contains("prefix length 33"),
        "the refusal names neither the trigger nor the problem: {}",
        service.log()
    );
    assert_eq!(
        lab.allowlist(),
        allowed,
        "the broken file changed the allowlist"
    );
    assert_eq!(
        outsider_sip(&lab, 4),
        4,
        "the broken file changed the policy"
    );
    let (ok, still_applied_at, successes, failures) = reload_metrics(&metrics(&lab));
    assert_eq!((ok, successes, failures), (0.0, 1.0, 1.0));
    assert_eq!(still_applied_at, applied_at);

    // Fixed again: applied, and the metrics recover.
    volume.update(PROVIDER_ONLY);
    within(Duration::from_secs(2), "the fixed file applied", || {
        !lab.allowlist().contains(&"203.0.113.0/24".to_string())
    });
    let (ok, _, successes, failures) = reload_metrics(&metrics(&lab));
    assert_eq!((ok, successes, failures), (1.0, 2.0, 1.0));

    // Something else in the directory changing reloads nothing.
    let before = service.log().lines().count();
    std::fs::write(volume.dir.join("unrelated"), "x").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(service.log().lines().count(), before, "{}", service.log());

    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn an_in_place_edit_an_atomic_rename_and_a_replaced_directory_are_followed_too() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let dir = lab.dir().join("etc-sipwall");
    std::fs::create_dir(&dir).unwrap();
    let config = dir.join("plain.toml");
    write_config(&config, PROVIDER_ONLY);
    let service = Service::start(&lab, &config);
    write_config(&config, WITH_OUTSIDER);
    within(Duration::from_secs(2), "an atomic rename applied", || {
        lab.allowlist().contains(&"203.0.113.0/24".to_string())
    });
    std::fs::write(&config, PROVIDER_ONLY).unwrap();
    within(Duration::from_secs(2), "an in-place write applied", || {
        !lab.allowlist().contains(&"203.0.113.0/24".to_string())
    });
    // The whole directory replaced by a rename (as some configuration
    // tools deploy): the watch follows the new directory.
    let staged = lab.dir().join("etc-sipwall.new");
    std::fs::create_dir(&staged).unwrap();
    std::fs::write(staged.join("plain.toml"), WITH_OUTSIDER).unwrap();
    std::fs::rename(&dir, lab.dir().join("etc-sipwall.old")).unwrap();
    std::fs::rename(&staged, &dir).unwrap();
    within(
        Duration::from_secs(4),
        "a replaced directory applied",
        || lab.allowlist().contains(&"203.0.113.0/24".to_string()),
    );
    std::fs::write(&config, PROVIDER_ONLY).unwrap();
    within(
        Duration::from_secs(2),
        "a write in the new directory applied",
        || !lab.allowlist().contains(&"203.0.113.0/24".to_string()),
    );
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn probes_say_alive_and_ready_and_not_ready_once_the_filter_is_gone() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let config = lab.dir().join("probes.toml");
    write_config(&config, PROVIDER_ONLY);
    let service = Service::start(&lab, &config);
    assert_eq!(get(&lab, "/healthz").0, 200);
    let (code, body) = get(&lab, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(PBX_IFACE), "{body}");

    // The link's pin removed by hand: the program leaves the interface.
    std::fs::remove_file(lab.pin_dir(PBX_IFACE).join("link")).unwrap();
    within(Duration::from_secs(5), "the program gone", || {
        lab.xdp_prog_id().is_none()
    });
    let (code, body) = get(&lab, "/readyz");
    assert_eq!(code, 503, "/readyz with nothing attached: {body}");
    assert!(body.contains("NOT filtering"), "{body}");
    assert_eq!(get(&lab, "/healthz").0, 200, "the process is still alive");
    let body = metrics(&lab);
    assert_eq!(
        sample(&body, "sipwall_attached", &[("iface", PBX_IFACE)]),
        Some(0.0),
        "{body}"
    );
    assert_eq!(get(&lab, "/elsewhere").0, 404);

    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
}

fn pins_dir(lab: &TestLab) -> PathBuf {
    lab.pin_dir(PBX_IFACE)
}

fn assert_still_enforcing(lab: &TestLab, what: &str) {
    assert!(
        lab.xdp_prog_id().is_some(),
        "{what}: the program left the interface"
    );
    assert!(
        Path::new(&pins_dir(lab)).join("link").exists(),
        "{what}: the link pin is gone"
    );
    assert_eq!(
        outsider_sip(lab, 5),
        0,
        "{what}: an outsider's SIP got through"
    );
    let status = lab.sipwall_ok(&["status", "-i", PBX_IFACE]);
    assert!(status.contains("filtering"), "{what}: {status}");
}

/// Issue 12, finding 6: `run` over an operator's `attach` took it over
/// silently and detached it on SIGTERM.
#[test]
fn run_over_an_existing_attachment_says_so_and_leaves_it_attached() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    let operators = lab.xdp_prog_id().expect("attached");
    let config = lab.dir().join("over.toml");
    write_config(&config, PROVIDER_ONLY);

    let service = Service::start(&lab, &config);
    let log = service.log();
    assert!(
        log.contains("already had sipwall's filter attached") && log.contains("stays attached"),
        "run did not say it took over an existing attachment: {log}"
    );
    let upgraded = lab.xdp_prog_id().expect("still attached");
    assert_ne!(
        upgraded, operators,
        "run did not upgrade the program in place"
    );
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("detached from"), "{log}");
    assert_eq!(lab.xdp_prog_id(), Some(upgraded), "not as run left it");
    assert_still_enforcing(&lab, "after SIGTERM to a run over an attach");

    // A run that attached itself detaches on SIGTERM ...
    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);
    let service = Service::start(&lab, &config);
    assert!(!service.log().contains("already had"), "{}", service.log());
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("detached from"), "{log}");
    assert_eq!(
        lab.xdp_prog_id(),
        None,
        "a run that attached did not detach"
    );
    assert!(!pins_dir(&lab).exists(), "detach left pins");

    // ... unless told --keep-attached (the DaemonSet's entrypoint).
    let service = Service::start_with(&lab, &config, &["--keep-attached"]);
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("--keep-attached"), "{log}");
    assert_still_enforcing(&lab, "after SIGTERM to run --keep-attached");

    // SIGINT is an exit like SIGTERM.
    let service = Service::start(&lab, &config);
    service.signal(libc::SIGINT);
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
    assert_still_enforcing(&lab, "after SIGINT to a run over an attach");

    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);
    assert_eq!(lab.xdp_prog_id(), None);
}
