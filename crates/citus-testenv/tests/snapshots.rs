//! Snapshots of every format for the seed cluster and a 1+4 cluster, with docker addresses.

use citus_config::{Backend, Cluster};
use citus_testenv::{render, Format, Policy, Profile, RenderOptions};

const SEED: &str = include_str!("../../../citus.toml");
const PASSWORD: &str = "commcarehq";

fn clusters() -> [(&'static str, Cluster); 2] {
    let seed = Cluster::parse(SEED, "citus.toml".as_ref()).expect("the repository's citus.toml parses");
    let wide = seed.clone().with_workers(4).expect("4 workers can be derived");
    [("default", seed), ("1plus4", wide)]
}

fn check(format: Format, profile: Profile) {
    for (label, cluster) in clusters() {
        let out = render(&cluster, Backend::Docker, &Policy::new(profile), format, PASSWORD, &RenderOptions::default());
        insta::assert_snapshot!(format!("{format}_{label}_{profile}"), out);
    }
}

#[test]
fn shell_ci() {
    check(Format::Shell, Profile::Ci);
}

#[test]
fn shell_local() {
    check(Format::Shell, Profile::Local);
}

#[test]
fn dotenv_ci() {
    check(Format::Dotenv, Profile::Ci);
}

#[test]
fn json_ci() {
    check(Format::Json, Profile::Ci);
}

#[test]
fn github_ci() {
    check(Format::Github, Profile::Ci);
}

#[test]
fn django_ci() {
    check(Format::Django, Profile::Ci);
}

#[test]
fn django_local() {
    check(Format::Django, Profile::Local);
}

#[test]
fn pytest_ci() {
    check(Format::Pytest, Profile::Ci);
}
