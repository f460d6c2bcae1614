//! `sipwall run` in a lab's PBX, as the service tests drive it: started,
//! signalled, scraped, stopped; and the Prometheus text it serves, parsed.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use crate::netns::{traffic, Host, TestLab, OUTSIDER, PBX, PBX_IFACE};

/// The metrics port the service tests use (inside the PBX's namespace).
pub const METRICS_PORT: u16 = 9464;

/// A `sipwall run` in the lab's PBX, killed when dropped.
pub struct Service {
    child: Child,
    stderr: PathBuf,
}

impl Service {
    /// `sipwall run -i wan0 --mode native -c CONFIG --metrics 127.0.0.1:9464`.
    pub fn start(lab: &TestLab, config: &Path) -> Service {
        Service::start_with(lab, config, &[])
    }

    /// Like [`Service::start`] with `extra` flags; returns once the service
    /// says it filters and the metrics port listens.
    pub fn start_with(lab: &TestLab, config: &Path, extra: &[&str]) -> Service {
        let stderr = lab.dir().join(format!(
            "run-{}-{}.stderr",
            config.file_stem().unwrap().to_string_lossy(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let metrics = format!("127.0.0.1:{METRICS_PORT}");
        let mut args = vec![
            "run",
            "-i",
            PBX_IFACE,
            "--mode",
            "native",
            "-c",
            config.to_str().unwrap(),
            "--metrics",
            &metrics,
        ];
        args.extend_from_slice(extra);
        let child = lab
            .sipwall_command(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("creating the service's stderr file"))
            .spawn()
            .expect("starting sipwall run");
        let mut service = Service { child, stderr };
        let deadline = Instant::now() + Duration::from_secs(15);
        while lab.xdp_prog_id().is_none()
            || !service.log().contains("sipwall: filtering ")
            || !lab
                .is_bound(Host::Pbx, "tcp", METRICS_PORT)
                .unwrap_or(false)
        {
            if let Some(status) = service.child.try_wait().unwrap() {
                panic!("sipwall run exited early ({status}): {}", service.log());
            }
            assert!(
                Instant::now() < deadline,
                "sipwall run did not attach and listen within 15 s: {}",
                service.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        service
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// Waits until the log has a line containing `text` after the first
    /// `skip` such lines; returns that line.
    pub fn wait_log(&self, text: &str, skip: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().filter(|l| l.contains(text)).nth(skip) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the service's log within {timeout:?}: {log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGHUP and waits until the service has logged one more reload
    /// outcome.
    pub fn reload(&self) -> String {
        let outcomes = |log: &str| log.lines().filter(|l| l.contains("SIGHUP")).count();
        let before = outcomes(&self.log());
        self.signal(libc::SIGHUP);
        self.wait_log("SIGHUP", before, Duration::from_secs(10))
    }

    /// SIGKILL: the service dies without cleaning up (what it attached
    /// stays attached and pinned); returns once it is reaped.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status and everything the service wrote.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.log());
            }
            assert!(Instant::now() < deadline, "sipwall run ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET path` on the service's metrics address, from inside the PBX:
/// (HTTP status code, body).
pub fn get(lab: &TestLab, path: &str) -> (u16, String) {
    let out = lab
        .exec(
            Host::Pbx,
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "-w",
                "\n%{http_code}",
                &format!("http://127.0.0.1:{METRICS_PORT}{path}"),
            ],
        )
        .unwrap_or_else(|e| panic!("curl {path}: {e:#}"));
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
    (
        code.trim()
            .parse()
            .unwrap_or_else(|_| panic!("curl {path}: no status code in {out:?}")),
        body.to_string(),
    )
}

/// Writes a configuration file the way an operator should: a temporary
/// file renamed over the old one.
pub fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Sends `n` SIP datagrams from the outsider to the PBX and returns how many
/// arrived.
pub fn outsider_sip(lab: &TestLab, n: u64) -> u64 {
    let rx = lab.udp(Host::Pbx, IpAddr::V4(PBX), 5060);
    let tx = lab.udp(Host::Outsider, IpAddr::V4(OUTSIDER), 0);
    traffic::send(&tx, SocketAddr::new(IpAddr::V4(PBX), 5060), n, 32).unwrap();
    traffic::count(&rx, Duration::from_millis(400)).unwrap()
}

/// One sample line of the exposition: name, labels, value.
pub fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let (series, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no value: {line:?}"));
    let value: f64 = value
        .parse()
        .unwrap_or_else(|_| panic!("bad value: {line:?}"));
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => {
            let body = rest
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
            let labels = body
                .split(',')
                .map(|kv| {
                    let (k, v) = kv
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad label {kv:?} in {line:?}"));
                    let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                    (
                        k.to_string(),
                        v.unwrap_or_else(|| panic!("unquoted label in {line:?}"))
                            .to_string(),
                    )
                })
                .collect();
            (name, labels)
        }
        None => (series, BTreeMap::new()),
    };
    assert!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty(),
        "bad metric name in {line:?}"
    );
    (name.to_string(), labels, value)
}

/// The value of the one sample of `name` whose labels include `want`, from
/// an exposition; `None` when there is none (panics on several).
pub fn sample(body: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<f64> = body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(parse_sample)
        .filter(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
        .collect();
    assert!(hits.len() <= 1, "{name} {want:?}: {hits:?} in\n{body}");
    hits.first().copied()
}
