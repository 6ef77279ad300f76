//! The `registrar` command: `serve`, `worker`, `migrate` and `seed`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use registrar::app;
use registrar::config::Config;
use registrar::http::{self, AppState};

#[derive(Parser)]
#[command(name = "registrar", version, about = "Course-registration service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API with an in-process worker pool.
    Serve {
        /// Load the demo catalog before serving (rows that exist are kept).
        #[arg(long)]
        demo: bool,
        /// Listen on this address instead of HOST:PORT.
        #[arg(long)]
        bind: Option<SocketAddr>,
        /// Serve without running workers in this process.
        #[arg(long)]
        no_workers: bool,
    },
    /// Run only a worker pool, to add job capacity beside other processes.
    Worker,
    /// Create or update the database schema, then exit.
    Migrate,
    /// Load the demo catalog, then exit. Running it again changes nothing.
    Seed,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("registrar: {e}");
            return ExitCode::from(2);
        }
    };
    registrar::telemetry::init(&config);
    match run(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "registrar stopped with an error");
            eprintln!("registrar: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let store = app::connect_store(&config).await?;
    match command {
        Command::Migrate => {
            info!("migrations applied");
            Ok(())
        }
        Command::Seed => {
            app::seed_demo(store.as_ref()).await?;
            Ok(())
        }
        Command::Worker => {
            let shutdown = CancellationToken::new();
            let (_workers, handle) = app::start_workers(store, &config, shutdown.clone());
            app::shutdown_signal().await;
            shutdown.cancel();
            handle.await?;
            Ok(())
        }
        Command::Serve {
            demo,
            bind,
            no_workers,
        } => {
            if demo {
                app::seed_demo(store.as_ref()).await?;
            }
            let shutdown = CancellationToken::new();
            let (workers, worker_handle) = if no_workers {
                (None, None)
            } else {
                let (w, h) = app::start_workers(store.clone(), &config, shutdown.clone());
                (Some(w), Some(h))
            };
            let addr = bind.unwrap_or_else(|| config.bind_addr());
            let listener = tokio::net::TcpListener::bind(addr).await?;
            info!(address = %listener.local_addr()?, "listening");
            let redis = app::connect_redis(&config)?;
            let state = AppState::new(store, Arc::new(config), workers).with_redis(redis);
            let server_shutdown = shutdown.clone();
            http::serve(listener, http::app(state), async move {
                app::shutdown_signal().await;
                server_shutdown.cancel();
            })
            .await?;
            shutdown.cancel();
            if let Some(handle) = worker_handle {
                handle.await?;
            }
            info!("stopped");
            Ok(())
        }
    }
}
