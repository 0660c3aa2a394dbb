//! The `lethe` binary: the command line lives in `lethe::cli`.
fn main() -> std::process::ExitCode {
    lethe::cli::main()
}
