//! `butler-analytics`: parses the command line, loads the config, starts logging and
//! runs the chosen subcommand.

use std::process::ExitCode;

use butler_analytics::{cli, commands, telemetry};
use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let level = if matches!(cli.command, cli::Command::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    let config = match butler_config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(
        level,
        config.log.level.as_deref(),
        &butler_analytics::app::instance_name(&config),
    );
    if let Err(err) = butler_analytics::aggregation::check_schedules(&config) {
        eprintln!("error: {err:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::dispatch(cli.command, config, cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err
                .downcast_ref::<butler_analytics::aggregation::JobBusy>()
                .is_some()
            {
                ExitCode::from(3)
            } else if err
                .downcast_ref::<commands::validate::ValidationFailed>()
                .is_some()
                // A setting found at start not to work (an address in use, a database
                // path that cannot be created) is a bad configuration like any other.
                || err.to_string().starts_with("config key `")
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
