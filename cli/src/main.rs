//! `doppel`: run, validate and inspect synthetic-data pipelines.
//!
//! ```text
//! doppel run pipelines/quickstart.toml --input data/adult.csv --out out/
//! doppel validate pipelines/quickstart.toml
//! doppel plugin list
//! doppel plugin new my-detector --kind detector --id acme/my-detector
//! doppel plugin build my-detector
//! doppel plugin test my-detector --input my-detector/testdata/sample.csv
//! doppel serve --data-dir ./doppel-data          # REST API + workers
//! doppel worker                                  # extra workers, same database
//! ```
//!
//! Every flag can also be set from the environment (`DOPPEL_…`, see `--help`).
//! Exit status: 0 success, 1 the run failed, 2 the pipeline or the command line
//! is invalid, 130 cancelled (Ctrl-C).

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command-line tool prints")]

mod author;
mod commands;
mod logging;
mod progress;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// mimalloc instead of glibc's allocator: the CSV reader and the scoring
/// stages allocate from many threads, and glibc keeps what each thread's
/// arena freed resident (at Adult × 100 the peak was 2.98 GiB with glibc's
/// defaults, 2.18 GiB with `MALLOC_ARENA_MAX=2`); mimalloc hands freed pages
/// back to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs before `main`, and so before the first allocation: mimalloc is to
/// reserve its arenas inaccessible and commit them as they fill. By default
/// on Linux it maps each arena (1 GiB) read-write at once, and a read-write
/// private mapping counts in full against `RLIMIT_DATA` — the limit the
/// upload reader (`doppel ingest-worker`) runs under as
/// `limits.ingest_memory_mb`. Under 1 GiB that reader could not allocate at
/// all, and any cap counted untouched address space instead of what the
/// process uses.
#[cfg(target_os = "linux")]
#[allow(
    unsafe_code,
    reason = "an ELF initialiser: the only hook that runs before the first allocation"
)]
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_ARENAS_AS_USED: extern "C" fn() = commit_arenas_as_used;

#[cfg(target_os = "linux")]
extern "C" fn commit_arenas_as_used() {
    /// `mi_option_arena_eager_commit` in mimalloc.h (the same value in
    /// mimalloc 2 and 3); libmimalloc-sys does not name it.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    #[allow(
        unsafe_code,
        reason = "mi_option_set only stores the value; it is safe before mimalloc starts"
    )]
    // SAFETY: the option index is in range and the call allocates nothing.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
    }
}

