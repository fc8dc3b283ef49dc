//! The CI templates in `ci/` parse as YAML and run the recipe: up, test-env, verify, tests, down.
//! That each `cargo xtask` line in them parses with the xtask's own parser is checked by the
//! xtask's test `cli::ci_files_use_real_command_lines`.

use std::path::PathBuf;

use serde_json::Value;

fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ci").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", path.display()))
}

fn str_list(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().map(|i| i.as_str().expect("a list of strings")).collect(),
        other => panic!("expected a string or a list of strings, got {other}"),
    }
}

/// Index of the first entry containing all of `needles`, or a panic naming what is missing.
fn position(entries: &[&str], needles: &[&str]) -> usize {
    entries.iter().position(|e| needles.iter().all(|n| e.contains(n))).unwrap_or_else(|| panic!("no entry contains all of {needles:?} in {entries:#?}"))
}

#[test]
fn github_actions_workflow_runs_the_recipe() {
    let wf = load("github-actions.yml");
    assert!(wf.get("on").is_some(), "the `on` key must be read as a string key: {wf:#}");
    let jobs = wf["jobs"].as_object().expect("jobs");
    assert_eq!(jobs.len(), 1);
    let job = jobs.values().next().unwrap();
    assert!(job["runs-on"].as_str().unwrap().starts_with("ubuntu"));
    let steps = job["steps"].as_array().expect("steps");
    let uses: Vec<&str> = steps.iter().filter_map(|s| s["uses"].as_str()).collect();
    assert!(uses.iter().any(|u| u.starts_with("actions/checkout@")), "{uses:?}");
    assert!(uses.iter().any(|u| u.contains("rust-toolchain")), "{uses:?}");

    let runs: Vec<&str> = steps.iter().map(|s| s["run"].as_str().unwrap_or("")).collect();
    let up = position(&runs, &["cargo xtask up"]);
    // The build cache is restored before the first `cargo xtask` compiles anything.
    let cache = steps.iter().position(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("Swatinem/rust-cache@"))).expect("a cargo cache step");
    assert!(cache < up, "the cache step must come before `cargo xtask up`");
    let env = position(&runs, &["cargo xtask test-env", "--format github", ">> \"$GITHUB_ENV\""]);
    let verify = position(&runs, &["cargo xtask verify"]);
    let tests = position(&runs, &["pytest"]);
    let down = position(&runs, &["cargo xtask down"]);
    assert!(up < env && env < verify && verify < tests && tests < down, "order: {runs:#?}");
    assert!(steps[tests]["name"].as_str().unwrap().contains("EDIT ME"), "the test step is marked for editing");
    assert_eq!(steps[down]["if"].as_str().map(str::trim), Some("always()"), "down runs even when the tests fail");
    assert_eq!(down, steps.len() - 1, "down is the last step");
    // The password is masked before the environment reaches the logs of the later steps.
    let mask = position(&runs, &["::add-mask::$CITUS_PASSWORD"]);
    assert!(mask == env && runs[env].find("::add-mask::") < runs[env].find("$GITHUB_ENV"), "mask first: {}", runs[env]);
}

#[test]
fn travis_config_runs_the_recipe() {
    let t = load("travis.yml");
    assert!(str_list(&t["services"]).contains(&"docker"), "services: docker");
    // `cache: cargo` works only with `language: rust`; this file is `language: python`.
    let dirs = str_list(&t["cache"]["directories"]);
    for d in ["$HOME/.cargo", "$TRAVIS_BUILD_DIR/target"] {
        assert!(dirs.contains(&d), "the cache keeps {d} between builds: {dirs:?}");
    }
    let before = str_list(&t["before_script"]);
    let up = position(&before, &["cargo xtask up"]);
    // Not `eval "$(…)"`, which succeeds when test-env fails.
    let env = position(&before, &["=\"$(cargo xtask test-env", "--format shell", ")\" && eval \""]);
    assert!(up < env, "order: {before:#?}");
    // `verify` in the script, whose failure still runs after_script (a failing before_script
    // ends the job at once).
    let script = str_list(&t["script"]);
    let verify = position(&script, &["cargo xtask verify"]);
    let tests = position(&script, &["pytest"]);
    assert!(verify < tests, "order: {script:#?}");
    let after = str_list(&t["after_script"]);
    position(&after, &["cargo xtask down"]);
    let install = str_list(&t["before_install"]);
    position(&install, &["rustup"]);
}
