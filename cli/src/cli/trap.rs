//! A trap, the plugin's or the lock component's, as lockbydir reports it: what trapped and
//! why on one line, then the WebAssembly backtrace, one frame per line. Each line is escaped
//! when printed: function names come from the component's name section, which its author
//! wrote.

use lockbydir::limits::{LimitHit, Whose};
use lockbydir::{Error, escape};
use lockbydir_cli::duration::display_ms;
use wasmtime::{Trap, WasmBacktrace};

use super::exit::{self, Failure};

/// A plugin run's failure: a plugin that trapped exits [`exit::PLUGIN_TRAPPED`], with its
/// backtrace; anything else is returned as it is.
pub fn plugin_failure(e: Error) -> anyhow::Error {
    match &e {
        Error::Component { what, reason } if ran_wasm(reason) => {
            readable(what, reason, exit::PLUGIN_TRAPPED)
        }
        Error::Limit { plugin, limit } => Failure::error(1, stopped(plugin, limit)),
        _ => e.into(),
    }
}

/// `e`, with the backtrace of a lock component that trapped made readable (exit
/// [`exit::SOFTWARE`]: a bug in lockbydir).
pub fn readable_error(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<Error>() {
        Some(Error::Trap { doing, reason }) => readable(
            &format!("the lock component trapped while {doing}"),
            reason,
            exit::SOFTWARE,
        ),
        _ => e,
    }
}

/// Whether `reason` came from running WebAssembly code (a trap, or an error raised while it
/// ran), not from loading or linking a component.
fn ran_wasm(reason: &wasmtime::Error) -> bool {
    reason.is::<Trap>() || reason.is::<WasmBacktrace>()
}

/// `what` failed for `reason`: why on one line, the backtrace's frames under it.
fn readable(what: &str, reason: &wasmtime::Error, code: u8) -> anyhow::Error {
    let why = match reason.downcast_ref::<Trap>() {
        // "wasm trap: wasm `unreachable` instruction executed": once is enough.
        Some(trap) => {
            let trap = trap.to_string();
            trap.strip_prefix("wasm trap: ").unwrap_or(&trap).to_owned()
        }
        // An error a host function raised while the code ran: its causes, without the
        // backtrace, which wasmtime adds as one of them.
        None => reason
            .chain()
            .map(|c| c.to_string())
            .filter(|c| !c.starts_with("error while executing at wasm backtrace"))
            .collect::<Vec<_>>()
            .join(": "),
    };
    let details = match reason.downcast_ref::<WasmBacktrace>() {
        Some(backtrace) if !backtrace.frames().is_empty() => {
            std::iter::once("wasm backtrace (innermost call first):".to_owned())
                .chain(frames(backtrace))
                .collect()
        }
        _ => Vec::new(),
    };
    Failure::with_details(code, format!("{what}: {why}"), details)
}

/// One line per frame (and one more per source location, where the component has debug
/// information), as `wasmtime run` shows them.
fn frames(backtrace: &WasmBacktrace) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, frame) in backtrace.frames().iter().enumerate() {
        let at = frame
            .module_offset()
            .map_or(String::new(), |o| format!("{o:#x} - "));
        let module = frame.module().name().unwrap_or("<unknown>");
        let function = frame.func_name().map_or_else(
            || format!("<wasm function {}>", frame.func_index()),
            str::to_owned,
        );
        lines.push(format!("  {i:>3}: {at}{module}!{function}"));
        for symbol in frame.symbols() {
            let name = symbol.name().unwrap_or("<inlined function>");
            let place = match (symbol.file(), symbol.line(), symbol.column()) {
                (Some(file), Some(line), Some(column)) => format!(" at {file}:{line}:{column}"),
                (Some(file), Some(line), None) => format!(" at {file}:{line}"),
                (Some(file), None, _) => format!(" at {file}"),
                (None, ..) => String::new(),
            };
            lines.push(format!("         {name}{place}"));
        }
    }
    lines
}

/// A plugin stopped by one of its limits, in words that name the flag of that limit.
fn stopped(plugin: &str, limit: &LimitHit) -> String {
    let limit = match limit {
        LimitHit::Deadline(d) => format!(
            "its deadline (--deadline {})",
            display_ms(d.as_millis() as u64)
        ),
        LimitHit::Memory {
            max,
            whose: Whose::Plugin,
            asked,
            used,
        } => format!(
            "its memory limit (--max-memory {max} bytes; it asked for {asked}, with {used} in \
             use by it and its lock component)"
        ),
        LimitHit::Memory {
            max, asked, used, ..
        } => format!(
            "its memory limit (--max-memory {max} bytes, shared with its lock component, which \
             asked for {asked} more, with {used} in use)"
        ),
        other => other.to_string(),
    };
    format!(
        "plugin `{}` was stopped: it exceeded {limit}",
        escape(plugin)
    )
}
