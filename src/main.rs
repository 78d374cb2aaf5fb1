use std::process::ExitCode;

use clap::Parser;
use leavemsg::cli::Cli;

fn main() -> ExitCode {
    // The .env of the working folder only (`dotenvy::dotenv` would also read one in any folder
    // above it). A missing .env is normal; real environment variables win over it.
    let _ = dotenvy::from_path(".env");
    let cli = Cli::parse();
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
