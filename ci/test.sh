#!/usr/bin/env bash
# The project's test command (README: "Run the test suite"). Installs what the tests need when it
# is missing (Debian packages: the PostgreSQL server and client, openssl, iproute2's ss, mmdebstrap for the
# Docker test image; PyPI: python-dotenv), runs every test of the workspace, then checks
# formatting, clippy and rustdoc. Tests that need Citus or Docker return early when this machine
# cannot run them and are listed at the end (see DEVELOPERS.md); set
# CITUS_XTASK_REQUIRE=postgres,citus,docker to insist.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
have_server=false
for d in /usr/lib/postgresql/*/bin; do
  [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && have_server=true
done
$have_server || need_pkgs+=(postgresql)
command -v psql >/dev/null || need_pkgs+=(postgresql-client)
# `up` makes each local node's TLS certificate with it (a test checks that it did).
command -v openssl >/dev/null || need_pkgs+=(openssl)
# `up` names the program holding a taken port with `ss` (tests check the name).
command -v ss >/dev/null || need_pkgs+=(iproute2)
if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
  command -v mmdebstrap >/dev/null || need_pkgs+=(mmdebstrap)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "ci/test.sh: installing ${need_pkgs[*]} from Debian's packages" >&2
  if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  # Debian starts a default cluster on 5432 when it installs the server; the tests do not use it.
  command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
    "${sudo[@]}" pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
  done
fi

# The dotenv output is checked by parsing it with python-dotenv (PyPI), the parser most users' tools share.
if command -v python3 >/dev/null && ! python3 -c 'import dotenv' 2>/dev/null; then
  echo "ci/test.sh: installing python-dotenv from PyPI" >&2
  python3 -m pip install --quiet python-dotenv || echo "ci/test.sh: could not install python-dotenv; its test will skip loudly" >&2
fi

# A skipped test passes, and nextest shows no output of a passing test, so the tests append their
# `==== SKIPPED` lines to this file and the summary below prints them, also when a test failed.
skip_log="$(mktemp "${TMPDIR:-/tmp}/citus-xtask-skips.XXXXXX")"
export CITUS_XTASK_SKIP_LOG="$skip_log"
report_skips() {
  if [ -s "$skip_log" ]; then
    local tests
    tests="$(sed -n 's/^==== SKIPPED \([^:]*\):.*/\1/p' "$skip_log" | sort -u | wc -l)"
    {
      echo
      echo "ci/test.sh: $tests tests did not run here (the runner counts them as passed):"
      sort -u "$skip_log"
      echo "ci/test.sh: set CITUS_XTASK_REQUIRE=postgres,citus,docker to make these fail instead (DEVELOPERS.md)"
    } >&2
  else
    echo "ci/test.sh: no test was skipped" >&2
  fi
  rm -f "$skip_log"
}
trap report_skips EXIT

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  cargo test --workspace --doc
else
  echo "ci/test.sh: cargo-nextest not found; using cargo test (install it with: cargo install cargo-nextest --locked)" >&2
  cargo test --workspace --no-fail-fast "$@"
fi

# Docker Compose v2 too. Most users have v2 (the `docker compose` plugin); this kind of machine
# has only Debian bookworm's v1 (`docker-compose` 1.29.2), and the tool reads labels and output
# the two versions write differently. So where `docker compose` is missing but v1 and a Docker
# engine are here, the tests that use Docker run a second time with v2: Debian trixie's
# docker-compose package (a static binary), fetched by apt into target/ with its signature
# checked, and handed to the docker CLI through a private DOCKER_CONFIG (the machine's docker
# is left as it is). Set CITUS_XTASK_COMPOSE_V2=0 to leave this pass out.
compose_v2_pass() {
  [ "${CITUS_XTASK_COMPOSE_V2:-1}" != 0 ] || return 0
  command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1 || return 0
  docker compose version >/dev/null 2>&1 && return 0 # the tests above already used v2
  command -v docker-compose >/dev/null || return 0
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "==== SKIPPED the Docker tests with Compose v2: that pass picks them with cargo-nextest's filter, and cargo-nextest is not installed (cargo install cargo-nextest --locked) ====" | tee -a "$skip_log" >&2
    return 0
  fi
  local dir="$PWD/target/compose-v2"
  if [ ! -x "$dir/config/cli-plugins/docker-compose" ]; then
    echo "ci/test.sh: fetching Debian trixie's docker-compose (Compose v2) into $dir" >&2
    rm -rf "$dir" && mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/config/cli-plugins"
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' >"$dir/apt/trixie.sources"
    local apt=(-o "Dir::Etc::SourceList=$dir/apt/trixie.sources" -o Dir::Etc::SourceParts=/dev/null
      -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache" -o APT::Sandbox::User=root)
    if ! { apt-get "${apt[@]}" update -qq && (cd "$dir/apt" && apt-get "${apt[@]}" download -qq docker-compose); } >"$dir/apt/log" 2>&1 \
      || ! dpkg-deb -x "$dir"/apt/docker-compose_*.deb "$dir/apt/root" \
      || ! cp "$dir/apt/root/usr/libexec/docker/cli-plugins/docker-compose" "$dir/config/cli-plugins/"; then
      echo "==== SKIPPED the Docker tests with Compose v2: Debian trixie's docker-compose could not be fetched (see $dir/apt/log) ====" | tee -a "$skip_log" >&2
      rm -rf "$dir/config"
      return 0
    fi
    rm -rf "$dir/apt/root" "$dir/apt/lists" "$dir/apt/cache"
  fi
  # The machine's docker settings (contexts, credentials), if it has any, apply as before.
  for f in config.json contexts; do
    [ -e "$HOME/.docker/$f" ] && ln -sfn "$HOME/.docker/$f" "$dir/config/$f"
  done
  echo "ci/test.sh: the tests that use Docker again, with $(DOCKER_CONFIG="$dir/config" docker compose version)" >&2
  DOCKER_CONFIG="$dir/config" cargo nextest run --workspace --no-fail-fast -E 'test(/docker/) | binary(image)' "$@"
}
compose_v2_pass "$@"

# Tidiness, after the tests so that a lint never hides a test result: formatting, clippy and
# rustdoc (a broken intra-doc link once went unnoticed for a session) without a warning.
# rustfmt and clippy come with rustup's default profile; no registry this project may use has
# them, so a toolchain without one says so and skips that stage instead of failing.
echo "ci/test.sh: cargo fmt --check, clippy and rustdoc with warnings as errors" >&2
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all --check
else
  echo "ci/test.sh: ==== SKIPPED cargo fmt --check: rustfmt is not installed (rustup component add rustfmt) ====" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --quiet -- -D warnings
else
  echo "ci/test.sh: ==== SKIPPED cargo clippy: clippy is not installed (rustup component add clippy) ====" >&2
fi
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
