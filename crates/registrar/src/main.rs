//! The `registrar` command: `serve`, `worker`, `migrate` and `seed`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use registrar::app;
use registrar::config::Config;
use registrar::http::{self, AppState};
use registrar::import::ReadError;
use registrar::store::Store;

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
    /// Load a catalog from a folder of CSV files or a JSON document (see docs/import.md).
    Import {
        /// A folder of `<table>.csv` files, or a `.json` document.
        path: PathBuf,
        /// Validate every row and report problems without writing anything.
        #[arg(long)]
        dry_run: bool,
    },
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
        Ok(code) => code,
        Err(e) => {
            error!(error = %e, "registrar stopped with an error");
            eprintln!("registrar: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    let store = app::connect_store(&config).await?;
    match command {
        Command::Import { path, dry_run } => run_import(store.as_ref(), &path, dry_run).await,
        Command::Migrate => {
            info!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Seed => {
            app::seed_demo(store.as_ref()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker => {
            run_worker(config, store).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            demo,
            bind,
            no_workers,
        } => {
            if demo {
                app::seed_demo(store.as_ref()).await?;
            }
            serve(config, store, bind, no_workers).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Validates the catalog at `path`, then loads it unless `dry_run`. Problems go to stderr,
/// one per line, and give exit status 1.
async fn run_import(store: &dyn Store, path: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let sources = match registrar::import::read_sources(path) {
        Ok(sources) => sources,
        Err(ReadError::Malformed(problems)) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!(
                "import rejected: {} malformed record(s); nothing was written",
                problems.len()
            );
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            eprintln!("import rejected: {e}; nothing was written");
            return Ok(ExitCode::from(1));
        }
    };
    let rows: usize = sources.iter().map(|s| s.rows.len()).sum();
    println!("read {rows} rows from {} file(s)", sources.len());
    let existing = store.catalog_keys().await?;
    let catalog = match registrar::import::parse(&sources, &existing) {
        Ok(catalog) => catalog,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!(
                "import rejected: {} problem(s); nothing was written",
                problems.len()
            );
            return Ok(ExitCode::from(1));
        }
    };
    if dry_run {
        println!("valid: {rows} rows; nothing written (dry run)");
        return Ok(ExitCode::SUCCESS);
    }
    let report = store.upsert_catalog(&catalog).await?;
    for (table, n) in &report.rows {
        println!("{table}: {n} row(s) changed");
    }
    println!("rows changed: {}", report.total());
    Ok(ExitCode::SUCCESS)
}

async fn run_worker(config: Config, store: Arc<dyn Store>) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let breakers = app::build_breakers(&config, app::connect_redis(&config)?, Some(store.clone()))?;
    let (_workers, handle) = app::start_workers(store, &config, breakers, shutdown.clone());
    app::shutdown_signal().await;
    shutdown.cancel();
    handle.await?;
    Ok(())
}

async fn serve(
    config: Config,
    store: Arc<dyn Store>,
    bind: Option<SocketAddr>,
    no_workers: bool,
) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let redis = app::connect_redis(&config)?;
    let breakers = app::build_breakers(&config, redis.clone(), Some(store.clone()))?;
    let (workers, worker_handle) = if no_workers {
        (None, None)
    } else {
        let (w, h) = app::start_workers(store.clone(), &config, breakers.clone(), shutdown.clone());
        (Some(w), Some(h))
    };
    let addr = bind.unwrap_or_else(|| config.bind_addr());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(address = %listener.local_addr()?, "listening");
    let grace = std::time::Duration::from_secs(config.shutdown_grace_seconds);
    let state = AppState::new(store, Arc::new(config), workers, breakers).with_redis(redis);
    let enqueue_combiner = state.enqueue_combiner.clone();
    let server_shutdown = shutdown.clone();
    http::serve(
        listener,
        http::app(state),
        async move {
            app::shutdown_signal().await;
            server_shutdown.cancel();
        },
        grace,
    )
    .await?;
    // Writes the enqueues already sent; a request still open after the grace period gets a
    // 503 for a later one.
    enqueue_combiner.stop().await;
    shutdown.cancel();
    if let Some(handle) = worker_handle {
        handle.await?;
    }
    info!("stopped");
    Ok(())
}
