//! JIS X 0201, the single-byte code of Zengin files: the Roman set
//! (0x20–0x7E, ASCII but for 0x5C YEN SIGN and 0x7E OVERLINE) and
//! half-width katakana (0xA1–0xDF), which map one to one, by offset, onto
//! Unicode's Halfwidth Katakana block U+FF61–U+FF9F. Nothing else is
//! printable: control bytes, 0x7F, 0x80–0xA0 and 0xE0–0xFF are refused
//! (Shift_JIS lead bytes among them, so a double-byte name is caught).

/// First half-width katakana byte (｡, HALFWIDTH IDEOGRAPHIC FULL STOP).
const KANA_FIRST_BYTE: u8 = 0xA1;
/// Last half-width katakana byte (ﾟ, HALFWIDTH SEMI-VOICED SOUND MARK).
const KANA_LAST_BYTE: u8 = 0xDF;
/// The Unicode scalar of the first half-width katakana.
const KANA_FIRST_CHAR: u32 = 0xFF61;

/// Whether `b` is a printable JIS X 0201 character.
pub(crate) fn is_printable(b: u8) -> bool {
    (0x20..=0x7E).contains(&b) || (KANA_FIRST_BYTE..=KANA_LAST_BYTE).contains(&b)
}

/// The character a byte stands for, if printable.
pub(crate) fn decode(b: u8) -> Option<char> {
    match b {
        0x5C => Some('¥'),
        0x7E => Some('‾'),
        0x20..=0x7D => Some(char::from(b)),
        KANA_FIRST_BYTE..=KANA_LAST_BYTE => char::from_u32(KANA_FIRST_CHAR + u32::from(b - KANA_FIRST_BYTE)),
        _ => None,
    }
}

/// The byte for a character, if JIS X 0201 has it. A backslash and a
/// tilde have none (their ASCII positions hold ¥ and ‾); neither have
/// full-width katakana, which a caller converts first.
pub(crate) fn encode(c: char) -> Option<u8> {
    match c {
        '¥' => Some(0x5C),
        '‾' => Some(0x7E),
        '\\' | '~' => None,
        ' '..='}' => u8::try_from(u32::from(c)).ok(),
        '\u{FF61}'..='\u{FF9F}' => {
            let offset = u32::from(c) - KANA_FIRST_CHAR;
            u8::try_from(offset).ok().map(|o| KANA_FIRST_BYTE + o)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_printable_byte_round_trips_and_nothing_else_decodes() {
        for b in 0..=u8::MAX {
            match decode(b) {
                Some(c) => {
                    assert!(is_printable(b), "{b:#04x}");
                    assert_eq!(encode(c), Some(b), "{b:#04x} {c:?}");
                }
                None => assert!(!is_printable(b), "{b:#04x}"),
            }
        }
        assert_eq!((0..=u8::MAX).filter(|b| is_printable(*b)).count(), 95 + 63);
    }

    #[test]
    fn katakana_map_by_offset() {
        assert_eq!(decode(0xA1), Some('｡'));
        assert_eq!(decode(0xB1), Some('ｱ'));
        assert_eq!(decode(0xDE), Some('ﾞ'));
        assert_eq!(decode(0xDF), Some('ﾟ'));
        assert_eq!(
            "ﾔﾏﾀﾞ ﾀﾛｳ".chars().map(encode).collect::<Option<Vec<u8>>>().unwrap(),
            b"\xD4\xCF\xC0\xDE \xC0\xDB\xB3"
        );
        for c in ['\\', '~', 'ア', '山', 'é', '\u{7F}', '\n'] {
            assert_eq!(encode(c), None, "{c:?}");
        }
    }
}
