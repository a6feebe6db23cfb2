//! The card behind the vpcd socket protocol, on loopback.

use std::net::SocketAddr;
use std::thread;

use kessai_card::protocol::{ATR, BalanceReport, TxStatus, debit_command, read_balance_command};
use kessai_card::terminal::Terminal;
use kessai_card::transport::Reader;
use kessai_card::transport::vpcd::{VpcdListener, serve_vpcd};

use crate::{credit, keys, new_card, request};

#[test]
fn secure_debit_over_the_socket() {
    let listener = VpcdListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = listener.local_addr().unwrap();
    let card_thread = thread::spawn(move || serve_vpcd(new_card(), addr));
    let mut reader = listener.accept().unwrap();
    assert_eq!(reader.atr(), ATR);
    // One byte would be a control message: refused before it leaves.
    assert!(reader.transmit(&[0x80]).is_err());

    let mut t = Terminal::new(reader);
    t.select().unwrap();
    let s = t.open_session(keys(), [5; 8]).unwrap();
    let (s, r) = t.secure(s, &kessai_card::protocol::credit_command(&request(1, 900))).unwrap();
    assert_eq!(r.sw().raw(), 0x9000);
    let (s, r) = t.secure(s, &debit_command(&request(2, 400))).unwrap();
    let TxStatus::Applied(result) = TxStatus::parse(r.data()).unwrap() else { panic!() };
    assert_eq!(result.balance_after_minor, 500);
    // A reset ends the session: the next sealed command is refused.
    t.reader_mut().reset().unwrap();
    let mut s = s;
    let wire = s.wrap(&read_balance_command()).unwrap();
    let r = t.transmit(&wire).unwrap();
    assert_eq!(r.sw().raw(), 0x6D00, "after reset nothing is selected");
    t.select().unwrap();
    let s = t.open_session(keys(), [6; 8]).unwrap();
    let (_, r) = t.secure(s, &read_balance_command()).unwrap();
    assert_eq!(BalanceReport::parse(r.data()).unwrap().balance_minor, 500);

    drop(t); // closes the socket: the card returns
    let card = card_thread.join().unwrap().unwrap();
    assert_eq!(card.state().public_info().balance_minor, 500);
    let _ = credit;
}

#[test]
fn a_card_process_serves_its_image_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.img");
    kessai_card::create_image_file(&path, &crate::personalization()).unwrap();
    let listener = VpcdListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = listener.local_addr().unwrap();
    let image = path.clone();
    let card = thread::spawn(move || {
        kessai_card::transport::vpcd::serve_vpcd_image(&image, kessai_card::Durability::Fsync, addr)
    });
    let mut t = Terminal::new(listener.accept().unwrap());
    t.select().unwrap();
    let s = t.open_session(keys(), [7; 8]).unwrap();
    let (_, r) = t.secure(s, &kessai_card::protocol::credit_command(&request(1, 77))).unwrap();
    assert_eq!(r.sw().raw(), 0x9000);
    drop(t);
    card.join().unwrap().unwrap();
    let info = kessai_card::public_info(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(info.balance_minor, 77);
}