/// Turn sensitive tables into privacy-safe synthetic twins.
#[derive(Debug, Parser)]
#[command(name = "doppel", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
struct Global {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, env = "DOPPEL_VERBOSE")]
    verbose: u8,
    /// Log filter in `tracing` syntax (overrides -v), e.g. `doppel_host=debug`.
    #[arg(long, global = true, env = "DOPPEL_LOG")]
    log_filter: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "DOPPEL_LOG_FORMAT")]
    log_format: LogFormat,
    /// Extra plugin directories (`*.toml` manifests, or `*/plugin.toml`).
    #[arg(
        long = "plugin-dir",
        global = true,
        env = "DOPPEL_PLUGIN_PATH",
        value_delimiter = ':'
    )]
    plugin_dirs: Vec<PathBuf>,
    /// Cache of compiled plugins [default: $XDG_CACHE_HOME/doppel/components].
    #[arg(long, global = true, env = "DOPPEL_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile plugins on every run instead of caching them.
    #[arg(long, global = true, env = "DOPPEL_NO_CACHE")]
    no_cache: bool,
    /// Let plugins that declare it read this environment variable (repeatable).
    #[arg(long = "allow-env", global = true, env = "DOPPEL_ALLOW_ENV", value_delimiter = ',')]
    allow_env: Vec<String>,
    /// Let plugins that declare it read clocks.
    #[arg(long, global = true, env = "DOPPEL_ALLOW_CLOCK")]
    allow_clock: bool,
    /// Mount a host directory read-only at a guest path for plugins that
    /// declare it: `--mount /models=./models` (repeatable).
    #[arg(
        long = "mount",
        global = true,
        env = "DOPPEL_MOUNT",
        value_delimiter = ',',
        value_name = "GUEST=HOST"
    )]
    mounts: Vec<String>,
    /// Largest memory limit (MiB) a pipeline may give a plugin.
    #[arg(long, global = true, default_value_t = 4096, env = "DOPPEL_MAX_PLUGIN_MEMORY_MB")]
    max_plugin_memory_mb: u64,
    /// Largest per-call time limit (ms) a pipeline may give a plugin.
    #[arg(long, global = true, default_value_t = 600_000, env = "DOPPEL_MAX_PLUGIN_TIMEOUT_MS")]
    max_plugin_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TableFormat {
    /// Apache Parquet.
    Parquet,
    /// CSV with a header.
    Csv,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProgressMode {
    /// Bars on a terminal, log lines otherwise.
    Auto,
    /// Always draw bars.
    Always,
    /// Never draw bars.
    Never,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline and write its outputs and report.json.
    Run(RunArgs),
    /// Check a pipeline and report every problem with its location.
    Validate(ValidateArgs),
    /// Installed plugins, and the plugin author's workflow (new, build, test).
    #[command(subcommand, visible_alias = "plugins")]
    Plugin(PluginCommand),
    /// Start the REST API (with in-process workers) on SQLite + local files,
    /// or on PostgreSQL + S3 when configured.
    Serve(ServeArgs),
    /// Run jobs from the queue (scale-out: any number of these, one database).
    Worker(ServeArgs),
    /// Read one upload for `doppel serve` (internal: the server starts it as
    /// a child process with its own memory limit; it reads a request on
    /// standard input and answers one JSON line).
    #[command(hide = true)]
    IngestWorker,
    /// The counting engine a fit can run its heavy plans on (Ballista).
    #[command(subcommand)]
    Engine(EngineCommand),
}

/// Server and worker settings. Every other setting comes from `doppel.toml`
/// (in the data dir, or `--config`) and `DOPPEL__SECTION__KEY` variables.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Where SQLite, local objects and the signing key live.
    #[arg(long, env = "DOPPEL__DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Settings file [default: <data dir>/doppel.toml].
    #[arg(long, env = "DOPPEL_CONFIG")]
    config: Option<PathBuf>,
    /// REST listen address.
    #[arg(long, env = "DOPPEL__HTTP_ADDR")]
    http_addr: Option<String>,
    /// Arrow Flight listen address (reserved for the Flight server).
    #[arg(long, env = "DOPPEL__FLIGHT_ADDR")]
    flight_addr: Option<String>,
    /// Workers to run in this process (`serve` default: jobs.workers; `worker` default 1).
    #[arg(long, env = "DOPPEL_WORKERS")]
    workers: Option<usize>,
    /// Print the effective settings (secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
}

/// What to run on.
#[derive(Debug, Args)]
struct Target {
    /// Pipeline file.
    #[arg(env = "DOPPEL_PIPELINE")]
    pipeline: PathBuf,
    /// Input table for the pipeline's `builtin:source` stage (CSV, Parquet, NDJSON).
    #[arg(short, long, env = "DOPPEL_INPUT")]
    input: Option<PathBuf>,
    /// Override a stage setting: `--set synth.seed=7` (repeatable).
    #[arg(
        long = "set",
        value_name = "STAGE.KEY=VALUE",
        env = "DOPPEL_SET",
        value_delimiter = ';'
    )]
    overrides: Vec<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// Output directory.
    #[arg(short, long, default_value = "out", env = "DOPPEL_OUT")]
    out: PathBuf,
    /// Format of output tables.
    #[arg(long, value_enum, default_value_t = TableFormat::Parquet, env = "DOPPEL_FORMAT")]
    format: TableFormat,
    /// Rows per batch sent to plugins (at least 8192).
    #[arg(long, default_value_t = doppel_host::exec::DEFAULT_BATCH_ROWS, env = "DOPPEL_BATCH_ROWS")]
    batch_rows: usize,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto, env = "DOPPEL_PROGRESS")]
    progress: ProgressMode,
    /// Where count-based fits (`builtin:privsyn`) count the training rows:
    /// `local` (in memory) or `ballista://host:port`, an Apache Ballista 55
    /// scheduler.
    #[arg(long, default_value = "local", env = "DOPPEL_ENGINE")]
    engine: String,
    /// Folder the training table is staged to as Parquet for the engine;
    /// every executor must read it at the same path [default: the system
    /// temporary folder].
    #[arg(long, env = "DOPPEL_ENGINE_SCRATCH")]
    engine_scratch: Option<PathBuf>,
    /// Input-table MiB the stages running at the same time may read
    /// together; past it a stage waits, so a large table is scored one stage
    /// at a time (0: no limit).
    #[arg(long, default_value_t = doppel_host::exec::DEFAULT_SIDE_BY_SIDE_BYTES >> 20, env = "DOPPEL_SIDE_BY_SIDE_MB")]
    side_by_side_mb: u64,
}

