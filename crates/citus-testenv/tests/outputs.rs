//! The outputs read back by their real consumers: python3 (Django, python-dotenv), bash, and the runner's `$GITHUB_ENV` rules.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use citus_config::{Backend, Cluster};
use citus_testenv::{render, variables, Format, Policy, Profile, RenderOptions};
use serde_json::{json, Value};

const SEED: &str = include_str!("../../../citus.toml");
const NASTY_PASSWORD: &str = "p'a\"s$(touch /tmp/citus-testenv-pwned)`id`\\ \n${HOME} é\t!#";

fn seed() -> Cluster {
    Cluster::parse(SEED, "citus.toml".as_ref()).unwrap()
}

/// A cluster whose database and user names hold quotes, a backslash, shell and URL
/// metacharacters and non-ASCII (control characters are refused by the config).
fn nasty() -> Cluster {
    let text = r#"
database = "da't\"a\\b $HOME `x` %41 #é😀"
user = "o'neil"
[coordinator]
name = "coord"
port = 5700
[[workers]]
name = "w1"
port = 5701
"#;
    Cluster::parse(text, "nasty.toml".as_ref()).unwrap()
}

/// Runs `program args` with `stdin`; `None` when the program is missing, after skipping `test`
/// loudly (`citus_testkit::skip`: on stderr past the capture, and in the skip log ci/test.sh lists).
fn run(test: &str, program: &str, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Option<String> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            citus_testkit::skip(test, &format!("`{program}`, which reads the output back, is not on PATH (install it)"));
            return None;
        }
        Err(e) => panic!("{program}: {e}"),
    };
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{program} failed ({}) on:\n{stdin}", out.status);
    Some(String::from_utf8(out.stdout).unwrap())
}

