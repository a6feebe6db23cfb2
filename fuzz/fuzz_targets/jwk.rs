//! The JWK and JWKS parsers: any bytes are read or refused without a
//! panic; what is read is an Ed25519 key that loads.
#![no_main]

use kessai_core::jwk::{parse_jwk, parse_jwks};
use kessai_core::keys::PublicKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(jwk) = parse_jwk(data) {
        assert!(PublicKey::from_bytes(&jwk.public).is_ok(), "a parsed JWK holds a usable key");
    }
    if let Ok(jwks) = parse_jwks(data) {
        for jwk in jwks {
            assert!(PublicKey::from_bytes(&jwk.public).is_ok());
        }
    }
});
