//! `--busy-poll`: a data-plane thread spins for the next frame before it sleeps. After a frame
//! it keeps a CPU busy for up to its budget (and a frame that comes meanwhile crosses); without
//! busy polling it sleeps at once. Both drivers, one case after the other (alone in this test
//! binary, so the process's CPU time is the engine's and this thread's).

mod enginekit;
use enginekit as common;

use common::*;
use std::time::Duration;
use vdens_fast::cli::EngineChoice;
use vdens_fast::engine::UringTuning;

const LEN: usize = 200;
/// The idle window whose CPU time is measured.
const WINDOW: Duration = Duration::from_millis(400);

/// CPU time (user + system) of this process so far.
fn cpu() -> Duration {
    let r = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let tv = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    tv(r.user_time()) + tv(r.system_time())
}

/// One frame tap -> link; then the CPU the idle engine burns in [`WINDOW`], with a second frame
/// sent half-way through it (it must cross either way).
fn idle_cpu(choice: EngineChoice, busy_poll_us: u32) -> Duration {
    let t = UringTuning {
        busy_poll_us,
        ..UringTuning::default()
    };
    let mut rig = rig_tuned(opts(choice), t, LinkKind::Seqpacket);
    let mut buf = vec![0u8; LEN];
    let mut got = vec![0u8; 2048];
    make_frame(&mut buf, LEN, 1, 7);
    rig.tap_w.send(&buf);
    let n = rig.link_r.recv(&mut got, STEP).expect("the first frame crossed");
    check_frame(&got[..n], LEN, 1, 7, "first");
    let before = cpu();
    std::thread::sleep(WINDOW / 2);
    make_frame(&mut buf, LEN, 2, 7);
    rig.tap_w.send(&buf);
    let n = rig.link_r.recv(&mut got, STEP).expect("the second frame crossed");
    check_frame(&got[..n], LEN, 2, 7, "second");
    std::thread::sleep(WINDOW / 2);
    let used = cpu() - before;
    rig.engine.take().unwrap().stop();
    used
}

#[test]
fn busy_polling_spins_for_its_budget_and_only_then() {
    bounded(Duration::from_secs(60), "busy poll", || {
        for choice in [EngineChoice::Uring, EngineChoice::Poll] {
            let off = idle_cpu(choice, 0);
            // A budget longer than the window: the thread spins through all of it. On a
            // machine busy with other work it still gets a fair share of a CPU; a sleeping
            // thread gets none.
            let on = idle_cpu(choice, 2_000_000);
            assert!(
                off < WINDOW / 10,
                "{choice:?} without busy polling used {off:?} of {WINDOW:?}"
            );
            assert!(
                on >= WINDOW / 5,
                "{choice:?} busy polling used only {on:?} of {WINDOW:?}"
            );
        }
    });
}
