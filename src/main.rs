//! The `cidfs` binary: everything lives in the library; see `cidfs --help`.

fn main() -> std::process::ExitCode {
    cidfs::cli::run()
}
