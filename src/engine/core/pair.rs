//! A datagram `ptp://` first opener's pairing of its second socket F2 with the second opener's
//! R2 (`wire::superframe` has the protocol), as a state machine free of I/O: the loop does the
//! connects, disconnects and sends it says, and tells it what came back. Written once for
//! every datagram ptp end the node runs (a port's link, a vdeplug-fast cable's); unit-tested
//! here. [`step`] says what a negotiation runt leads to, in either role,
//! [`hello_due`] when a second opener asks, [`f2_lost`] which failed send on F2 ends a pairing.

use crate::wire::superframe::Runt;
use std::time::{Duration, Instant};

/// How often a first opener asked by a vdens-fast second opener, not yet paired, sends PAIR
/// again while it sends.
pub const PAIR_EVERY: Duration = Duration::from_secs(1);
/// PAIRs a first opener sends after one HELLO before it gives up until the next HELLO.
pub const PAIR_TRIES: u8 = 5;

/// How often a second opener that offered super-frames, not answered yet, asks its peer again
/// (HELLO) while it sends.
pub const HELLO_EVERY: Duration = Duration::from_secs(1);

/// Whether a second opener that sends and was not answered asks (HELLO) at `now`, given when
/// it last did (`last`, updated when it does).
pub fn hello_due(last: &mut Option<Instant>, now: Instant) -> bool {
    if last.is_some_and(|t| now.duration_since(t) < HELLO_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

/// Whether a send on F2 that failed with `errno` means that F2's peer is gone (ECONNREFUSED,
/// then ENOTCONN), or that F2 was disconnected for a new pairing: the pairing of that send's
/// round ends ([`Pairing::failed`]). A full buffer, an interrupted or cancelled send does not.
pub fn f2_lost(errno: i32) -> bool {
    !matches!(
        errno,
        libc::EAGAIN | libc::EINTR | libc::ECANCELED | libc::ENOBUFS
    )
}

/// What a datagram ptp end does with a negotiation runt ([`step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the runt does not fit this end's role, or the socket it came on.
    Nothing,
    /// A HELLO: answer OFFER on the main socket (a first opener by path); `pair`: a first
    /// opener with F2 then starts pairing (unpair, disconnect F2, [`Pairing::hello`], PAIR
    /// when [`Pairing::pair_due`]).
    Offer { pair: bool },
    /// An OFFER: a second opener's peer takes tagged datagrams (its socket is connected, so
    /// the OFFER came from the very socket it sends to).
    Offered,
    /// A PAIR (second opener with R2; from its first opener's socket, the only one its
    /// connected socket takes from): connect R2 to F2, then say JOIN on the main socket.
    ConnectR2,
    /// A JOIN (first opener with F2): if [`Pairing::joinable`], connect F2 to R2, then
    /// [`Pairing::joined`] and PROBE with its nonce on F2.
    ConnectF2,
    /// A PROBE read on R2 (second opener): ECHO this nonce on the main socket.
    Echo(u32),
    /// An ECHO (first opener with F2): pairs when [`Pairing::echo`] takes this nonce.
    Echoed(u32),
}

/// What runt `r` leads to, arrived on R2 (`on_r2`) or on the end's main socket, for an end
/// whose pair socket is F2 (`pair` Some(true)), R2 (Some(false)) or none.
pub fn step(r: Runt, on_r2: bool, pair: Option<bool>) -> Step {
    match (r, on_r2, pair) {
        (Runt::Hello, false, p) => Step::Offer {
            pair: p == Some(true),
        },
        (Runt::Offer, false, _) => Step::Offered,
        (Runt::Pair, false, Some(false)) => Step::ConnectR2,
        (Runt::Join, false, Some(true)) => Step::ConnectF2,
        (Runt::Probe(n), true, Some(false)) => Step::Echo(n),
        (Runt::Echo(n), false, Some(true)) => Step::Echoed(n),
        _ => Step::Nothing,
    }
}

/// Where the pairing is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairState {
    /// Standard frames by path, until a HELLO.
    Idle,
    /// A vdens-fast second opener said HELLO: PAIR sent.
    Asked,
    /// F2 connected to R2 (the peer said JOIN); PROBE with this nonce sent.
    Joined(u32),
    /// The ECHO came: every frame goes on F2.
    Paired,
}

