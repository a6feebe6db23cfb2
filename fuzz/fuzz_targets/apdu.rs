//! The APDU codec (ISO 7816-4, short and extended): any bytes parse or are
//! refused without a panic, and what parses re-encodes to something that
//! parses back to the same command or response.
#![no_main]

use kessai_scp03::{CommandApdu, ResponseApdu};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(command) = CommandApdu::parse(data) {
        let again = CommandApdu::parse(&command.to_bytes()).expect("a parsed command re-encodes to a valid one");
        assert_eq!(again, command);
    }
    if let Ok(response) = ResponseApdu::parse(data) {
        let again = ResponseApdu::parse(&response.to_bytes()).expect("a parsed response re-encodes to a valid one");
        assert_eq!(again, response);
    }
});
