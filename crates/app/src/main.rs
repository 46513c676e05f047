//! The `ghl-ekyte-sync` binary.

fn main() -> std::process::ExitCode {
    app::cli::main()
}
