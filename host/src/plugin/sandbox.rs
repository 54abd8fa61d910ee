//! What a plugin instance may touch: the import policy checked at load, the
//! store state every call runs with (empty WASI context, bounded stdio, memory
//! limiter, deadline) and the `host.log` import.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::v0_1::shared::doppel::plugin::host as host_v0_1;
use super::manifest::Capabilities;

/// What the operator allows plugins to have, on top of what each declares.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Environment variables plugins may read (only those they declare).
    pub env: Vec<String>,
    /// Whether plugins may read clocks.
    pub clock: bool,
    /// Guest path → host directory, mounted read-only for plugins that declare
    /// the guest path.
    pub mounts: Vec<(String, std::path::PathBuf)>,
}

/// A capability a WASI import needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Always allowed: streams, stdio (captured), exit, randomness, an
    /// environment that only holds granted variables.
    Baseline,
    Clock,
    Files,
    /// Never allowed by contract 0.1.
    Forbidden(&'static str),
}

/// Which capability an import name (`wasi:io/streams@0.2.6`) needs.
fn need(import: &str) -> Need {
    let name = import.split('@').next().unwrap_or(import);
    match name {
        "doppel:plugin/host" | "doppel:plugin/types" => Need::Baseline,
        "wasi:io/error" | "wasi:io/streams" | "wasi:io/poll" => Need::Baseline,
        "wasi:cli/environment"
        | "wasi:cli/exit"
        | "wasi:cli/stdin"
        | "wasi:cli/stdout"
        | "wasi:cli/stderr"
        | "wasi:cli/terminal-input"
        | "wasi:cli/terminal-output"
        | "wasi:cli/terminal-stdin"
        | "wasi:cli/terminal-stdout"
        | "wasi:cli/terminal-stderr" => Need::Baseline,
        "wasi:random/random" | "wasi:random/insecure" | "wasi:random/insecure-seed" => Need::Baseline,
        "wasi:clocks/monotonic-clock" | "wasi:clocks/wall-clock" => Need::Clock,
        "wasi:filesystem/types" | "wasi:filesystem/preopens" => Need::Files,
        n if n.starts_with("wasi:sockets/") || n.starts_with("wasi:http/") => {
            Need::Forbidden("network access is not available to plugins")
        }
        _ => Need::Forbidden("the host provides no such interface"),
    }
}

/// Check a component's imports against what its manifest declares and the
/// operator grants. Returns one line per refused import.
pub(crate) fn refused_imports<'a>(
    imports: impl IntoIterator<Item = &'a str>,
    declared: &Capabilities,
    grants: &Grants,
) -> Vec<String> {
    let mut refused = Vec::new();
    for import in imports {
        let why = match need(import) {
            Need::Baseline => None,
            Need::Clock if !declared.clock => Some("needs the `clock` capability, which its manifest does not declare"),
            Need::Clock if !grants.clock => {
                Some("needs the `clock` capability, which the operator has not granted (--allow-clock)")
            }
            Need::Files if declared.files.is_empty() => {
                Some("needs the `files` capability, which its manifest does not declare")
            }
            Need::Files if !declared.files.iter().any(|f| grants.mounts.iter().any(|(g, _)| g == f)) => {
                Some("needs the `files` capability, which the operator has not granted (--mount GUEST=HOST)")
            }
            Need::Clock | Need::Files => None,
            Need::Forbidden(why) => Some(why),
        };
        if let Some(why) = why {
            refused.push(format!("it imports `{import}`: {why}"));
        }
    }
    if declared.network {
        refused.push("its manifest asks for network access, which plugins cannot have".to_owned());
    }
    refused
}

/// Why a call was stopped from the outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupt {
    Timeout,
    Cancelled,
}

/// Memory and table limits of one instance; records the growth that failed.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub(crate) memory_bytes: usize,
    pub(crate) denied_growth: Option<usize>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.denied_growth = Some(desired);
            // Trap rather than return -1: a Rust guest would abort anyway, and
            // a trap carries the reason to the host.
            return Err(wasmtime::Error::msg("memory limit reached"));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }

    fn instances(&self) -> usize {
        32
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        32
    }
}

/// Bytes a plugin may log through `host.log` per stage run.
const LOG_BUDGET: usize = 64 * 1024;
/// Bytes of stdout / stderr kept per instance (plugins should use `log`).
pub(crate) const STDIO_CAPACITY: usize = 64 * 1024;

