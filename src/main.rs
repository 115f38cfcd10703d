//! `rdpdiag`: see `rdpdiag --help`.

fn main() -> std::process::ExitCode {
    rdpdiag::cli::main()
}
