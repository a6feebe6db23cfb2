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

/// Half-width forms of the full-width katakana U+30A1 (ァ) to U+30F6 (ヶ),
/// in order: voiced kana become the base kana and ﾞ or ﾟ, small kana the
/// large one (Zengin has no small kana), ヰ and ヱ the modern ｲ and ｴ.
const KATAKANA_HALF_WIDTH: [&str; 86] = [
    "ｱ", "ｱ", "ｲ", "ｲ", "ｳ", "ｳ", "ｴ", "ｴ", "ｵ", "ｵ", // ァア ィイ ゥウ ェエ ォオ
    "ｶ", "ｶﾞ", "ｷ", "ｷﾞ", "ｸ", "ｸﾞ", "ｹ", "ｹﾞ", "ｺ", "ｺﾞ", // カ行
    "ｻ", "ｻﾞ", "ｼ", "ｼﾞ", "ｽ", "ｽﾞ", "ｾ", "ｾﾞ", "ｿ", "ｿﾞ", // サ行
    "ﾀ", "ﾀﾞ", "ﾁ", "ﾁﾞ", "ﾂ", "ﾂ", "ﾂﾞ", "ﾃ", "ﾃﾞ", "ﾄ", "ﾄﾞ", // タ行, ッ
    "ﾅ", "ﾆ", "ﾇ", "ﾈ", "ﾉ", // ナ行
    "ﾊ", "ﾊﾞ", "ﾊﾟ", "ﾋ", "ﾋﾞ", "ﾋﾟ", "ﾌ", "ﾌﾞ", "ﾌﾟ", "ﾍ", "ﾍﾞ", "ﾍﾟ", "ﾎ", "ﾎﾞ", "ﾎﾟ", // ハ行
    "ﾏ", "ﾐ", "ﾑ", "ﾒ", "ﾓ", // マ行
    "ﾔ", "ﾔ", "ﾕ", "ﾕ", "ﾖ", "ﾖ", // ャヤ ュユ ョヨ
    "ﾗ", "ﾘ", "ﾙ", "ﾚ", "ﾛ", // ラ行
    "ﾜ", "ﾜ", "ｲ", "ｴ", "ｦ", "ﾝ", "ｳﾞ", "ｶ", "ｹ", // ヮワ ヰ ヱ ヲ ン ヴ ヵ ヶ
];
const KATAKANA_FIRST: u32 = 0x30A1;

/// Whether a JIS X 0201 byte may appear in a Zengin name (the JBA's
/// 振込許容文字): digits, upper-case letters, space, `( ) - . / ,`, ¥, the
/// corner brackets ｢ ｣, ｦ, and the large half-width katakana with ﾞ and ﾟ.
/// Small kana, ｰ and the other punctuation are not.
fn zengin_allows(b: u8) -> bool {
    b.is_ascii_digit()
        || b.is_ascii_uppercase()
        || b" ()-./,\\".contains(&b)
        || matches!(b, 0xA2 | 0xA3 | 0xA6 | 0xB1..=0xDF)
}

/// A name as Zengin files carry it (受取人名, 振込依頼人名, bank and branch
/// names): half-width katakana, upper-case letters, digits and a few
/// symbols. What an operator types in its full-width form is converted —
/// katakana and hiragana to half-width (ガ to ｶﾞ), small kana to large,
/// the long-vowel mark to `-` (the banks' convention), full-width letters,
/// digits and spaces to ASCII, lower case to upper — and anything else
/// Zengin cannot carry is refused: the first such character is the error.
pub(crate) fn zengin_text(text: &str) -> Result<String, char> {
    let mut out = String::with_capacity(text.len());
    for typed in text.chars() {
        let code = u32::from(typed);
        // Full-width ASCII and hiragana first become what they stand for.
        let c = match code {
            0xFF01..=0xFF5E => char::from_u32(code - 0xFEE0).unwrap_or(typed),
            0x3041..=0x3096 => char::from_u32(code + 0x60).unwrap_or(typed),
            _ => typed,
        };
        let converted = match c {
            'a'..='z' => c.to_ascii_uppercase().to_string(),
            '\u{3000}' => " ".to_owned(),
            'ー' | 'ｰ' => "-".to_owned(),
            '\\' | '￥' => "¥".to_owned(),
            '「' => "｢".to_owned(),
            '」' => "｣".to_owned(),
            // ｧ..ｫ sit ten places before ｱ..ｵ.
            'ｧ'..='ｫ' => char::from_u32(u32::from(c) + 10).map(String::from).unwrap_or_default(),
            'ｬ' => "ﾔ".to_owned(),
            'ｭ' => "ﾕ".to_owned(),
            'ｮ' => "ﾖ".to_owned(),
            'ｯ' => "ﾂ".to_owned(),
            '\u{30A1}'..='\u{30F6}' => {
                let index = usize::try_from(u32::from(c) - KATAKANA_FIRST).unwrap_or(usize::MAX);
                KATAKANA_HALF_WIDTH.get(index).copied().unwrap_or_default().to_owned()
            }
            _ => c.to_string(),
        };
        if converted.is_empty() || !converted.chars().all(|d| encode(d).is_some_and(zengin_allows)) {
            return Err(typed);
        }
        out.push_str(&converted);
    }
    Ok(out)
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
    fn names_convert_to_what_zengin_carries() {
        let cases = [
            ("ﾔﾏﾀﾞ ﾀﾛｳ", "ﾔﾏﾀﾞ ﾀﾛｳ"),
            ("ヤマダ　タロウ", "ﾔﾏﾀﾞ ﾀﾛｳ"),
            ("やまだ たろう", "ﾔﾏﾀﾞ ﾀﾛｳ"),
            ("カ）ケッサイショウテン", "ｶ)ｹﾂｻｲｼﾖｳﾃﾝ"),
            ("ヴァイオリン", "ｳﾞｱｲｵﾘﾝ"),
            ("ｷｯﾁｮｳ", "ｷﾂﾁﾖｳ"),
            ("ＡＢＣ　ｃｏ．", "ABC CO."),
            ("Kessai-1/2,(3)", "KESSAI-1/2,(3)"),
            ("スーパー", "ｽ-ﾊﾟ-"),
            ("「ヰヱヲ」", "｢ｲｴｦ｣"),
            ("¥\\＼", "¥¥¥"),
        ];
        for (typed, want) in cases {
            assert_eq!(zengin_text(typed).as_deref(), Ok(want), "{typed}");
        }
        let refused = [
            ("山田", '山'),
            ("A&B", '&'),
            ("ｱ｡", '｡'),
            ("ﾊﾟﾝ・ﾄﾞ", '・'),
            ("e\u{301}", '\u{301}'),
            ("a~", '~'),
            ("x\ty", '\t'),
        ];
        for (typed, bad) in refused {
            assert_eq!(zengin_text(typed), Err(bad), "{typed:?}");
        }
        // Whatever converts, converts to bytes Zengin allows.
        for c in (0x20..0x3100).filter_map(char::from_u32) {
            if let Ok(text) = zengin_text(&c.to_string()) {
                assert!(text.chars().all(|d| encode(d).is_some_and(zengin_allows)), "{c:?}");
            }
        }
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
