//! Random sequences of valid and invalid commands: the card never panics,
//! its state always passes its own checks, and while the log has not
//! wrapped the balance equals the sum of the logged changes.

use kessai_card::limits::LOG_CAPACITY;
use kessai_card::protocol::{
    credit_command, debit_command, read_balance_command, read_log_command, transaction_status_command,
};
use kessai_card::transport::Reader;
use kessai_scp03::HostSession;
use proptest::prelude::*;

use crate::{keys, request, terminal};

#[derive(Clone, Debug)]
enum Op {
    Select,
    Open,
    Debit(u8, u64),
    Credit(u8, u64),
    Balance,
    Log(u8, u8),
    Status(u8),
    PlainDebit(u8, u64),
    FlipMac(u8, u64),
    Garbage(Vec<u8>),
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0u8..12;
    let amount = prop_oneof![0u64..3, 1u64..5_000, Just(u64::MAX), Just(crate::MAX_BALANCE)];
    prop_oneof![
        1 => Just(Op::Select),
        2 => Just(Op::Open),
        4 => (id.clone(), amount.clone()).prop_map(|(i, a)| Op::Debit(i, a)),
        4 => (id.clone(), amount.clone()).prop_map(|(i, a)| Op::Credit(i, a)),
        1 => Just(Op::Balance),
        1 => (0u8..70, 0u8..5).prop_map(|(s, c)| Op::Log(s, c)),
        1 => id.clone().prop_map(Op::Status),
        1 => (id.clone(), amount.clone()).prop_map(|(i, a)| Op::PlainDebit(i, a)),
        1 => (id, amount).prop_map(|(i, a)| Op::FlipMac(i, a)),
        2 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(Op::Garbage),
        1 => Just(Op::Reset),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_the_books(ops in proptest::collection::vec(op(), 1..40)) {
        let mut t = terminal();
        let mut s: Option<HostSession> = None;
        for op in ops {
            s = step(&mut t, s, op);
            let state = t.reader_mut().card().state();
            state.check().unwrap();
            let info = state.public_info();
            prop_assert!(info.balance_minor <= info.max_balance_minor);
            if (info.counter as usize) <= LOG_CAPACITY {
                let sum: i128 = state.log().map(|r| r.delta_minor()).sum();
                prop_assert_eq!(i128::from(info.balance_minor), sum);
                prop_assert_eq!(state.log().count(), info.counter as usize);
            }
        }
    }
}

fn step(t: &mut crate::InProcess, s: Option<HostSession>, op: Op) -> Option<HostSession> {
    let sealed = |t: &mut crate::InProcess, s: Option<HostSession>, c| {
        let s = s?;
        t.secure(s, &c).ok().map(|(s, _)| s)
    };
    match op {
        Op::Select => {
            let _ = t.select();
            None
        }
        Op::Open => t.open_session(keys(), [3; 8]).ok(),
        Op::Debit(i, a) => sealed(t, s, debit_command(&request(i, a))),
        Op::Credit(i, a) => sealed(t, s, credit_command(&request(i, a))),
        Op::Balance => sealed(t, s, read_balance_command()),
        Op::Log(skip, n) => sealed(t, s, read_log_command(skip, n)),
        Op::Status(i) => sealed(t, s, transaction_status_command(&request(i, 1).tx_id)),
        Op::PlainDebit(i, a) => {
            let _ = t.transmit(&debit_command(&request(i, a)));
            None
        }
        Op::FlipMac(i, a) => {
            let mut s = s?;
            let mut wire = s.wrap(&debit_command(&request(i, a))).ok()?.to_bytes();
            let at = wire.len() - 2;
            wire[at] ^= 0x40;
            let _ = t.reader_mut().transmit(&wire);
            None
        }
        Op::Garbage(bytes) => {
            let _ = t.reader_mut().transmit(&bytes);
            // Garbage may or may not end the session; keep trying with it.
            s
        }
        Op::Reset => {
            t.reader_mut().card_mut().reset();
            None
        }
    }
}
