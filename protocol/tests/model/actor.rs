//! What an actor does: the real [`Lock`] driven through a few rounds of acquire, work,
//! refresh and release, reporting every result to the checker.

use std::mem::ManuallyDrop;

use lockbydir_protocol::{Env, Error, Holder, Lock, Outcome};

use super::checker::{Invariant, T0, Violation};
use super::engine::Engine;
use super::handles::{ModelEnv, ModelFs};
use super::scenario::{ActorSpec, LOCK_NAME, Scenario};

type ModelLock<'a> = Lock<ModelFs<'a>, ModelEnv<'a>>;

/// A deadline as the trace prints times.
fn rel(ms: u64) -> String {
    format!("{:+}", ms as i64 - T0)
}

fn who(h: &Holder) -> String {
    format!(
        "{} (fence {}, deadline {})",
        h.label,
        h.fence,
        rel(h.deadline_ms)
    )
}

fn error(e: &Error) -> String {
    match e {
        Error::Compromised { fence, now_held_by } => format!(
            "Err(Compromised: lost fence {fence}; now held by {})",
            now_held_by.as_ref().map_or("nobody".into(), who)
        ),
        other => format!("Err({other})"),
    }
}

/// Run actor `me` of `scenario` as `spec` says. `strict` is for the final probe, which must
/// get the lock and give it back.
pub fn drive(engine: &Engine, me: usize, scenario: &Scenario, spec: &ActorSpec, strict: bool) {
    let fs = ModelFs { engine, actor: me };
    let env = ModelEnv { engine, actor: me };
    let lock = Lock::new(fs, env, LOCK_NAME, scenario.options(spec)).expect("valid options");
    // A crash unwinds out of whatever call the actor is in. Dropping a handle that holds the
    // lock releases it, which a crashed process never does, so the handle is never dropped
    // while unwinding; it is only dropped after the last round, when it holds nothing.
    let mut lock = ManuallyDrop::new(lock);
    if spec.start_ms > 0 {
        env.sleep_ms(spec.start_ms);
    }
    for _ in 0..spec.rounds {
        engine.begin_call(me);
        let start = engine.now();
        let patient = spec.patience_ms > 0;
        let outcome = match (patient, spec.tries_first) {
            (true, false) => lock.acquire(),
            (true, true) => match lock.try_acquire() {
                Ok(Outcome::Busy(_)) => {
                    engine.observe(
                        me,
                        || "try_acquire -> Busy: now waits".to_string(),
                        |c, _| {
                            c.stats.waits_after_a_try += 1;
                            Ok(())
                        },
                    );
                    lock.acquire()
                }
                tried => tried,
            },
            (false, _) => lock.try_acquire(),
        };
        let call = if patient { "acquire" } else { "try_acquire" };
        match outcome {
            Ok(Outcome::Acquired(grant)) => {
                let holder = lock.holder().cloned().expect("an acquired handle holds");
                engine.observe(
                    me,
                    || {
                        format!(
                            "{call} -> Acquired fence {}, deadline {} on its clock{}",
                            grant.fence,
                            rel(grant.deadline_ms),
                            grant
                                .took_over
                                .as_ref()
                                .map_or(String::new(), |h| format!(", took over from {}", who(h)))
                        )
                    },
                    |c, t| {
                        c.acquired(me, t, &grant, &holder)?;
                        match (&grant.took_over, strict) {
                            (Some(from), true) => c.probe_took_over(me, t, start, from),
                            _ => Ok(()),
                        }
                    },
                );
                hold(engine, me, &mut lock, spec, strict);
            }
            Ok(Outcome::Busy(seen)) => {
                let waited = engine.now() - start;
                engine.observe(
                    me,
                    || {
                        format!(
                            "{call} -> Busy after {waited} ms, holder {}",
                            seen.as_ref().map_or("unknown".into(), who)
                        )
                    },
                    |c, _| match strict {
                        true => Err(Violation::new(
                            Invariant::Liveness,
                            format!(
                                "after everyone stopped, {} waited {waited} ms (enough to \
                                 outlast any deadline) and still found the lock busy",
                                spec.label
                            ),
                        )),
                        false => c.busy(me, waited, spec.patience_ms),
                    },
                );
            }
            Err(e) => engine.observe(
                me,
                || format!("{call} -> {}", error(&e)),
                |c, _| c.failed(me, call, &e),
            ),
        }
    }
    drop(ManuallyDrop::into_inner(lock));
}

/// Hold the lock: work, refresh, work, ..., release; stop early when told the lock was lost.
fn hold(engine: &Engine, me: usize, lock: &mut ModelLock<'_>, spec: &ActorSpec, strict: bool) {
    let env = ModelEnv { engine, actor: me };
    for _ in 0..spec.refreshes {
        env.sleep_ms(spec.hold_ms);
        engine.begin_call(me);
        let result = lock.refresh();
        let holder = lock.holder().cloned();
        engine.observe(
            me,
            || match &result {
                Ok(d) => format!("refresh -> Ok, new deadline {} on its clock", rel(*d)),
                Err(e) => format!("refresh -> {}", error(e)),
            },
            |c, t| c.refreshed(me, t, &result, holder.as_ref()),
        );
        if result.is_err() {
            return;
        }
    }
    env.sleep_ms(spec.hold_ms);
    engine.observe(
        me,
        || "calls release: stops acting as the holder".into(),
        |c, _| {
            c.releasing(me);
            Ok(())
        },
    );
    engine.begin_call(me);
    let result = lock.release();
    engine.observe(
        me,
        || match &result {
            Ok(r) => format!("release -> Ok({r:?})"),
            Err(e) => format!("release -> {}", error(e)),
        },
        |c, _| match (&result, strict) {
            (Err(e), true) => Err(Violation::new(
                Invariant::Liveness,
                format!("the final probe could not release: {e}"),
            )),
            _ => c.released(me, &result),
        },
    );
}
