use std::process::ExitCode;

use clap::Parser;
use leavemsg::cli::{Cli, Command};

fn main() -> ExitCode {
    // The .env of the working folder only (`dotenvy::dotenv` would also read one in any folder
    // above it). A missing .env is normal; real environment variables win over it.
    let _ = dotenvy::from_path(".env");
    let cli = Cli::parse();
    // A command whose output is cut short (`leavemsg webhook list | head -n 1`) ends quietly, as
    // other command-line tools do, instead of panicking at the next line it prints. Not for the
    // server, whose writes to sockets that closed are errors it handles.
    if !matches!(cli.command, Command::Serve(_)) {
        sigpipe::reset();
    }
    leavemsg::telemetry::init(cli.global.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("leavemsg: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(leavemsg::commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leavemsg: {e:#}");
            ExitCode::FAILURE
        }
    }
}
