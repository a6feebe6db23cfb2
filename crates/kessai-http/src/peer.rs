//! Who is on the other end of a mutual-TLS connection.
//!
//! rustls has verified the client's certificate chain before we read it;
//! here we only take the name and the party out of the leaf: the subject's
//! common name (else its first DNS subjectAltName) and its
//! organizationalUnitName `kessai-<party>` ([`Party`]). A minimal DER reader
//! does it so that no X.509 parser has to be linked; any structure it does
//! not expect yields no identity (fail closed).

pub use kessai_tls::Party;

/// The VERIFIED client certificate of the connection a request came over
/// (a request extension set by [`crate::serve`] under mutual TLS): its
/// holder's name and the party it acts as. Absent when the client presented
/// no certificate. A route grants a party, never a name alone: see
/// [`PeerIdentity::acting_as`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    pub name: String,
    /// `None` for a certificate that names no party, or more than one
    /// (certificates issued before parties were): it acts as none.
    pub party: Option<Party>,
}

impl PeerIdentity {
    pub fn new(name: impl Into<String>, party: Party) -> PeerIdentity {
        PeerIdentity { name: name.into(), party: Some(party) }
    }

    /// The holder's name, if the certificate acts as `party`.
    pub fn acting_as(&self, party: Party) -> Option<&str> {
        (self.party == Some(party)).then_some(self.name.as_str())
    }
}

const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_ORGANIZATIONAL_UNIT: &[u8] = &[0x55, 0x04, 0x0b];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_EXTENSIONS: u8 = 0xa3;
const TAG_DNS_NAME: u8 = 0x82;
/// Longest name we take as an identity.
const MAX_IDENTITY_BYTES: usize = 255;

/// One DER element: (tag, contents, rest). Definite lengths up to 4 bytes.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The elements inside a constructed element's contents.
fn elements(mut contents: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, value, rest) = tlv(contents)?;
        contents = rest;
        Some((tag, value))
    })
}

fn text(tag: u8, value: &[u8]) -> Option<String> {
    // UTF8String, PrintableString, IA5String.
    if !matches!(tag, 0x0c | 0x13 | 0x16) || value.is_empty() || value.len() > MAX_IDENTITY_BYTES {
        return None;
    }
    let s = std::str::from_utf8(value).ok()?;
    s.chars().all(|c| !c.is_control()).then(|| s.to_owned())
}

/// Every value of attribute `wanted` in a subject, in order; `None` if the
/// subject is not the structure expected.
fn attributes(subject: &[u8], wanted: &[u8]) -> Option<Vec<String>> {
    let mut found = Vec::new();
    for (tag, rdn) in elements(subject) {
        if tag != TAG_SET {
            return None;
        }
        for (tag, attribute) in elements(rdn) {
            let mut parts = elements(attribute);
            let (oid_tag, oid) = parts.next()?;
            let (value_tag, value) = parts.next()?;
            if tag == TAG_SEQUENCE && oid_tag == TAG_OID && oid == wanted {
                found.push(text(value_tag, value)?);
            }
        }
    }
    Some(found)
}

/// The one party the subject's organizational units name; none if they
/// name no party or more than one.
fn party_of(subject: &[u8]) -> Option<Party> {
    let units = attributes(subject, OID_ORGANIZATIONAL_UNIT)?;
    let mut parties = units.iter().filter_map(|u| Party::of_unit(u));
    let party = parties.next()?;
    parties.all(|p| p == party).then_some(party)
}

fn first_dns_name(extensions: &[u8]) -> Option<String> {
    let (_, list, _) = tlv(extensions).filter(|(tag, _, _)| *tag == TAG_SEQUENCE)?;
    for (_, extension) in elements(list) {
        let mut parts = elements(extension);
        let (_, oid) = parts.next()?;
        if oid != OID_SUBJECT_ALT_NAME {
            continue;
        }
        let (_, octets) = parts.find(|(tag, _)| *tag == TAG_OCTET_STRING)?;
        let (_, names, _) = tlv(octets)?;
        let (_, dns) = elements(names).find(|(tag, _)| *tag == TAG_DNS_NAME)?;
        return text(0x16, dns);
    }
    None
}

/// The identity in a DER certificate: subject CN (else first DNS SAN), and
/// the party of its organizational unit.
pub(crate) fn identity_of(der: &[u8]) -> Option<PeerIdentity> {
    let (_, certificate, _) = tlv(der)?;
    let (_, tbs, _) = tlv(certificate)?;
    let mut fields = elements(tbs).peekable();
    // Optional explicit [0] version.
    fields.next_if(|(tag, _)| *tag == 0xa0);
    // serial, signature algorithm, issuer, validity, then the subject.
    let (subject_tag, subject) = fields.nth(4)?;
    if subject_tag != TAG_SEQUENCE {
        return None;
    }
    let party = party_of(subject);
    if let Some(cn) = attributes(subject, OID_COMMON_NAME)?.into_iter().next() {
        return Some(PeerIdentity { name: cn, party });
    }
    let (_, extensions) = fields.find(|(tag, _)| *tag == TAG_EXTENSIONS)?;
    Some(PeerIdentity { name: first_dns_name(extensions)?, party })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_yields_no_identity() {
        assert_eq!(identity_of(&[]), None);
        assert_eq!(identity_of(&[0x30, 0x82, 0xff]), None);
        assert_eq!(identity_of(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
    }
}
