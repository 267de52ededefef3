//! The `storeguard` binary: argument parsing lives in the library; this only runs it.

fn main() -> std::process::ExitCode {
    storeguard::cli::main()
}
