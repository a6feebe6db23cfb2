//! Who is on the other end of a mutual-TLS connection.
//!
//! rustls has verified the client's certificate chain before we read it;
//! here we only take the name out of the leaf: the subject's common name,
//! else its first DNS subjectAltName. A minimal DER reader does it so that
//! no X.509 parser has to be linked; any structure it does not expect
//! yields no identity (fail closed).

/// The name in the VERIFIED client certificate of the connection a request
/// came over (a request extension set by [`crate::serve`] under mutual
/// TLS). Absent when the client presented no certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity(pub String);

const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
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

fn common_name(subject: &[u8]) -> Option<String> {
    for (tag, rdn) in elements(subject) {
        if tag != TAG_SET {
            return None;
        }
        for (tag, attribute) in elements(rdn) {
            let mut parts = elements(attribute);
            let (oid_tag, oid) = parts.next()?;
            let (value_tag, value) = parts.next()?;
            if tag == TAG_SEQUENCE && oid_tag == TAG_OID && oid == OID_COMMON_NAME {
                return text(value_tag, value);
            }
        }
    }
    None
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

/// The identity in a DER certificate: subject CN, else first DNS SAN.
pub(crate) fn identity_of(der: &[u8]) -> Option<String> {
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
    if let Some(cn) = common_name(subject) {
        return Some(cn);
    }
    let (_, extensions) = fields.find(|(tag, _)| *tag == TAG_EXTENSIONS)?;
    first_dns_name(extensions)
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
