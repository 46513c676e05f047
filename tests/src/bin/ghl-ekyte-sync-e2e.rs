//! The product's binary for the end-to-end and chaos suites: the same entry point as
//! `crates/app/src/main.rs`. It is built as a binary of this package because stable Cargo
//! hands a test only its own package's binaries (`CARGO_BIN_EXE_*`), which guarantees the
//! suite runs a fresh build of the code under test.

fn main() -> std::process::ExitCode {
    app::cli::main()
}
