//! Hostile and bad input to every command and every configuration field,
//! through the real binary, against a running filter. Each row must be
//! refused with a message naming the problem and exit status 2, and leave
//! the filter exactly as it was (allowlist, status, counters, program).
use std::path::Path;

use sipwall_tests::{
    netns::{TestLab, PBX_IFACE},
    operate::{bench_v4, sipwall, snapshot, write_list, xdp_prog},
};

const IFACE: &str = PBX_IFACE;

/// One bad input: the command line, words the refusal must contain, why.
struct Case {
    args: Vec<String>,
    says: Vec<String>,
    why: String,
}

fn case(args: &[&str], says: &[&str], why: &str) -> Case {
    Case {
        args: args.iter().map(|s| s.to_string()).collect(),
        says: says.iter().map(|s| s.to_string()).collect(),
        why: why.to_string(),
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// 131,073 IPv4 prefixes: one more than the map holds (198.18.0.0/15 is
/// RFC 2544's benchmarking range; these are only ever parsed).
fn too_many_v4() -> Vec<String> {
    let mut list = bench_v4(0, 1 << 17);
    list.push("198.18.0.0/31".into());
    list
}

/// 131,073 distinct IPv6 /64s of 2001:db8::/32.
fn too_many_v6() -> Vec<String> {
    (0..(1u32 << 17) + 1)
        .map(|i| format!("2001:db8:{:x}:{:x}::/64", i >> 16, i & 0xffff))
        .collect()
}

/// Configuration files, each wrong in one field or as a whole:
/// (file name, contents, words the refusal names, why).
fn bad_configs() -> Vec<(&'static str, Vec<u8>, Vec<&'static str>, &'static str)> {
    let allow = |entries: &str| format!("[signalling]\nallow = {entries}\n").into_bytes();
    let ports = |list: &str| format!("[signalling]\nports = {list}\n").into_bytes();
    let rtp = |value: &str| format!("[media]\nrtp_ports = {value}\n").into_bytes();
    let policy = |line: &str| format!("[policy]\n{line}\n").into_bytes();
    let media = |lines: &str| format!("[media]\n{lines}\n").into_bytes();
    let signalling = |lines: &str| format!("[signalling]\n{lines}\n").into_bytes();
    let huge = |list: Vec<String>| {
        let quoted: Vec<String> = list.iter().map(|c| format!("\"{c}\"")).collect();
        allow(&format!("[{}]", quoted.join(",\n")))
    };
    vec![
        (
            "rate-no-unit.toml",
            signalling("rate_limit = \"200\""),
            vec!["line 2", "N/s"],
            "rate limit without /s",
        ),
        (
            "rate-zero.toml",
            signalling("rate_limit = \"0/s\""),
            vec!["line 2", "out of range"],
            "rate limit of 0",
        ),
        (
            "rate-huge.toml",
            media("rate_limit = \"99999999999/s\""),
            vec!["line 2", "out of range"],
            "rate limit beyond 10,000,000/s",
        ),
        (
            "rate-number.toml",
            media("rate_limit = 50"),
            vec!["line 2", "string"],
            "rate limit as a bare number",
        ),
        (
            "burst-alone.toml",
            signalling("burst = 10"),
            vec!["burst", "without rate_limit"],
            "burst without a rate",
        ),
        (
            "burst-zero.toml",
            media("rate_limit = \"50/s\"\nburst = 0"),
            vec!["line 3", "burst 0"],
            "burst of 0",
        ),
        (
            "check-rtp-string.toml",
            media("check_rtp = \"on\""),
            vec!["line 2", "boolean"],
            "check_rtp not a boolean",
        ),
        (
            "prefix33.toml",
            allow("[\"44.229.228.186/33\"]"),
            vec!["line 2", "longer than 32"],
            "prefix too long",
        ),
        (
            "prefix129.toml",
            allow("[\"2001:db8::/129\"]"),
            vec!["line 2", "longer than 128"],
            "IPv6 prefix too long",
        ),
        (
            "prefixneg.toml",
            allow("[\"44.229.228.186/-1\"]"),
            vec!["line 2", "not a number"],
            "negative prefix",
        ),
        (
            "hostbits.toml",
            allow("[\"44.229.228.186/24\"]"),
            vec!["line 2", "host bits", "44.229.228.0/24"],
            "host bits below the prefix",
        ),
        (
            "mapped.toml",
            allow("[\"44.229.228.186/32\", \"::ffff:44.238.177.138\"]"),
            vec!["line 2", "IPv4-mapped", "44.238.177.138"],
            "IPv4-mapped IPv6",
        ),
        (
            "zone.toml",
            allow("[\"fe80::1%eth0\"]"),
            vec!["line 2", "zone ids"],
            "zone id",
        ),
        (
            "hostname.toml",
            allow("[\"sip.vapi.ai\"]"),
            vec!["line 2", "hostnames are not resolved"],
            "hostname for a CIDR",
        ),
        (
            "shortip.toml",
            allow("[\"44.229.228\"]"),
            vec!["line 2", "not an IP address"],
            "three octets",
        ),
        (
            "octal.toml",
            allow("[\"044.229.228.186\"]"),
            vec!["line 2", "not an IP address"],
            "leading zero (octal?)",
        ),
        (
            "emptycidr.toml",
            allow("[\"\"]"),
            vec!["line 2", "empty"],
            "empty string",
        ),
        (
            "allowint.toml",
            allow("[1]"),
            vec!["line 2", "expected a string"],
            "number for a CIDR",
        ),
        (
            "allowstr.toml",
            allow("\"44.229.228.186/32\""),
            vec!["line 2", "expected a sequence"],
            "string for the list",
        ),
        (
            "strictnoports.toml",
            b"[policy]\nmode = \"strict\"\n\n[[strict.allow]]\nproto = \"tcp\"\n".to_vec(),
            vec!["rule 1", "has no ports"],
            "strict tcp rule without ports",
        ),
        (
            "strictfromempty.toml",
            b"[policy]\nmode = \"strict\"\n\n[[strict.allow]]\nproto = \"tcp\"\nports = [22]\nfrom = []\n".to_vec(),
            vec!["rule 1", "from is empty"],
            "strict rule whose from lists nothing (not: any source)",
        ),
        (
            "strictproto.toml",
            b"[[strict.allow]]\nproto = \"gre\"\n".to_vec(),
            vec!["line 2", "unknown variant"],
            "strict rule with an unknown protocol",
        ),
        (
            "strictmany.toml",
            format!(
                "[policy]\nmode = \"strict\"\n\n[[strict.allow]]\nproto = \"udp\"\nports = [{}]\n",
                (1..=33)
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .into_bytes(),
            vec!["33 entries", "at most 32"],
            "more strict rule entries than the policy holds",
        ),
        (
            "egressmode.toml",
            b"[egress]\nmode = \"closed\"\n".to_vec(),
            vec!["line 2", "unknown variant"],
            "egress mode neither open nor strict",
        ),
        (
            "egressfrom.toml",
            b"[egress]\nmode = \"strict\"\n\n[[egress.allow]]\nproto = \"tcp\"\nports = [443]\nfrom = [\"192.0.2.0/24\"]\n".to_vec(),
            vec!["[[egress.allow]] rule 1", "`from` is for [[strict.allow]]"],
            "an outbound rule naming sources",
        ),
        (
            "egressdns.toml",
            b"[egress]\nmode = \"strict\"\ndns = [\"resolver.example\"]\n".to_vec(),
            vec!["line 3", "not an IP"],
            "a resolver that is not an address",
        ),
        (
            "egressmany.toml",
            format!(
                "[egress]\nmode = \"strict\"\n\n[[egress.allow]]\nproto = \"tcp\"\nports = [{}]\n",
                (1..=33)
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .into_bytes(),
            vec!["33 entries", "[[egress.allow]]", "at most 32"],
            "more egress rule entries than the policy holds",
        ),
        (
            "providerrtp.toml",
            b"[media]\nprovider_rtp_ports = \"60000-40000\"\n".to_vec(),
            vec!["line 2", "starts after it ends"],
            "provider media range backwards",
        ),
        (
            "port0.toml",
            ports("[0]"),
            vec!["line 2", "port 0"],
            "port 0",
        ),
        (
            "port70000.toml",
            ports("[5060, 70000]"),
            vec!["line 2", "70000", "out of range"],
            "port above 65535",
        ),
        (
            "portneg.toml",
            ports("[-1]"),
            vec!["line 2", "out of range"],
            "negative port",
        ),
        (
            "porthuge.toml",
            ports("[99999999999999999999]"),
            vec!["line 2"],
            "port beyond 64 bits",
        ),
        (
            "portstr.toml",
            ports("[\"5060\"]"),
            vec!["line 2", "expected i64"],
            "port as a string",
        ),
        (
            "portfloat.toml",
            ports("[5060.5]"),
            vec!["line 2", "floating point"],
            "fractional port",
        ),
        (
            "portscalar.toml",
            ports("5060"),
            vec!["line 2", "expected a sequence"],
            "port not in a list",
        ),
        (
            "portsempty.toml",
            ports("[]"),
            vec!["at least one signalling port"],
            "no signalling port",
        ),
        (
            "rtprev.toml",
            rtp("\"60000-40000\""),
            vec!["line 2", "starts after it ends"],
            "range backwards",
        ),
        (
            "rtp0.toml",
            rtp("\"0-100\""),
            vec!["line 2", "port 0"],
            "range from port 0",
        ),
        (
            "rtphigh.toml",
            rtp("\"40000-70000\""),
            vec!["line 2", "70000", "out of range"],
            "range past 65535",
        ),
        (
            "rtpwords.toml",
            rtp("\"a-b\""),
            vec!["line 2", "not a number"],
            "range of words",
        ),
        (
            "rtpint.toml",
            rtp("40000"),
            vec!["line 2", "string"],
            "range as a number",
        ),
        (
            "rtpempty.toml",
            rtp("\"\""),
            vec!["line 2", "not a number"],
            "empty range",
        ),
        (
            "rtpdash.toml",
            rtp("\"-\""),
            vec!["line 2", "not a number"],
            "range without ports",
        ),
        (
            "rtpthree.toml",
            rtp("\"40000-50000-60000\""),
            vec!["line 2", "not a number"],
            "three ports in a range",
        ),
        (
            "mode.toml",
            policy("mode = \"block\""),
            vec!["line 2", "unknown variant", "guard"],
            "unknown mode",
        ),
        (
            "dryrun.toml",
            policy("dry_run = \"yes\""),
            vec!["line 2", "boolean"],
            "string for a boolean",
        ),
        (
            "logdenied.toml",
            policy("log_denied = 1"),
            vec!["line 2", "boolean"],
            "number for a boolean",
        ),
        (
            "unknownkey.toml",
            policy("dryrun = true"),
            vec!["line 2", "unknown field", "dryrun"],
            "misspelt key",
        ),
        (
            "unknownsection.toml",
            b"[sigalling]\nallow = []\n".to_vec(),
            vec!["line 1", "unknown field", "sigalling"],
            "misspelt section",
        ),
        (
            "toplevel.toml",
            b"allow = [\"44.229.228.186/32\"]\n".to_vec(),
            vec!["line 1", "unknown field", "allow"],
            "key outside its section",
        ),
        (
            "dupkey.toml",
            b"[signalling]\nports = [5060]\nports = [5061]\n".to_vec(),
            vec!["line 3", "duplicate key"],
            "key given twice",
        ),
        (
            "header.toml",
            b"[signalling\nports = [5060]\n".to_vec(),
            vec!["line 1", "invalid table header"],
            "broken section header",
        ),
        (
            "emptysection.toml",
            b"[signalling]\nports = [5060]\n[media]\n".to_vec(),
            vec!["line 3", "[media] is empty"],
            "section without keys (cut file)",
        ),
        ("empty.toml", Vec::new(), vec!["empty"], "empty file"),
        (
            "blank.toml",
            b" \n\t\n".to_vec(),
            vec!["empty"],
            "only white space",
        ),
        (
            "binary.toml",
            vec![0xff, 0xfe, 0x00, 0x80, 0xc3],
            vec!["not a text file"],
            "binary file",
        ),
        (
            "nul.toml",
            vec![0, 0, 0, b'\n'],
            vec!["line 1", "invalid TOML"],
            "NUL bytes",
        ),
        (
            "toomany4.toml",
            huge(too_many_v4()),
            vec!["131073 IPv4", "at most 131072"],
            "more IPv4 prefixes than the map holds",
        ),
        (
            "toomany6.toml",
            huge(too_many_v6()),
            vec!["131073 IPv6", "at most 131072"],
            "more IPv6 prefixes than the map holds",
        ),
    ]
}

/// CIDRs `allow add` / `allow del` must refuse: (text, words, why).
const BAD_CIDRS: &[(&str, &[&str], &str)] = &[
    ("198.51.100.7/33", &["longer than 32"], "prefix too long"),
    ("198.51.100.7/", &["not a number"], "prefix missing"),
    (
        "198.51.100.7/032",
        &["canonical", "198.51.100.7/32"],
        "prefix with a leading zero",
    ),
    ("198.51.100.7/x", &["not a number"], "prefix not a number"),
    ("198.51.100.7/32/32", &["not a number"], "two prefixes"),
    (
        "198.51.100.7/24",
        &["host bits", "198.51.100.0/24"],
        "host bits",
    ),
    (
        "2001:db8::1/64",
        &["host bits", "2001:db8::/64"],
        "IPv6 host bits",
    ),
    (
        "::ffff:198.51.100.7",
        &["IPv4-mapped", "198.51.100.7"],
        "IPv4-mapped IPv6",
    ),
    ("fe80::1%eth0", &["zone ids"], "zone id"),
    ("sip.vapi.ai", &["hostnames are not resolved"], "hostname"),
    ("localhost", &["hostnames are not resolved"], "hostname"),
    ("198.51.100", &["not an IP address"], "three octets"),
    ("256.1.1.1", &["not an IP address"], "octet out of range"),
    (
        "198.051.100.7",
        &["not an IP address"],
        "leading zero (octal?)",
    ),
    ("0x01020304", &["not an IP address"], "hexadecimal number"),
    ("[2001:db8::1]", &["not an IP address"], "bracketed IPv6"),
    (
        "198.51.100.7 198.51.100.8",
        &["not an IP address"],
        "two addresses in one argument",
    ),
    ("", &["empty"], "empty string"),
    (" ", &["empty"], "white space"),
    (
        "\u{663}.51.100.7",
        &["not an IP address"],
        "non-ASCII digit",
    ),
    ("-", &["not an IP address"], "a dash"),
];

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    sipwall(&lab, &["allow", "add", "198.51.100.7"]).ok("allow add");
    let dir = lab.dir().to_path_buf();
    let file = |name: &str, bytes: &[u8]| -> String {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        path(&p).to_owned()
    };
    let missing = path(&dir.join("missing.txt")).to_owned();
    let a_dir = dir.join("a-directory");
    std::fs::create_dir(&a_dir).unwrap();
    let a_dir = path(&a_dir).to_owned();
    let mut cases: Vec<Case> = Vec::new();

    // allow add / del: every bad CIDR, alone and among good ones.
    for (cidr, says, why) in BAD_CIDRS {
        cases.push(case(
            &["allow", "add", cidr],
            says,
            &format!("allow add: {why}"),
        ));
        cases.push(case(
            &["allow", "add", "192.0.2.50", cidr],
            says,
            &format!("allow add, one bad among good: {why}"),
        ));
        cases.push(case(
            &["allow", "del", cidr],
            says,
            &format!("allow del: {why}"),
        ));
    }
    cases.push(case(
        &["allow", "del", "192.0.2.99"],
        &["not in the allowlist", "192.0.2.99"],
        "deleting what is not there",
    ));
    cases.push(case(
        &[
            "allow",
            "del",
            "44.229.228.186",
            "44.238.177.138",
            "198.51.100.7",
        ],
        &["empty", "--force"],
        "deleting every entry without --force",
    ));
    cases.push(case(&["allow", "add"], &["required"], "nothing to add"));

    // ban add / del: the same entries, durations, ban files, top --reason.
    for (cidr, says, why) in BAD_CIDRS {
        cases.push(case(
            &["ban", "add", cidr],
            says,
            &format!("ban add: {why}"),
        ));
        cases.push(case(
            &["ban", "add", "192.0.2.50", cidr, "--for", "1h"],
            says,
            &format!("ban add, one bad among good: {why}"),
        ));
        cases.push(case(
            &["ban", "del", cidr],
            says,
            &format!("ban del: {why}"),
        ));
    }
    for (duration, why) in [
        ("0", "no time"),
        ("-5", "negative"),
        ("1x", "unknown unit"),
        ("1.5h", "fraction"),
        ("h", "unit without a number"),
        ("1h30", "number without a unit after a part"),
        ("99999999999999999999", "too long for a number"),
        ("5000w", "longer than ten years"),
        ("", "empty"),
    ] {
        cases.push(case(
            &["ban", "add", "192.0.2.50", "--for", duration],
            &["--for"],
            &format!("ban add --for: {why}"),
        ));
    }
    cases.push(case(
        &["ban", "del", "192.0.2.99"],
        &["not banned", "nothing changed"],
        "lifting a ban that is not there",
    ));
    cases.push(case(&["ban", "add"], &["required"], "nothing to ban"));
    cases.push(case(&["ban", "del"], &["required"], "nothing to lift"));
    cases.push(case(&["ban"], &["Usage"], "no ban action"));
    for (name, bytes, says, why) in [
        (
            "ban-bad-line.txt",
            &b"192.0.2.50

nonsense
"[..],
            &["line 3", "not an IP address"][..],
            "a bad line",
        ),
        (
            "ban-binary.txt",
            &[0xff, 0xfe, 0, 0x80][..],
            &["not a text file"][..],
            "binary",
        ),
        (
            "ban-json.json",
            &b"{\"ipaddress\": [\"192.0.2.50\", 7]}"[..],
            &["ipaddress[1]", "not a string"][..],
            "JSON with a number",
        ),
        (
            "ban-json-key.json",
            &b"{\"ips\": []}"[..],
            &["ipaddress"][..],
            "JSON without ipaddress",
        ),
        (
            "ban-json-broken.json",
            &b"{\"ipaddress\": ["[..],
            &["not valid JSON"][..],
            "JSON cut short",
        ),
    ] {
        let f = file(name, bytes);
        cases.push(case(
            &["ban", "add", "--file", &f],
            says,
            &format!("ban add --file: {why}"),
        ));
    }
    cases.push(case(
        &["ban", "add", "--file", &missing],
        &["cannot read"],
        "ban file missing",
    ));
    for (reason, why) in [
        ("malformed", "a reason without sources"),
        ("sip-denied", "a misspelt reason"),
        ("", "empty"),
    ] {
        cases.push(case(
            &["top", "--reason", reason],
            &["--reason"],
            &format!("top --reason: {why}"),
        ));
    }
    cases.push(case(&["allow"], &["Usage"], "no allow action"));

    // pinhole add / del: addresses media cannot come from, bad --for, and
    // this lab's range mode, where no pinhole is used.
    for (from, says) in [
        ("0.0.0.0", "unspecified"),
        ("ff02::1", "multicast"),
        ("::1", "loopback"),
        ("::ffff:203.0.113.7", "as IPv4"),
        ("203.0.113.0/24", "not an IP address"),
        ("", "not an IP address"),
    ] {
        for action in ["add", "del"] {
            cases.push(case(
                &["pinhole", action, "--port", "45000", "--from", from],
                &["--from", says],
                &format!("pinhole {action} --from {from:?}"),
            ));
        }
    }
    for (duration, says) in [
        ("0", "1 s to 24 h"),
        ("2d", "1 s to 24 h"),
        ("-5", "not a duration"),
    ] {
        cases.push(case(
            &[
                "pinhole", "add", "--port", "45000", "--from", "any", "--for", duration,
            ],
            &["--for", says],
            &format!("pinhole add --for {duration}"),
        ));
    }
    cases.push(case(
        &["pinhole", "add", "--port", "45000", "--from", "203.0.113.7"],
        &["range mode", "[media] mode = \"calls\""],
        "pinhole add in range mode",
    ));
    cases.push(case(
        &["pinhole", "add", "--port", "70000", "--from", "203.0.113.7"],
        &["--port"],
        "pinhole add --port beyond 65535",
    ));
    cases.push(case(
        &["pinhole", "add", "--port", "45000"],
        &["required"],
        "no --from",
    ));

    // allow replace --file: unreadable, empty, binary, bad lines, too big.
    let list_line = |name: &str, lines: &str| file(name, lines.as_bytes());
    let replace_files: Vec<(String, Vec<&str>, &str)> = vec![
        (
            missing.clone(),
            vec!["cannot read", "No such file"],
            "missing file",
        ),
        (
            a_dir.clone(),
            vec!["cannot read", "directory"],
            "a directory",
        ),
        (
            file("empty.txt", b""),
            vec!["empty", "--force"],
            "empty file",
        ),
        (
            list_line("comments.txt", "# nothing\n  # here\n"),
            vec!["empty", "--force"],
            "only comments",
        ),
        (
            file("binary.txt", &[0xff, 0xfe, 0x00, 0x80]),
            vec!["not a text file"],
            "binary file",
        ),
        (
            file("nul.txt", &[0, 0, b'\n']),
            vec!["line 1", "not an IP address"],
            "NUL bytes",
        ),
        (
            list_line(
                "badline.txt",
                "198.51.100.8\n# ok so far\n198.51.100.9/33\n",
            ),
            vec!["line 3", "longer than 32"],
            "a bad line among good ones",
        ),
        (
            list_line("hostbits.txt", "198.51.100.9/24\n"),
            vec!["line 1", "host bits"],
            "host bits",
        ),
        (
            list_line("mapped.txt", "::ffff:198.51.100.9\n"),
            vec!["line 1", "IPv4-mapped"],
            "IPv4-mapped IPv6",
        ),
        (
            list_line("zone.txt", "fe80::1%eth0\n"),
            vec!["line 1", "zone ids"],
            "zone id",
        ),
        (
            list_line("hostname.txt", "sip.vapi.ai\n"),
            vec!["line 1", "hostnames"],
            "hostname",
        ),
        (
            list_line("csv.txt", "198.51.100.8,198.51.100.9\n"),
            vec!["line 1", "not an IP address"],
            "comma-separated",
        ),
        (
            list_line("toml.txt", "allow = [\"198.51.100.8\"]\n"),
            vec!["line 1", "not an IP address"],
            "a TOML file",
        ),
        (
            {
                let p = dir.join("toomany4.txt");
                write_list(&p, &too_many_v4());
                path(&p).to_owned()
            },
            vec!["131073 IPv4", "at most 131072"],
            "more IPv4 prefixes than the map holds",
        ),
        (
            {
                let p = dir.join("toomany6.txt");
                write_list(&p, &too_many_v6());
                path(&p).to_owned()
            },
            vec!["131073 IPv6", "at most 131072"],
            "more IPv6 prefixes than the map holds",
        ),
    ];
    for (f, says, why) in &replace_files {
        cases.push(case(
            &["allow", "replace", "--file", f],
            says,
            &format!("allow replace: {why}"),
        ));
    }
    cases.push(case(
        &["allow", "replace"],
        &["--file"],
        "replace without a file",
    ));

    // Every configuration field, through each command that reads a file.
    for (name, bytes, says, why) in bad_configs() {
        let f = file(name, &bytes);
        cases.push(case(
            &["attach", "-i", IFACE, "-c", &f],
            &says,
            &format!("attach -c: {why}"),
        ));
        cases.push(case(
            &["run", "-i", IFACE, "-c", &f],
            &says,
            &format!("run -c: {why}"),
        ));
        cases.push(case(
            &["check", "--pcap", "/nonexistent-is-not-read", "-c", &f],
            &says,
            &format!("check -c: {why}"),
        ));
    }
    let empty_allow = file("emptyallow.toml", b"[signalling]\nallow = []\n");
    cases.push(case(
        &["attach", "-i", IFACE, "-c", &empty_allow],
        &["empty", "--force"],
        "attach: empty allowlist without --force",
    ));
    cases.push(case(
        &["run", "-i", IFACE, "-c", &empty_allow],
        &["empty", "--force"],
        "run: empty allowlist without --force",
    ));
    for (f, says, why) in [
        (
            &missing,
            &["cannot read", "No such file"][..],
            "missing file",
        ),
        (&a_dir, &["cannot read", "directory"][..], "a directory"),
    ] {
        cases.push(case(
            &["attach", "-i", IFACE, "-c", f],
            says,
            &format!("attach -c: {why}"),
        ));
        cases.push(case(
            &["run", "-i", IFACE, "-c", f],
            says,
            &format!("run -c: {why}"),
        ));
        cases.push(case(
            &["check", "--pcap", f, "-c", f],
            says,
            &format!("check: {why}"),
        ));
    }

    // Captures for `check`.
    let pcap_header = [
        0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0,
    ];
    let with_link = |link: u8| {
        let mut h = pcap_header.to_vec();
        h.extend([link, 0, 0, 0]);
        h
    };
    let mut cut_packet = with_link(1);
    cut_packet.extend([0, 0, 0, 0, 0, 0, 0, 0, 60, 0, 0, 0, 60, 0, 0, 0, 1, 2, 3]);
    for (bytes, says, why) in [
        (Vec::new(), &["too short"][..], "empty capture"),
        (
            b"GET / HTTP/1.1\r\n".to_vec(),
            &["not a pcap"][..],
            "not a capture",
        ),
        (
            with_link(113),
            &["link type", "only Ethernet"][..],
            "Linux cooked capture",
        ),
        (
            cut_packet,
            &["cut short or corrupt"][..],
            "packet cut short",
        ),
    ] {
        let f = file(&format!("capture-{}.pcap", why.replace(' ', "-")), &bytes);
        cases.push(case(
            &["check", "--pcap", &f],
            says,
            &format!("check --pcap: {why}"),
        ));
    }

    // Interface names that cannot be one.
    for (name, why) in [
        ("", "empty name"),
        ("..", "parent folder"),
        (".", "this folder"),
        ("../wan0", "path out of the pin root"),
        ("wan0/../x", "a path"),
        ("wan0 ", "trailing space"),
        ("a:b", "alias syntax"),
        ("averyveryverylongname", "longer than 15 bytes"),
    ] {
        let says = ["not a valid interface name"];
        for args in [
            &["attach", "-i", name][..],
            &["run", "-i", name],
            &["detach", "-i", name],
            &["status", "-i", name],
            &["stats", "-i", name],
            &["top", "-i", name],
            &["allow", "list", "-i", name],
            &["allow", "add", "-i", name, "192.0.2.50"],
            &["doctor", "-i", name],
        ] {
            cases.push(case(args, &says, &format!("{}: {why}", args[0])));
        }
    }

    // Numbers and flags.
    for (args, says, why) in [
        (
            &["stats", "--watch", "0"][..],
            &["--watch 0", "from 0.01"][..],
            "watch interval 0",
        ),
        (
            &["stats", "--watch=-1"],
            &["--watch -1"],
            "negative interval",
        ),
        (
            &["stats", "--watch", "-1"],
            &["unexpected argument"],
            "negative interval, flag-like",
        ),
        (&["stats", "--watch", "nan"], &["NaN"], "NaN interval"),
        (
            &["top", "--watch", "0"][..],
            &["--watch 0", "from 0.01"][..],
            "top: watch interval 0",
        ),
        (
            &["top", "--watch", "inf"],
            &["inf"],
            "top: infinite interval",
        ),
        (
            &[
                "capture",
                "--reason",
                "bogus",
                "-w",
                "/tmp/never-written.pcapng",
            ],
            &["--reason bogus", "not a counter"],
            "capture: unknown reason",
        ),
        (
            &[
                "capture",
                "--direction",
                "out",
                "--reason",
                "sip_denied",
                "-w",
                "-",
            ],
            &["--reason sip_denied", "--direction out"],
            "capture: an ingress reason with --direction out",
        ),
        (
            &["capture", "--snaplen", "0", "-w", "-"],
            &["--snaplen"],
            "capture: snaplen 0",
        ),
        (
            &["capture", "--snaplen", "9000", "-w", "-"],
            &["--snaplen"],
            "capture: snaplen over 1536",
        ),
        (
            &["capture", "--rate", "0", "-w", "-"],
            &["--rate"],
            "capture: rate 0",
        ),
        (
            &["capture", "--duration", "0", "-w", "-"],
            &["--duration"],
            "capture: duration 0",
        ),
        (
            &["capture", "--count", "0", "-w", "-"],
            &["--count"],
            "capture: count 0",
        ),
        (&["capture"], &["-w"], "capture without -w"),
        (
            &["explain", "udp 203.0.113.9:5060 192.0.2.1:5060"],
            &["\" > \"", "expected: [vlan N]"],
            "explain without >",
        ),
        (
            &["explain", "udp 203.0.113.9:99999 > 192.0.2.1:5060"],
            &["99999", "expected: [vlan N]"],
            "explain: port out of range",
        ),
        (
            &["explain", "icmp 203.0.113.9 > 2001:db8::1"],
            &["one family"],
            "explain: mixed families",
        ),
        (
            &["explain", "tcp 203.0.113.9:1 > 192.0.2.1:22 flags SZ"],
            &["'Z'"],
            "explain: unknown TCP flag",
        ),
        (
            &[
                "explain",
                "-c",
                "/dev/zero",
                "udp 203.0.113.9:1 > 192.0.2.1:2",
            ],
            &["/dev/zero"],
            "explain -c a device",
        ),
        (&["stats", "--watch", "inf"], &["inf"], "infinite interval"),
        (
            &["stats", "--watch", "1e20"],
            &["86400"],
            "interval too large for a Duration",
        ),
        (
            &["stats", "--watch", "1e-300"],
            &["from 0.01"],
            "interval that would spin",
        ),
        (
            &["stats", "--watch", "abc"],
            &["invalid value 'abc'"],
            "interval not a number",
        ),
        (
            &["stats", "--watch", ""],
            &["invalid value"],
            "empty interval",
        ),
        (
            &["top", "-n", "abc"],
            &["invalid value 'abc'"],
            "-n not a number",
        ),
        (
            &["top", "-n", "-1"],
            &["unexpected argument"],
            "-n negative",
        ),
        (&["top", "-n", "0"], &["-n 0"], "-n zero shows nothing"),
        (
            &["top", "--reason", "reply"],
            &["--reason reply", "not a drop reason", "denied"],
            "top --reason of a reason that passes",
        ),
        (
            &["top", "--reason", "nonsense"],
            &["not a drop reason"],
            "top --reason of no reason",
        ),
        (
            &["top", "--reason", "malformed"],
            &["not trusted"],
            "top --reason malformed: no trusted source",
        ),
        (
            &["attach", "-i", IFACE, "--confirm", "0"],
            &["invalid value '0'"],
            "--confirm 0 seconds",
        ),
        (
            &["attach", "-i", IFACE, "--confirm", "abc"],
            &["invalid value 'abc'"],
            "--confirm not a number",
        ),
        (
            &["top", "-n", "1e3"],
            &["invalid value"],
            "-n in float notation",
        ),
        (
            &["top", "-n", "99999999999999999999999"],
            &["too large"],
            "-n beyond usize",
        ),
        (
            &["attach", "-i", IFACE, "--mode", "turbo"],
            &["invalid value 'turbo'", "auto"],
            "unknown mode",
        ),
        (
            &["run", "-i", IFACE, "--metrics", "not-an-address"],
            &["invalid value"],
            "metrics address not an address",
        ),
        (
            &["run", "-i", IFACE, "--metrics", "127.0.0.1:99999"],
            &["invalid value"],
            "metrics port out of range",
        ),
        (
            &["doctor", "--provider-host", " "],
            &["--provider-host is empty"],
            "doctor with an empty provider hostname",
        ),
        (
            &["doctor", "--json=yes"],
            &["unexpected value"],
            "doctor --json with a value",
        ),
        (&["attach"], &["--iface"], "attach without an interface"),
        (
            &["frobnicate"],
            &["unrecognized subcommand"],
            "unknown command",
        ),
        (
            &["stats", "--colour"],
            &["unexpected argument"],
            "unknown flag",
        ),
    ] {
        cases.push(case(args, says, why));
    }

    // A --bpffs that is a folder with files in it is never mounted over.
    let not_bpffs = dir.join("etc-like");
    std::fs::create_dir(&not_bpffs).unwrap();
    std::fs::write(not_bpffs.join("keep.conf"), "precious\n").unwrap();

    let before = snapshot(&lab, IFACE);
    for c in &cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let run = sipwall(&lab, &args);
        run.expect(
            2,
            &c.says.iter().map(String::as_str).collect::<Vec<_>>(),
            &c.why,
        );
        assert!(
            !run.stderr.contains("panicked"),
            "{}: panicked\n{run}",
            c.why
        );
        assert_eq!(
            snapshot(&lab, IFACE),
            before,
            "{}: the running filter changed\n{run}",
            c.why
        );
    }
    let mut tried = cases.len();

    // Input that must be refused before it is read: devices, FIFOs with no
    // writer, files larger than any valid one, a --bpffs that is a file or
    // a pin. Each runs under `timeout`, so a regression fails the test
    // instead of hanging it (or filling memory).
    let fifo = dir.join("fifo");
    let c_fifo = std::ffi::CString::new(path(&fifo)).unwrap();
    // SAFETY: a valid C string that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0, "mkfifo");
    let fifo = path(&fifo).to_owned();
    let sparse = |name: &str, len: u64| -> String {
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().set_len(len).unwrap();
        path(&p).to_owned()
    };
    let huge_text = sparse("huge.txt", (32 << 20) + 1);
    let huge_pcap = sparse("huge.pcap", (256 << 20) + 1);
    let plain_file = file("plain-file", b"not a folder\n");
    let pin_file = path(&lab.pin_dir(IFACE).join("INFO")).to_owned();
    let under_file = format!("{plain_file}/sipwall");
    let good_config = file("good.toml", b"[policy]\ndry_run = false\n");
    let mut bounded: Vec<Case> = Vec::new();
    for (f, says, why) in [
        ("/dev/zero", &["/dev/zero", "device"][..], "/dev/zero"),
        (fifo.as_str(), &["FIFO"][..], "a FIFO without a writer"),
        (
            huge_text.as_str(),
            &["too large", "32 MiB"][..],
            "a file over 32 MiB",
        ),
    ] {
        bounded.push(case(
            &["attach", "-i", IFACE, "-c", f],
            says,
            &format!("attach -c: {why}"),
        ));
        bounded.push(case(
            &["run", "-i", IFACE, "-c", f],
            says,
            &format!("run -c: {why}"),
        ));
        bounded.push(case(
            &["check", "--pcap", &good_config, "-c", f],
            says,
            &format!("check -c: {why}"),
        ));
        bounded.push(case(
            &["allow", "replace", "--file", f],
            says,
            &format!("allow replace --file: {why}"),
        ));
    }
    for (f, says, why) in [
        ("/dev/zero", &["/dev/zero", "device"][..], "/dev/zero"),
        (fifo.as_str(), &["FIFO"][..], "a FIFO without a writer"),
        (
            huge_pcap.as_str(),
            &["too large", "256 MiB"][..],
            "a capture over 256 MiB",
        ),
    ] {
        bounded.push(case(
            &["check", "--pcap", f],
            says,
            &format!("check --pcap: {why}"),
        ));
    }
    for (root, says, why) in [
        (
            plain_file.as_str(),
            &["is a file, not a folder"][..],
            "a regular file",
        ),
        (
            pin_file.as_str(),
            &["is a pin", "not a folder"][..],
            "a pin file",
        ),
        (
            under_file.as_str(),
            &["is a file, not a folder"][..],
            "a path through a file",
        ),
    ] {
        for args in [
            &["attach", "-i", IFACE][..],
            &["status"],
            &["detach"],
            &["allow", "add", "198.51.100.9"],
            &["stats"],
        ] {
            let mut all = vec!["--bpffs", root];
            all.extend_from_slice(args);
            bounded.push(case(&all, says, &format!("--bpffs {why}: {}", args[0])));
        }
    }
    for (ns, says, why) in [
        (
            "no-such-namespace",
            &["--netns", "cannot open", "ip netns list"][..],
            "unknown name",
        ),
        (
            "/etc/hostname",
            &["not a network namespace"][..],
            "a file that is no namespace",
        ),
        ("", &["--netns needs"][..], "empty"),
    ] {
        bounded.push(case(
            &["--netns", ns, "status"],
            says,
            &format!("--netns {why}"),
        ));
    }
    for c in &bounded {
        let mut cmd = lab.command(sipwall_tests::netns::Host::Pbx, "timeout");
        cmd.arg("20").arg(&lab.bin);
        if c.args[0] != "--bpffs" {
            cmd.arg("--bpffs").arg(lab.bpffs());
        }
        let out = cmd.args(&c.args).output().unwrap();
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let run = sipwall_tests::operate::Run::from_output(&args, out);
        assert_ne!(run.code, Some(124), "{}: hung\n{run}", c.why);
        run.expect(
            2,
            &c.says.iter().map(String::as_str).collect::<Vec<_>>(),
            &c.why,
        );
        assert_eq!(
            snapshot(&lab, IFACE),
            before,
            "{}: the running filter changed\n{run}",
            c.why
        );
    }
    tried += bounded.len();

    // --bpffs over a non-empty folder: refused, and the files are still
    // there, seen from the same mount namespace the command ran in.
    let script = format!(
        "{} --bpffs {} attach -i {IFACE}; rc=$?; cat {}/keep.conf; exit $rc",
        lab.bin.display(),
        path(&not_bpffs),
        path(&not_bpffs)
    );
    let out = lab
        .command(sipwall_tests::netns::Host::Pbx, "sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "--bpffs over files: {stderr}");
    assert!(stderr.contains("will not mount bpffs over it"), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "precious\n",
        "the folder was hidden"
    );
    assert_eq!(
        snapshot(&lab, IFACE),
        before,
        "--bpffs over files changed the filter"
    );
    tried += 1;

    // The limit is the map's: exactly 131,072 IPv4 prefixes do fit.
    let full = dir.join("full4.txt");
    write_list(&full, &bench_v4(0, 1 << 17));
    let run = sipwall(&lab, &["allow", "replace", "--file", path(&full)]);
    assert!(
        run.ok("131072 prefixes").contains("131072 entries"),
        "{run}"
    );
    let back = dir.join("back.txt");
    let restore: Vec<String> = ["44.229.228.186/32", "44.238.177.138/32", "198.51.100.7/32"]
        .map(String::from)
        .to_vec();
    write_list(&back, &restore);
    sipwall(&lab, &["allow", "replace", "--file", path(&back)]).ok("restore");
    assert_eq!(lab.allowlist(), restore);
    assert!(xdp_prog(&lab, IFACE).is_some());
    println!("bad inputs tried: {tried}, each refused with exit status 2 and nothing changed");
}