#[derive(Debug, Subcommand)]
enum EngineCommand {
    /// Start a Ballista 55 scheduler and executors in this process on
    /// loopback, print the engine URL, and serve until interrupted. For
    /// trying the distributed path on one machine; a real cluster runs
    /// Ballista's own `ballista-scheduler` and `ballista-executor`.
    Standalone {
        /// Executors to start.
        #[arg(long, default_value_t = 2)]
        executors: usize,
        /// Task slots per executor.
        #[arg(long, default_value_t = 2)]
        vcores: usize,
    },
}

#[derive(Debug, Args)]
struct ValidateArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// List builtins and installed plugins.
    List {
        /// Print JSON.
        #[arg(long, env = "DOPPEL_JSON")]
        json: bool,
    },
    /// Create a plugin project that builds and tests out of the box.
    New(NewArgs),
    /// Compile a plugin project, check it against the contract, write dist/.
    Build(BuildArgs),
    /// Run a built plugin on a table in the real host, with its production limits.
    Test(TestArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PluginKindArg {
    /// Reads one table, says which columns hold what.
    Detector,
    /// Compares tables (real, synthetic, holdout) and scores them.
    Metric,
    /// Judges the facts other stages produced: pass, warn or fail.
    Rule,
}

#[derive(Debug, Args)]
struct NewArgs {
    /// Directory to create; its name is the crate name.
    path: PathBuf,
    /// Stage kind.
    #[arg(long, value_enum)]
    kind: PluginKindArg,
    /// Plugin id, `namespace/name` [default: local/<directory name>].
    #[arg(long)]
    id: Option<String>,
    /// Use this doppel-sdk crate (e.g. a doppel checkout's sdk/) instead of a vendored copy.
    #[arg(long)]
    sdk: Option<PathBuf>,
    /// Write into an existing, non-empty directory.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// Plugin project (the directory with Cargo.toml and plugin.toml).
    #[arg(default_value = ".")]
    project: PathBuf,
    /// Where to write the component and its manifest [default: <project>/dist].
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct TestArgs {
    /// A built plugin: its project, its dist/ directory or its plugin.toml.
    #[arg(default_value = ".")]
    plugin: PathBuf,
    /// Table(s) to run on (CSV, Parquet, NDJSON); metrics take real, then
    /// synthetic, then holdout.
    #[arg(short, long, required = true)]
    input: Vec<PathBuf>,
    /// A stage setting for the plugin: `--set prefix=XYZ-` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print the pipeline the plugin runs in.
    #[arg(long)]
    show_pipeline: bool,
    /// Print the stage's result as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::IngestWorker) {
        // No logging set-up, no runtime: the parent reads one answer line.
        return ExitCode::from(u8::try_from(doppel_app::datasets::child_main()).unwrap_or(1));
    }
    let bars = match &cli.command {
        Command::Run(args) => progress::Bars::new(args.progress),
        _ => progress::Bars::hidden(),
    };
    if let Err(e) = logging::init(&cli.global, &bars) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Run(args) => commands::run(&cli.global, args, &bars),
        Command::Validate(args) => commands::validate(&cli.global, &args),
        Command::Plugin(PluginCommand::List { json }) => commands::plugins_list(&cli.global, json),
        Command::Plugin(PluginCommand::New(args)) => author::new(&args),
        Command::Plugin(PluginCommand::Build(args)) => author::build(&args),
        Command::Plugin(PluginCommand::Test(args)) => author::test(&cli.global, &args),
        Command::Serve(args) => serve::serve(&cli.global, &args, false),
        Command::Worker(args) => serve::serve(&cli.global, &args, true),
        Command::IngestWorker => Ok(ExitCode::SUCCESS),
        Command::Engine(EngineCommand::Standalone { executors, vcores }) => {
            commands::engine_standalone(executors, vcores)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            bars.clear();
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