/// Executes the `django` output in Python (optionally with a DATABASES already defined) and
/// returns DATABASES as JSON.
fn exec_django(test: &str, text: &str, existing: Option<&Value>) -> Option<Value> {
    const SCRIPT: &str = "import json, sys\n\
        ns = json.loads(sys.argv[1])\n\
        exec(compile(sys.stdin.read(), 'citus_settings.py', 'exec'), ns)\n\
        assert isinstance(ns['DATABASES'], dict)\n\
        print(json.dumps(ns['DATABASES']))\n";
    let ns = match existing {
        Some(dbs) => json!({ "DATABASES": dbs }),
        None => json!({}),
    };
    let out = run(test, "python3", &["-c", SCRIPT, &ns.to_string()], &[], text)?;
    Some(serde_json::from_str(&out).unwrap())
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

fn django(cluster: &Cluster, profile: Profile, password: &str, opts: &RenderOptions) -> String {
    render(cluster, Backend::Docker, &Policy::new(profile), Format::Django, password, opts)
}

#[test]
fn django_output_is_valid_python_with_the_seed_structure() {
    let test = "django_output_is_valid_python_with_the_seed_structure";
    let cluster = seed().with_workers(3).unwrap();
    for profile in [Profile::Ci, Profile::Local] {
        for version in [(5, 2), (5, 0), (4, 2), (3, 2)] {
            let opts = RenderOptions { django_version: version, ..RenderOptions::default() };
            let Some(dbs) = exec_django(test, &django(&cluster, profile, "commcarehq", &opts), None) else { return };
            let mut aliases = keys(&dbs);
            aliases.sort();
            assert_eq!(aliases, ["citus", "citus-worker1", "citus-worker2", "citus-worker3"]);
            let coord = &dbs["citus"];
            assert_eq!(coord["TEST"]["DEPENDENCIES"], json!(["citus-worker1", "citus-worker2", "citus-worker3"]));
            match profile {
                // ci: the fixed, real name; local: Django's own test_ database (TEST.NAME unset).
                Profile::Ci => assert_eq!(coord["TEST"]["NAME"], "commcare_ucr_citus"),
                Profile::Local => assert!(coord["TEST"].get("NAME").is_none(), "{coord}"),
            }
            assert_eq!(coord["PORT"], "5600");
            assert!(coord.get("CITUS_NODE_NAME").is_none());
            for (i, (alias, port)) in [("citus-worker1", "5601"), ("citus-worker2", "5602"), ("citus-worker3", "5603")].into_iter().enumerate() {
                let w = &dbs[alias];
                assert_eq!(w["CITUS_NODE_NAME"], format!("citus_worker{}:5432", i + 1));
                assert_eq!(w["PORT"], port);
                assert_eq!(w["HOST"], "localhost");
                assert_eq!(w["TEST"]["DEPENDENCIES"], json!([]));
                if profile == Profile::Ci {
                    assert_eq!(w["TEST"]["NAME"], "commcare_ucr_citus");
                } else {
                    assert!(w["TEST"].get("NAME").is_none(), "{w}");
                }
            }
            for (alias, db) in dbs.as_object().unwrap() {
                assert_eq!(db["ENGINE"], "django.db.backends.postgresql", "{alias}");
                assert_eq!(db["NAME"], "commcare_ucr_citus", "{alias}");
                assert_eq!(db["USER"], "commcarehq", "{alias}");
                assert_eq!(db["PASSWORD"], "commcarehq", "{alias}");
                assert_eq!(db["DISABLE_SERVER_SIDE_CURSORS"], true, "{alias}");
                let role = if alias == "citus" { "citus_master" } else { "citus_worker" };
                match profile {
                    Profile::Ci => assert!(db.get("ROLE").is_none(), "{alias}: ROLE must be unset in ci"),
                    Profile::Local => assert_eq!(db["ROLE"], role, "{alias}"),
                }
                if version >= (4, 0) {
                    assert!(db["TEST"].get("SERIALIZE").is_none(), "{alias}: SERIALIZE was deprecated in Django 4.0 and removed in 5.0");
                } else {
                    assert_eq!(db["TEST"]["SERIALIZE"], false, "{alias}");
                }
            }
        }
    }
}

#[test]
fn django_output_merges_into_existing_databases_and_takes_custom_aliases() {
    let test = "django_output_merges_into_existing_databases_and_takes_custom_aliases";
    let opts = RenderOptions { coordinator_alias: "ucr".into(), worker_alias_prefix: "citus-ucr-worker".into(), ..RenderOptions::default() };
    let existing = json!({ "default": { "NAME": "commcarehq" } });
    let Some(dbs) = exec_django(test, &django(&seed(), Profile::Local, "commcarehq", &opts), Some(&existing)) else { return };
    let mut aliases = keys(&dbs);
    aliases.sort();
    assert_eq!(aliases, ["citus-ucr-worker1", "citus-ucr-worker2", "default", "ucr"]);
    assert_eq!(dbs["default"], existing["default"]);
    assert_eq!(dbs["ucr"]["TEST"]["DEPENDENCIES"], json!(["citus-ucr-worker1", "citus-ucr-worker2"]));
}

#[test]
fn django_output_escapes_any_database_name() {
    let test = "django_output_escapes_any_database_name";
    let cluster = nasty();
    for profile in [Profile::Ci, Profile::Local] {
        let opts = RenderOptions { coordinator_alias: "c'\\o\"ord é".into(), ..RenderOptions::default() };
        let text = django(&cluster, profile, NASTY_PASSWORD, &opts);
        assert!(text.is_ascii(), "the django output is ASCII-only");
        let Some(dbs) = exec_django(test, &text, None) else { return };
        let coord = &dbs["c'\\o\"ord é"];
        assert_eq!(coord["NAME"], "da't\"a\\b $HOME `x` %41 #é😀");
        if profile == Profile::Ci {
            assert_eq!(coord["TEST"]["NAME"], "da't\"a\\b $HOME `x` %41 #é😀");
        }
        assert_eq!(coord["USER"], "o'neil");
        assert_eq!(coord["PASSWORD"], NASTY_PASSWORD);
        assert_eq!(coord["TEST"]["DEPENDENCIES"], json!(["citus-worker1"]));
        assert_eq!(dbs["citus-worker1"]["CITUS_NODE_NAME"], "w1:5432");
    }
}

#[test]
fn shell_output_round_trips_a_nasty_password() {
    let test = "shell_output_round_trips_a_nasty_password";
    let _ = std::fs::remove_file("/tmp/citus-testenv-pwned");
    for cluster in [seed(), nasty()] {
        for profile in [Profile::Ci, Profile::Local] {
            let policy = Policy::new(profile);
            let out = render(&cluster, Backend::Docker, &policy, Format::Shell, NASTY_PASSWORD, &RenderOptions::default());
            let script = r#"eval "$OUT"; printf %s "$CITUS_PASSWORD""#;
            let Some(got) = run(test, "bash", &["-c", script], &[("OUT", &out)], "") else { return };
            assert_eq!(got, NASTY_PASSWORD);
            // Every variable, not only the password, comes back unchanged.
            for (name, value) in variables(&cluster, Backend::Docker, &policy, NASTY_PASSWORD) {
                let script = format!(r#"eval "$OUT"; printf %s "${name}""#);
                assert_eq!(run(test, "bash", &["-c", &script], &[("OUT", &out)], "").unwrap(), value, "{name}");
            }
        }
    }
    assert!(!std::path::Path::new("/tmp/citus-testenv-pwned").exists(), "eval ran a command substitution from a value");
}

#[test]
fn dotenv_output_round_trips_through_python_dotenv() {
    let test = "dotenv_output_round_trips_through_python_dotenv";
    const SCRIPT: &str = "import io, json, sys\n\
        try:\n    from dotenv import dotenv_values\n\
        except ImportError:\n    print('null'); sys.exit(0)\n\
        print(json.dumps(dotenv_values(stream=io.StringIO(sys.stdin.read()), interpolate=sys.argv[1] == '1')))\n";
    for (cluster, password, interpolate) in [(seed(), "commcarehq", "1"), (nasty(), "p'a\"s\\ \n é#x $(id)", "1"), (nasty(), NASTY_PASSWORD, "0")] {
        let policy = Policy::new(Profile::Ci);
        let out = render(&cluster, Backend::Docker, &policy, Format::Dotenv, password, &RenderOptions::default());
        let Some(got) = run(test, "python3", &["-c", SCRIPT, interpolate], &[], &out) else { return };
        let got: Value = serde_json::from_str(&got).unwrap();
        if got.is_null() {
            citus_testkit::skip(test, "python-dotenv is not installed for python3 (ci/test.sh installs it from PyPI: python3 -m pip install python-dotenv)");
            return;
        }
        let want: serde_json::Map<String, Value> = variables(&cluster, Backend::Docker, &policy, password).into_iter().map(|(k, v)| (k, v.into())).collect();
        assert_eq!(got, Value::Object(want), "{out}");
    }
    let out = render(&nasty(), Backend::Docker, &Policy::new(Profile::Ci), Format::Dotenv, NASTY_PASSWORD, &RenderOptions::default());
    assert!(out.contains("# warning: CITUS_PASSWORD contains `${`"), "{out}");
}

/// The runner's `$GITHUB_ENV` reading (actions/runner `SetEnvFileCommand`, Linux line endings).
fn read_github_env(text: &str) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    let mut lines = text.split_inclusive('\n');
    while let Some(line) = lines.next() {
        let line = line.strip_suffix('\n').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let (eq, heredoc) = (line.find('='), line.find("<<"));
        match (eq, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => vars.push((line[..e].to_owned(), line[e + 1..].to_owned())),
            (_, Some(h)) => {
                let (name, delimiter) = (&line[..h], &line[h + 2..]);
                assert!(!name.is_empty() && !delimiter.is_empty(), "invalid line {line:?}");
                let mut value = Vec::new();
                loop {
                    let l = lines.next().unwrap_or_else(|| panic!("delimiter {delimiter:?} not found"));
                    let l = l.strip_suffix('\n').unwrap_or(l);
                    if l == delimiter {
                        break;
                    }
                    value.push(l);
                }
                vars.push((name.to_owned(), value.join("\n")));
            }
            _ => panic!("the runner rejects the line {line:?}"),
        }
    }
    vars
}

#[test]
fn github_output_round_trips_through_the_runner_rules() {
    for (cluster, password) in [(seed(), "commcarehq"), (nasty(), NASTY_PASSWORD), (nasty(), "CITUS_EOF\nx\nCITUS_EOF_\n")] {
        for profile in [Profile::Ci, Profile::Local] {
            let policy = Policy::new(profile);
            let out = render(&cluster, Backend::Docker, &policy, Format::Github, password, &RenderOptions::default());
            assert_eq!(read_github_env(&out), variables(&cluster, Backend::Docker, &policy, password), "{out}");
        }
    }
}

#[test]
fn pytest_output_is_only_the_flags_and_never_the_password() {
    for cluster in [seed(), seed().with_workers(4).unwrap(), nasty()] {
        for profile in [Profile::Ci, Profile::Local] {
            for password in ["commcarehq", NASTY_PASSWORD, "s3cr3t-Pa55"] {
                let out = render(&cluster, Backend::Docker, &Policy::new(profile), Format::Pytest, password, &RenderOptions::default());
                assert!(!out.contains(password), "{out}");
                // One line, for `pytest $(cargo xtask test-env --format pytest)`: a comment's
                // words would reach pytest as arguments.
                assert_eq!(out, if profile == Profile::Ci { "--reuse-db --nomigrations\n" } else { "--create-db\n" });
            }
        }
    }
}

#[test]
fn json_output_has_every_variable_and_the_reasons() {
    let cluster = nasty();
    let policy = Policy::new(Profile::Ci);
    let out = render(&cluster, Backend::Local, &policy, Format::Json, NASTY_PASSWORD, &RenderOptions::default());
    let v: Value = serde_json::from_str(&out).unwrap();
    for (name, value) in variables(&cluster, Backend::Local, &policy, NASTY_PASSWORD) {
        assert_eq!(v[&name], value, "{name}");
    }
    assert_eq!(v["CITUS_WORKER1_NODE_NAME"], "localhost:5701", "local backend: cluster address = client address");
    assert_eq!(v["reasons"]["reuse_db"]["value"], true);
    // What the format promises (`Format::Json`): one object of every variable plus `reasons`,
    // and nothing else. Read from the text itself: parsing into a `Value` would hide a key
    // written twice (the last one wins) and the order keys come in.
    let mut want: Vec<String> = variables(&cluster, Backend::Local, &policy, NASTY_PASSWORD).into_iter().map(|(name, _)| name).collect();
    want.push("reasons".into());
    want.sort();
    let mut got = top_level_keys(&out);
    got.sort();
    assert_eq!(got, want, "{out}");
    let reasons: Vec<&str> = v["reasons"].as_object().unwrap().keys().map(String::as_str).collect();
    let mut kinds: Vec<&str> = policy.decisions().iter().map(|d| d.kind.key()).collect();
    kinds.sort();
    assert_eq!(reasons, kinds, "{out}");
}

/// The keys of the outermost JSON object in `text`, in the order they are written, each as
/// often as it is written.
fn top_level_keys(text: &str) -> Vec<String> {
    let (mut keys, mut depth, mut expecting_key) = (Vec::new(), 0usize, false);
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' | '[' => {
                depth += 1;
                expecting_key = c == '{' && depth == 1;
            }
            '}' | ']' => depth -= 1,
            ',' => expecting_key = depth == 1,
            '"' => {
                // To the closing quote, past escaped characters.
                let mut end = at + 1;
                let mut escaped = false;
                for (i, c) in chars.by_ref() {
                    end = i + c.len_utf8();
                    match c {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => break,
                        _ => escaped = false,
                    }
                }
                if expecting_key {
                    keys.push(serde_json::from_str(&text[at..end]).unwrap());
                    expecting_key = false;
                }
            }
            _ => {}
        }
    }
    keys
}

#[test]
fn top_level_keys_are_read_in_order_and_with_repeats() {
    let text = r#"{"b": {"x": 1, "y": [{"z": 2}]}, "a\"q": "v, \"w\": {", "b": [1, {"c": 3}]}"#;
    assert_eq!(top_level_keys(text), ["b", "a\"q", "b"]);
}

#[test]
fn database_url_percent_encodes_user_password_and_database() {
    let vars = variables(&nasty(), Backend::Docker, &Policy::new(Profile::Ci), "a:b@c/d");
    let url = &vars.iter().find(|(k, _)| k == "DATABASE_URL").unwrap().1;
    assert_eq!(url, "postgres://o%27neil:a%3Ab%40c%2Fd@localhost:5700/da%27t%22a%5Cb%20%24HOME%20%60x%60%20%2541%20%23%C3%A9%F0%9F%98%80");
}
