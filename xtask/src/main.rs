//! The `xtask` binary: all of it is in the library ([`xtask::run`]), so that cargo compiles
//! that while `citus-io` is still in code generation; the binary then only links
//! (docs/performance.md, "Clean build of the xtask").

fn main() -> std::process::ExitCode {
    xtask::run()
}