/// Everything a store carries for one plugin instance.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) stage: Arc<str>,
    pub(crate) plugin: Arc<str>,
    log_left: usize,
    pub(crate) deadline: Option<Instant>,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) interrupted: Option<Interrupt>,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) stdout: MemoryOutputPipe,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("stage", &self.stage)
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl HostState {
    /// State for one instance: a WASI context with nothing in it but captured
    /// stdio and whatever was both declared and granted.
    pub(crate) fn new(
        stage: Arc<str>,
        plugin: Arc<str>,
        memory_bytes: usize,
        declared: &Capabilities,
        grants: &Grants,
        cancel: Arc<AtomicBool>,
    ) -> wasmtime::Result<Self> {
        let stdout = MemoryOutputPipe::new(STDIO_CAPACITY);
        let stderr = MemoryOutputPipe::new(STDIO_CAPACITY);
        let mut builder = WasiCtx::builder();
        builder.stdout(stdout.clone()).stderr(stderr.clone());
        for name in &declared.env {
            if grants.env.contains(name)
                && let Ok(value) = std::env::var(name)
            {
                builder.env(name, value);
            }
        }
        for guest in &declared.files {
            if let Some((_, host)) = grants.mounts.iter().find(|(g, _)| g == guest) {
                builder.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadOnly)?;
            }
        }
        Ok(HostState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes,
                denied_growth: None,
            },
            stage,
            plugin,
            log_left: LOG_BUDGET,
            deadline: None,
            cancel,
            interrupted: None,
            stderr,
            stdout,
        })
    }

    /// Epoch callback: every tick (10 ms) check cancellation and the deadline.
    pub(crate) fn on_epoch(mut ctx: StoreContextMut<'_, HostState>) -> wasmtime::Result<UpdateDeadline> {
        let state = ctx.data_mut();
        if state.cancel.load(Ordering::Relaxed) {
            state.interrupted = Some(Interrupt::Cancelled);
            return Err(wasmtime::Error::msg("stage cancelled"));
        }
        if let Some(deadline) = state.deadline
            && Instant::now() >= deadline
        {
            state.interrupted = Some(Interrupt::Timeout);
            return Err(wasmtime::Error::msg("call timed out"));
        }
        Ok(UpdateDeadline::Continue(1))
    }

    /// The last lines the plugin wrote to stderr (a panic message, typically).
    pub(crate) fn stderr_tail(&self) -> String {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(4)..].join(" | ")
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host_v0_1::Host for HostState {
    fn log(&mut self, level: host_v0_1::LogLevel, message: String) {
        if self.log_left == 0 {
            return;
        }
        let mut end = message.len().min(self.log_left).min(4096);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let text = &message[..end];
        self.log_left -= end.max(1);
        let (stage, plugin) = (&*self.stage, &*self.plugin);
        match level {
            host_v0_1::LogLevel::Trace => tracing::trace!(stage, plugin, "{text}"),
            host_v0_1::LogLevel::Debug => tracing::debug!(stage, plugin, "{text}"),
            host_v0_1::LogLevel::Info => tracing::info!(stage, plugin, "{text}"),
            host_v0_1::LogLevel::Warn => tracing::warn!(stage, plugin, "{text}"),
            host_v0_1::LogLevel::Error => tracing::error!(stage, plugin, "{text}"),
        }
        if self.log_left == 0 {
            tracing::warn!(
                stage,
                plugin,
                "Plugin exhausted its log budget; further lines are dropped."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STD_IMPORTS: &[&str] = &[
        "wasi:io/streams@0.2.6",
        "wasi:cli/environment@0.2.6",
        "wasi:random/insecure-seed@0.2.6",
        "doppel:plugin/host@0.1.0",
    ];

    #[test]
    fn std_guests_need_nothing() {
        assert!(
            refused_imports(
                STD_IMPORTS.iter().copied(),
                &Capabilities::default(),
                &Grants::default()
            )
            .is_empty()
        );
    }

    #[test]
    fn files_need_declaration_and_grant() {
        let imports = ["wasi:filesystem/preopens@0.2.6"];
        let none = refused_imports(imports, &Capabilities::default(), &Grants::default());
        assert!(none[0].contains("does not declare"), "{none:?}");
        let declared = Capabilities {
            files: vec!["/models".into()],
            ..Capabilities::default()
        };
        let ungranted = refused_imports(imports, &declared, &Grants::default());
        assert!(ungranted[0].contains("not granted"), "{ungranted:?}");
        let grants = Grants {
            mounts: vec![("/models".into(), "/tmp".into())],
            ..Grants::default()
        };
        assert!(refused_imports(imports, &declared, &grants).is_empty());
    }

    #[test]
    fn sockets_are_always_refused() {
        let grants = Grants {
            clock: true,
            ..Grants::default()
        };
        let caps = Capabilities {
            clock: true,
            ..Capabilities::default()
        };
        let r = refused_imports(
            ["wasi:sockets/tcp@0.2.6", "wasi:clocks/wall-clock@0.2.6"],
            &caps,
            &grants,
        );
        assert_eq!(r.len(), 1);
        assert!(r[0].contains("network"), "{r:?}");
    }
}