/// The first opener's side of the pairing.
#[derive(Debug)]
pub struct Pairing {
    state: PairState,
    /// Pairings started (HELLOs): a failed send on F2 from an earlier one (F2 was
    /// disconnected under it) does not end this one.
    round: u32,
    /// When PAIR was last sent, and how many since the HELLO.
    asked_at: Option<Instant>,
    tries: u8,
    nonce: u32,
}

impl Pairing {
    /// Idle; `seed` starts the nonces (one that differs per process: only an echo of the
    /// latest probe counts).
    pub fn new(seed: u32) -> Pairing {
        Pairing {
            state: PairState::Idle,
            round: 0,
            asked_at: None,
            tries: 0,
            nonce: seed,
        }
    }

    /// Idle, its nonces started from this process and the time: only an echo of the latest
    /// probe counts, and a start that differs per process makes an old end's echo useless.
    pub fn fresh() -> Pairing {
        Pairing::new(
            std::process::id().wrapping_mul(0x9e37_79b1)
                ^ std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos()),
        )
    }

    pub fn state(&self) -> PairState {
        self.state
    }

    /// Every frame goes on F2.
    pub fn paired(&self) -> bool {
        self.state == PairState::Paired
    }

    /// The current pairing (a send on F2 is tagged with it, see [`Pairing::failed`]).
    pub fn round(&self) -> u32 {
        self.round
    }

    /// A HELLO came: pairing starts over (the loop unpairs, disconnects F2 so that the new
    /// R2 may connect to it, then sends PAIR when [`Pairing::pair_due`] says).
    pub fn hello(&mut self) {
        self.state = PairState::Asked;
        self.round = self.round.wrapping_add(1);
        self.tries = 0;
        self.asked_at = None;
    }

    /// Whether a PAIR is to be sent at `now` (asked, not paired, tries left, none sent within
    /// [`PAIR_EVERY`]); counts it when it is.
    pub fn pair_due(&mut self, now: Instant) -> bool {
        let due = matches!(self.state, PairState::Asked | PairState::Joined(_))
            && self.tries < PAIR_TRIES
            && !self.asked_at.is_some_and(|t| now.duration_since(t) < PAIR_EVERY);
        if due {
            self.tries += 1;
            self.asked_at = Some(now);
        }
        due
    }

    /// Whether a JOIN is to be taken now (the loop then connects F2 to R2 and, if that
    /// worked, calls [`Pairing::joined`]).
    pub fn joinable(&self) -> bool {
        matches!(self.state, PairState::Asked | PairState::Joined(_))
    }

    /// F2 is connected to R2: the nonce of the PROBE to send on it.
    pub fn joined(&mut self) -> u32 {
        self.nonce = self.nonce.wrapping_mul(0x9e37_79b1).wrapping_add(0x7f4a_7c15);
        self.state = PairState::Joined(self.nonce);
        self.nonce
    }

    /// An ECHO of `nonce` came: true when it pairs (it echoes the latest probe).
    pub fn echo(&mut self, nonce: u32) -> bool {
        if self.state != PairState::Joined(nonce) {
            return false;
        }
        self.state = PairState::Paired;
        true
    }

    /// A send on F2 of pairing `round` failed for good (the peer is gone): true when that
    /// ends the current pairing (the loop then unpairs).
    pub fn failed(&self, round: u32) -> bool {
        round == self.round
    }

    /// Standard frames by path from now on.
    pub fn unpair(&mut self) {
        self.state = PairState::Idle;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runts_lead_to_their_steps_by_role_and_socket() {
        let (f2, r2) = (Some(true), Some(false));
        assert_eq!(step(Runt::Hello, false, f2), Step::Offer { pair: true });
        assert_eq!(step(Runt::Hello, false, None), Step::Offer { pair: false });
        assert_eq!(step(Runt::Hello, false, r2), Step::Offer { pair: false });
        assert_eq!(step(Runt::Hello, true, r2), Step::Nothing, "R2 takes no HELLO");
        assert_eq!(step(Runt::Offer, false, r2), Step::Offered);
        assert_eq!(step(Runt::Offer, false, None), Step::Offered);
        assert_eq!(step(Runt::Offer, true, r2), Step::Nothing);
        assert_eq!(step(Runt::Pair, false, r2), Step::ConnectR2);
        assert_eq!(
            step(Runt::Pair, false, f2),
            Step::Nothing,
            "PAIR is for a second opener"
        );
        assert_eq!(step(Runt::Pair, false, None), Step::Nothing, "nothing to connect");
        assert_eq!(step(Runt::Pair, true, r2), Step::Nothing, "PAIR comes by path");
        assert_eq!(step(Runt::Join, false, f2), Step::ConnectF2);
        assert_eq!(step(Runt::Join, false, r2), Step::Nothing);
        assert_eq!(step(Runt::Probe(9), true, r2), Step::Echo(9));
        assert_eq!(
            step(Runt::Probe(9), false, r2),
            Step::Nothing,
            "a probe counts on R2 only"
        );
        assert_eq!(step(Runt::Probe(9), true, f2), Step::Nothing);
        assert_eq!(step(Runt::Echo(4), false, f2), Step::Echoed(4));
        assert_eq!(step(Runt::Echo(4), true, f2), Step::Nothing);
        assert_eq!(step(Runt::Echo(4), false, r2), Step::Nothing);
    }

    #[test]
    fn hello_at_most_once_per_hello_every() {
        let t0 = Instant::now();
        let mut last = None;
        assert!(hello_due(&mut last, t0));
        assert!(!hello_due(&mut last, t0 + HELLO_EVERY / 2));
        assert!(hello_due(&mut last, t0 + HELLO_EVERY));
        assert_eq!(last, Some(t0 + HELLO_EVERY));
        // Reset (connected to a new peer): at once.
        last = None;
        assert!(hello_due(&mut last, t0 + HELLO_EVERY));
    }

    #[test]
    fn which_failed_sends_on_f2_end_a_pairing() {
        for e in [
            libc::ECONNREFUSED,
            libc::ENOTCONN,
            libc::EPIPE,
            libc::EDESTADDRREQ,
        ] {
            assert!(f2_lost(e), "{e}");
        }
        for e in [libc::EAGAIN, libc::EINTR, libc::ECANCELED, libc::ENOBUFS] {
            assert!(!f2_lost(e), "{e}");
        }
    }

    #[test]
    fn hello_pair_join_probe_echo_pairs() {
        let t0 = Instant::now();
        let mut p = Pairing::new(42);
        assert!(!p.pair_due(t0), "nothing before a HELLO");
        assert!(!p.joinable());
        p.hello();
        assert_eq!(p.state(), PairState::Asked);
        assert!(p.pair_due(t0));
        assert!(!p.pair_due(t0 + PAIR_EVERY / 2), "at most once per PAIR_EVERY");
        assert!(p.joinable());
        let n = p.joined();
        assert_eq!(p.state(), PairState::Joined(n));
        assert!(!p.echo(n.wrapping_add(1)), "an echo of another nonce");
        assert!(!p.paired());
        assert!(p.echo(n));
        assert!(p.paired());
        assert!(!p.pair_due(t0 + PAIR_EVERY * 2), "paired: no PAIR");
        assert!(!p.joinable(), "paired: a JOIN is not taken");
    }

    #[test]
    fn a_second_join_sends_a_new_probe_and_only_its_echo_counts() {
        let mut p = Pairing::new(7);
        p.hello();
        let a = p.joined();
        let b = p.joined();
        assert_ne!(a, b);
        assert!(!p.echo(a), "the older probe's echo");
        assert!(p.echo(b));
    }

    #[test]
    fn pair_is_tried_a_bounded_number_of_times_per_hello() {
        let t0 = Instant::now();
        let mut p = Pairing::new(1);
        p.hello();
        let sent = (0..20).filter(|k| p.pair_due(t0 + PAIR_EVERY * *k)).count();
        assert_eq!(sent, PAIR_TRIES as usize);
        p.hello();
        assert!(p.pair_due(t0 + PAIR_EVERY * 30), "a new HELLO starts again");
    }

    #[test]
    fn only_a_failure_of_this_round_ends_the_pairing() {
        let mut p = Pairing::new(3);
        p.hello();
        let first = p.round();
        let n = p.joined();
        assert!(p.echo(n));
        p.hello();
        assert!(!p.failed(first), "F2 was disconnected under the earlier round");
        assert!(p.failed(p.round()));
        p.unpair();
        assert_eq!(p.state(), PairState::Idle);
        assert!(!p.pair_due(Instant::now()));
    }
}
