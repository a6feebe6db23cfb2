//! Paying stores into their bank accounts (issue #19, item 3): the
//! accounts a store registers, the batch of payouts a center sends its
//! bank, and what the bank reports back.
//!
//! - A store's account is one line of text an operator types, parsed into
//!   a [`PayeeAccount`] and printed back the same way:
//!   `zengin:BBBB-SSS-T-NNNNNNN:HOLDER` for a Japanese account (bank code,
//!   branch code, deposit type, account number, the holder as Zengin
//!   spells it) or `iban:IBAN[:BIC]:HOLDER` for an account with an IBAN.
//! - A [`PayoutBatch`] is what one file pays: the debtor (the center's
//!   account) and [`PayoutLine`]s, each naming its payee, amount and an
//!   end-to-end id that every format carries to the bank and back.
//!   [`crate::pain001::write`] writes it as ISO 20022 pain.001,
//!   [`crate::zengin::write_transfer_request`] as a Zengin 総合振込.
//! - [`read_outcomes`] reads what the bank answers — a pain.002 status
//!   report, the account's camt.054/camt.053 (the debits booked, the
//!   returns credited) or a Zengin 総合振込 result — into a
//!   [`PayoutReport`] of [`PayoutOutcome`]s keyed by end-to-end id.
//!
//! ```
//! use kessai_bank::payout::{Debtor, PayeeAccount, PayoutBatch, PayoutLine};
//! use kessai_bank::{pain001, Date};
//! use kessai_core::{time::Timestamp, Currency, Money};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let payee: PayeeAccount = "zengin:0001-101-1-1234567:ヤマダ　ショウテン".parse()?;
//! assert_eq!(payee.to_string(), "zengin:0001-101-1-1234567:ﾔﾏﾀﾞ ｼﾖｳﾃﾝ");
//! let debtor = Debtor {
//!     name: "Kessai Center".into(),
//!     iban: Some("DE89 3704 0044 0532 0130 00".into()),
//!     bic: None,
//!     zengin: None,
//! };
//! let line = PayoutLine {
//!     end_to_end_id: "PO42".into(),
//!     amount: Money::new(12_000, Currency::JPY)?,
//!     payee,
//!     remittance: "Sales 2027-01".into(),
//! };
//! let batch = PayoutBatch::new(
//!     "PAYOUT-2027-01-15",
//!     Timestamp::from_unix_s(1_800_000_000),
//!     Date::parse("2027-01-18").ok_or("date")?,
//!     debtor,
//!     vec![line],
//! )?;
//! assert!(pain001::write(&batch)?.contains("<EndToEndId>PO42</EndToEndId>"));
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use kessai_core::limits::MAX_AMOUNT_MINOR;
use kessai_core::time::Timestamp;
use kessai_core::{Currency, Money};

use crate::iban::{self, IbanProblem};
use crate::limits::{
    MAX_ACCOUNT_TEXT_BYTES, MAX_END_TO_END_ID_CHARS, MAX_ENTRIES, MAX_IBAN_CHARS, MAX_IBAN_HOLDER_CHARS, MAX_ID_CHARS,
    MAX_PAYOUT_LINES, MAX_TEXT_CHARS, ZENGIN_BANK_NAME_CHARS, ZENGIN_MAX_REQUESTER_CODE, ZENGIN_PAYEE_NAME_CHARS,
    ZENGIN_REQUESTER_NAME_CHARS,
};
use crate::{BankFileError, Date, camt, jisx0201, pain002, zengin_transfer};

// ---------------------------------------------------------------------------
// Accounts.

/// Why an account (or a name in it) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    #[error("the account text has {len} bytes, more than the {max} we read")]
    TooLong { len: usize, max: usize },
    #[error("an account is written zengin:BBBB-SSS-T-NNNNNNN:HOLDER or iban:IBAN[:BIC]:HOLDER")]
    UnknownScheme,
    #[error("{found:?} is not BBBB-SSS-T-NNNNNNN (bank code 4 digits, branch 3, deposit type 1, account number 7)")]
    ZenginNumbers { found: String },
    #[error("{field} {value} has more than {digits} digits")]
    TooManyDigits { field: &'static str, value: u64, digits: u32 },
    #[error("deposit type {0} is not 1 (普通), 2 (当座), 4 (貯蓄) or 9 (その他)")]
    DepositType(u8),
    #[error("the name is missing")]
    NoName,
    #[error("the name has blanks before or after it")]
    Blanks,
    #[error(
        "{character:?} cannot be written in a Zengin name (half-width katakana, A-Z, 0-9, space, ( ) - . / , ｢ ｣ ¥)"
    )]
    NotZengin { character: char },
    #[error(
        "{character:?} is not among the Latin characters a credit transfer name may hold (a-z A-Z 0-9 space / - ? : ( ) . , ' +)"
    )]
    NotLatin { character: char },
    #[error("the name has {len} characters, more than the {max} the format holds")]
    NameTooLong { len: usize, max: usize },
    #[error("{iban:?} is not an IBAN: two letters, two check digits, then up to 30 letters and digits")]
    IbanShape { iban: String },
    #[error("{iban:?}: check digits 00, 01 and 99 are never issued")]
    IbanReservedCheckDigits { iban: String },
    #[error("{iban:?} has {len} characters, but IBANs of {country} have {expected}")]
    IbanLength { iban: String, country: String, len: usize, expected: usize },
    #[error("{iban:?}: the check digits do not match (ISO 13616 MOD 97-10); a typing error?")]
    IbanCheckDigits { iban: String },
    #[error("{0:?} is not a BIC: 4 letters or digits, a 2-letter country, 2 letters or digits, optionally 3 more")]
    BadBic(String),
}

/// A store's bank account, as the center pays it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PayeeAccount {
    /// A Japanese account, paid by Zengin 総合振込 or by pain.001 naming
    /// the bank by its Zengin code.
    Zengin(ZenginPayee),
    /// An account with an IBAN, paid by pain.001.
    Iban(IbanPayee),
}

/// A Japanese account: bank, branch, deposit type, number, and the
/// holder's name (受取人名) as Zengin carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZenginPayee {
    /// 銀行コード (統一金融機関コード), 0–9999.
    pub bank_code: u16,
    /// 支店コード, 0–999.
    pub branch_code: u16,
    /// 預金種目: 1 普通, 2 当座, 4 貯蓄, 9 その他.
    pub deposit_type: u8,
    /// 口座番号, 0–9,999,999.
    pub number: u32,
    /// 受取人名: at most 30 half-width characters Zengin allows (half-width
    /// katakana, A–Z, 0–9, space, `( ) - . / ,`, ｢ ｣, ¥), the form the
    /// bank compares with its own record of the account.
    pub holder: String,
}

/// An account with an IBAN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IbanPayee {
    /// In electronic form: upper case, no spaces; valid by ISO 13616.
    pub iban: String,
    /// The account's bank, 8 or 11 characters (ISO 9362); SEPA needs none.
    pub bic: Option<String>,
    /// The holder, at most 70 characters of the Latin set every SEPA bank
    /// accepts (a–z A–Z 0–9 space `/ - ? : ( ) . , ' +`).
    pub holder: String,
}

/// The Zengin deposit types (預金種目) a payee's account may have.
const PAYEE_DEPOSIT_TYPES: [u8; 4] = [1, 2, 4, 9];
/// The deposit types a 総合振込 header allows for the requester's account.
const REQUESTER_DEPOSIT_TYPES: [u8; 3] = [1, 2, 9];

fn digits_at_most(field: &'static str, value: u64, digits: u32) -> Result<(), AccountError> {
    if value >= 10u64.pow(digits) {
        return Err(AccountError::TooManyDigits { field, value, digits });
    }
    Ok(())
}

/// A name for a Zengin file, converted to its half-width form
/// ([`jisx0201::zengin_text`]), 1 to `max` characters.
fn zengin_name(text: &str, max: usize) -> Result<String, AccountError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(AccountError::NoName);
    }
    let name = jisx0201::zengin_text(trimmed).map_err(|character| AccountError::NotZengin { character })?;
    let len = name.chars().count();
    if len > max {
        return Err(AccountError::NameTooLong { len, max });
    }
    Ok(name)
}

/// Refuses a stored name that is not already what checking it would make
/// of it: blanks around it, or a character not yet converted.
fn already(typed: &str, converted: &str) -> Result<(), AccountError> {
    if typed == converted {
        return Ok(());
    }
    if typed.trim() != typed {
        return Err(AccountError::Blanks);
    }
    let character = typed.chars().zip(converted.chars()).find(|(a, b)| a != b).map_or(' ', |(a, _)| a);
    Err(AccountError::NotZengin { character })
}

/// Like [`zengin_name`], but blank is allowed (an optional name).
fn optional_zengin_name(text: &str, max: usize) -> Result<String, AccountError> {
    if text.trim().is_empty() { Ok(String::new()) } else { zengin_name(text, max) }
}

/// Whether `c` is in the Latin character set the EPC's SEPA rulebooks
/// require every bank to accept, which pain.001 names are kept to so a
/// bank never transliterates (or refuses) them.
fn is_sepa_latin(c: char) -> bool {
    c.is_ascii_alphanumeric() || " /-?:().,'+".contains(c)
}

/// A name for pain.001, 1 to `max` characters of the SEPA Latin set.
fn latin_name(text: &str, max: usize) -> Result<String, AccountError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(AccountError::NoName);
    }
    if let Some(character) = trimmed.chars().find(|c| !is_sepa_latin(*c)) {
        return Err(AccountError::NotLatin { character });
    }
    let len = trimmed.chars().count();
    if len > max {
        return Err(AccountError::NameTooLong { len, max });
    }
    Ok(trimmed.to_owned())
}

/// An IBAN as typed, in electronic form, checked.
fn checked_iban(text: &str) -> Result<String, AccountError> {
    let iban = iban::normalize_iban(text);
    let shown = || iban.chars().take(MAX_IBAN_CHARS + 6).collect::<String>();
    match iban::check_iban(&iban) {
        Ok(()) => Ok(iban),
        Err(IbanProblem::Shape) => Err(AccountError::IbanShape { iban: shown() }),
        Err(IbanProblem::ReservedCheckDigits) => Err(AccountError::IbanReservedCheckDigits { iban: shown() }),
        Err(IbanProblem::Length { country, expected }) => Err(AccountError::IbanLength {
            iban: shown(),
            country: String::from_utf8_lossy(&country).into_owned(),
            len: iban.len(),
            expected,
        }),
        Err(IbanProblem::CheckDigits) => Err(AccountError::IbanCheckDigits { iban: shown() }),
    }
}

/// A BIC as typed, upper-cased, checked.
fn checked_bic(text: &str) -> Result<String, AccountError> {
    let bic = text.trim().to_ascii_uppercase();
    if !iban::is_bic(&bic) {
        return Err(AccountError::BadBic(bic.chars().take(20).collect()));
    }
    Ok(bic)
}

impl ZenginPayee {
    /// A payee's account; the holder may be typed in full-width katakana
    /// (or hiragana), which is converted to what Zengin carries.
    pub fn new(
        bank_code: u16,
        branch_code: u16,
        deposit_type: u8,
        number: u32,
        holder: &str,
    ) -> Result<ZenginPayee, AccountError> {
        let payee = ZenginPayee {
            bank_code,
            branch_code,
            deposit_type,
            number,
            holder: zengin_name(holder, ZENGIN_PAYEE_NAME_CHARS)?,
        };
        payee.check()?;
        Ok(payee)
    }

    /// Checks every field is one a Zengin file can carry, the holder
    /// already in its half-width form.
    pub fn check(&self) -> Result<(), AccountError> {
        digits_at_most("bank code", u64::from(self.bank_code), 4)?;
        digits_at_most("branch code", u64::from(self.branch_code), 3)?;
        digits_at_most("account number", u64::from(self.number), 7)?;
        if !PAYEE_DEPOSIT_TYPES.contains(&self.deposit_type) {
            return Err(AccountError::DepositType(self.deposit_type));
        }
        already(&self.holder, &zengin_name(&self.holder, ZENGIN_PAYEE_NAME_CHARS)?)
    }

    /// `BBBB-SSS-T-NNNNNNN`, the account as [`crate::zengin::ZenginAccount::key`]
    /// names one.
    pub fn key(&self) -> String {
        format!("{:04}-{:03}-{}-{:07}", self.bank_code, self.branch_code, self.deposit_type, self.number)
    }
}

impl IbanPayee {
    /// A payee's account; the IBAN may be typed in groups and any case.
    pub fn new(iban: &str, bic: Option<&str>, holder: &str) -> Result<IbanPayee, AccountError> {
        Ok(IbanPayee {
            iban: checked_iban(iban)?,
            bic: bic.map(checked_bic).transpose()?,
            holder: latin_name(holder, MAX_IBAN_HOLDER_CHARS)?,
        })
    }

    /// Checks the IBAN (in electronic form), the BIC and the holder.
    pub fn check(&self) -> Result<(), AccountError> {
        let iban = checked_iban(&self.iban)?;
        if iban != self.iban {
            return Err(AccountError::IbanShape { iban: self.iban.chars().take(MAX_IBAN_CHARS + 6).collect() });
        }
        if let Some(bic) = &self.bic
            && (checked_bic(bic)? != *bic)
        {
            return Err(AccountError::BadBic(bic.chars().take(20).collect()));
        }
        if latin_name(&self.holder, MAX_IBAN_HOLDER_CHARS)? != self.holder {
            return Err(AccountError::Blanks);
        }
        Ok(())
    }
}

impl PayeeAccount {
    /// Checks the account is one every writer can write.
    pub fn check(&self) -> Result<(), AccountError> {
        match self {
            PayeeAccount::Zengin(z) => z.check(),
            PayeeAccount::Iban(i) => i.check(),
        }
    }

    /// The account in the form [`PayeeAccount::check`] wants: names
    /// converted, IBAN and BIC in electronic form.
    fn normalized(&self) -> Result<PayeeAccount, AccountError> {
        Ok(match self {
            PayeeAccount::Zengin(z) => {
                PayeeAccount::Zengin(ZenginPayee::new(z.bank_code, z.branch_code, z.deposit_type, z.number, &z.holder)?)
            }
            PayeeAccount::Iban(i) => PayeeAccount::Iban(IbanPayee::new(&i.iban, i.bic.as_deref(), &i.holder)?),
        })
    }

    /// The holder's name.
    pub fn holder(&self) -> &str {
        match self {
            PayeeAccount::Zengin(z) => &z.holder,
            PayeeAccount::Iban(i) => &i.holder,
        }
    }
}

/// Strips a scheme prefix, in any ASCII case.
fn strip_scheme<'a>(text: &'a str, scheme: &str) -> Option<&'a str> {
    let head = text.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme).then(|| text.get(scheme.len()..)).flatten()
}

impl FromStr for PayeeAccount {
    type Err = AccountError;

    /// `zengin:BBBB-SSS-T-NNNNNNN:HOLDER` or `iban:IBAN[:BIC]:HOLDER`.
    ///
    /// The Zengin numbers are exactly as many digits as the fields have
    /// (the bank's own 7-digit account number, zero-padded), the holder in
    /// Zengin's characters or typed in full width. The IBAN may be printed
    /// in groups. A BIC is read only when the field after the IBAN has a
    /// BIC's shape and a holder follows it; `iban:IBAN::HOLDER` says there
    /// is none, for a holder whose name itself starts like `XXXXXXXX:`.
    fn from_str(text: &str) -> Result<PayeeAccount, AccountError> {
        if text.len() > MAX_ACCOUNT_TEXT_BYTES {
            return Err(AccountError::TooLong { len: text.len(), max: MAX_ACCOUNT_TEXT_BYTES });
        }
        let text = text.trim();
        if let Some(rest) = strip_scheme(text, "zengin:") {
            let (numbers, holder) = rest.split_once(':').unwrap_or((rest, ""));
            let (bank, branch, deposit_type, number) = zengin_numbers(numbers.trim())?;
            return ZenginPayee::new(bank, branch, deposit_type, number, holder).map(PayeeAccount::Zengin);
        }
        if let Some(rest) = strip_scheme(text, "iban:") {
            let (iban, rest) = rest.split_once(':').unwrap_or((rest, ""));
            let (bic, holder) = match rest.split_once(':') {
                Some(("", holder)) => (None, holder),
                Some((bic, holder)) if iban::is_bic(&bic.trim().to_ascii_uppercase()) => (Some(bic), holder),
                _ => (None, rest),
            };
            return IbanPayee::new(iban, bic, holder).map(PayeeAccount::Iban);
        }
        Err(AccountError::UnknownScheme)
    }
}

/// `BBBB-SSS-T-NNNNNNN`: every field exactly its width in digits.
fn zengin_numbers(text: &str) -> Result<(u16, u16, u8, u32), AccountError> {
    let refuse = || AccountError::ZenginNumbers { found: text.chars().take(40).collect() };
    let parts: Vec<&str> = text.split('-').collect();
    let [bank, branch, deposit_type, number] = parts.as_slice() else { return Err(refuse()) };
    let field = |s: &str, width: usize| {
        (s.len() == width && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u32>().ok()).flatten()
    };
    let bank = field(bank, 4).and_then(|n| u16::try_from(n).ok()).ok_or_else(refuse)?;
    let branch = field(branch, 3).and_then(|n| u16::try_from(n).ok()).ok_or_else(refuse)?;
    let deposit_type = field(deposit_type, 1).and_then(|n| u8::try_from(n).ok()).ok_or_else(refuse)?;
    let number = field(number, 7).ok_or_else(refuse)?;
    Ok((bank, branch, deposit_type, number))
}

impl fmt::Display for PayeeAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayeeAccount::Zengin(z) => write!(f, "zengin:{}:{}", z.key(), z.holder),
            PayeeAccount::Iban(i) => match &i.bic {
                Some(bic) => write!(f, "iban:{}:{bic}:{}", i.iban, i.holder),
                None => {
                    // A holder named like `DEUTDEFF:…` would read back as a
                    // BIC: an empty BIC field says there is none.
                    let looks_like_bic = i
                        .holder
                        .split_once(':')
                        .is_some_and(|(head, _)| iban::is_bic(&head.trim().to_ascii_uppercase()));
                    let separator = if looks_like_bic || i.holder.starts_with(':') { "::" } else { ":" };
                    write!(f, "iban:{}{separator}{}", i.iban, i.holder)
                }
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Batches.

/// One payout: an amount to one payee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutLine {
    /// The center's id for the payout, 1–20 upper-case ASCII letters and
    /// digits: it must fit Zengin's EDI情報 (C(20), half-width) as well as
    /// pain.001's `EndToEndId`, and every bank file about the payout
    /// quotes it back. Unique within a batch.
    pub end_to_end_id: String,
    /// More than zero; every line of a batch in one currency.
    pub amount: Money,
    pub payee: PayeeAccount,
    /// Free text for the payee, at most 140 characters (pain.001's
    /// `Ustrd`); empty for none. A Zengin 総合振込 has no room for it and
    /// drops it.
    pub remittance: String,
}

/// The account the payouts are paid from: the center's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debtor {
    /// The center's name as pain.001 gives it (`Dbtr/Nm`, `InitgPty/Nm`),
    /// 1–140 characters.
    pub name: String,
    /// The account's IBAN, if it has one: pain.001 names the account by it.
    pub iban: Option<String>,
    /// The account's bank (BICFI), if known.
    pub bic: Option<String>,
    /// The account as a Japanese bank knows it: needed for a 総合振込, and
    /// naming the account in pain.001 when there is no IBAN.
    pub zengin: Option<ZenginDebtor>,
}

/// The center's Japanese account and its 総合振込 contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZenginDebtor {
    /// 振込依頼人コード (委託者コード): the code the bank gave the center
    /// for 総合振込, 10 digits.
    pub requester_code: u64,
    /// 振込依頼人名, the center's name in half-width kana, 1–40 characters.
    pub requester_name: String,
    /// 仕向銀行番号.
    pub bank_code: u16,
    /// 仕向銀行名, up to 15 characters (may be blank).
    pub bank_name: String,
    /// 仕向支店番号.
    pub branch_code: u16,
    /// 仕向支店名, up to 15 characters (may be blank).
    pub branch_name: String,
    /// 預金種目: 1 普通, 2 当座, 9 その他.
    pub deposit_type: u8,
    /// 口座番号.
    pub number: u32,
}

impl ZenginDebtor {
    fn normalized(&self) -> Result<ZenginDebtor, AccountError> {
        let debtor = ZenginDebtor {
            requester_name: zengin_name(&self.requester_name, ZENGIN_REQUESTER_NAME_CHARS)?,
            bank_name: optional_zengin_name(&self.bank_name, ZENGIN_BANK_NAME_CHARS)?,
            branch_name: optional_zengin_name(&self.branch_name, ZENGIN_BANK_NAME_CHARS)?,
            ..self.clone()
        };
        debtor.check()?;
        Ok(debtor)
    }

    /// Checks every field fits the 総合振込 header, names already in their
    /// half-width form.
    pub fn check(&self) -> Result<(), AccountError> {
        if self.requester_code > ZENGIN_MAX_REQUESTER_CODE {
            return Err(AccountError::TooManyDigits {
                field: "requester code",
                value: self.requester_code,
                digits: 10,
            });
        }
        digits_at_most("bank code", u64::from(self.bank_code), 4)?;
        digits_at_most("branch code", u64::from(self.branch_code), 3)?;
        digits_at_most("account number", u64::from(self.number), 7)?;
        if !REQUESTER_DEPOSIT_TYPES.contains(&self.deposit_type) {
            return Err(AccountError::DepositType(self.deposit_type));
        }
        let names = [
            (&self.requester_name, zengin_name(&self.requester_name, ZENGIN_REQUESTER_NAME_CHARS)?),
            (&self.bank_name, optional_zengin_name(&self.bank_name, ZENGIN_BANK_NAME_CHARS)?),
            (&self.branch_name, optional_zengin_name(&self.branch_name, ZENGIN_BANK_NAME_CHARS)?),
        ];
        for (typed, converted) in names {
            already(typed, &converted)?;
        }
        Ok(())
    }
}

/// One file's worth of payouts from the center's account. Valid once
/// built by [`PayoutBatch::new`]; the writers check again
/// ([`PayoutBatch::check`]), since every field is public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutBatch {
    /// The batch's id: pain.001's `MsgId` and `PmtInfId`, 1–35 printable
    /// ASCII characters without spaces. Unique per center.
    pub id: String,
    /// When the file was made (`CreDtTm`).
    pub created_at: Timestamp,
    /// The day the bank is to pay (pain.001 `ReqdExctnDt`, Zengin 振込指定日).
    pub execution_date: Date,
    pub debtor: Debtor,
    /// 1 to [`MAX_PAYOUT_LINES`] lines, one currency, unique end-to-end ids.
    pub lines: Vec<PayoutLine>,
}

impl PayoutBatch {
    /// A batch, its accounts and names normalized (IBANs and BICs to their
    /// electronic form, Zengin names to half-width) and every rule checked:
    /// see [`PayoutBatch::check`].
    pub fn new(
        id: &str,
        created_at: Timestamp,
        execution_date: Date,
        debtor: Debtor,
        lines: Vec<PayoutLine>,
    ) -> Result<PayoutBatch, BankFileError> {
        if lines.len() > MAX_PAYOUT_LINES {
            return Err(BankFileError::TooManyPayouts { max: MAX_PAYOUT_LINES });
        }
        let debtor = Debtor {
            name: debtor.name.trim().to_owned(),
            iban: debtor.iban.as_deref().map(checked_iban).transpose().map_err(bad_account("debtor IBAN"))?,
            bic: debtor.bic.as_deref().map(checked_bic).transpose().map_err(bad_account("debtor BIC"))?,
            zengin: debtor
                .zengin
                .as_ref()
                .map(ZenginDebtor::normalized)
                .transpose()
                .map_err(bad_account("debtor account"))?,
        };
        let lines = lines
            .into_iter()
            .map(|line| {
                let payee = line.payee.normalized().map_err(|problem| BankFileError::BadAccount {
                    at: format!("payout {} payee", shown_id(&line.end_to_end_id)),
                    problem,
                })?;
                Ok(PayoutLine { payee, remittance: line.remittance.trim().to_owned(), ..line })
            })
            .collect::<Result<Vec<_>, BankFileError>>()?;
        let batch = PayoutBatch { id: id.trim().to_owned(), created_at, execution_date, debtor, lines };
        batch.check()?;
        Ok(batch)
    }

    /// Checks what every writer relies on: the id; the debtor's name and at
    /// least one account (IBAN or Zengin), each valid; 1 to
    /// [`MAX_PAYOUT_LINES`] lines with well-formed, unique end-to-end ids,
    /// amounts above zero in one currency summing to at most
    /// [`MAX_AMOUNT_MINOR`], valid payees and remittance text that fits.
    pub fn check(&self) -> Result<(), BankFileError> {
        let id_ok = (1..=MAX_ID_CHARS).contains(&self.id.len()) && self.id.bytes().all(|b| b.is_ascii_graphic());
        if !id_ok {
            let text = self.id.chars().take(40).collect();
            let expected = "1-35 printable ASCII characters without spaces";
            return Err(BankFileError::BadText { field: "batch id", text, expected });
        }
        self.check_debtor()?;
        if self.lines.is_empty() {
            return Err(BankFileError::NoPayouts);
        }
        if self.lines.len() > MAX_PAYOUT_LINES {
            return Err(BankFileError::TooManyPayouts { max: MAX_PAYOUT_LINES });
        }
        let currency = self.currency();
        let mut ids = HashSet::with_capacity(self.lines.len());
        let mut total: u128 = 0;
        for line in &self.lines {
            check_end_to_end_id(&line.end_to_end_id)?;
            if !ids.insert(line.end_to_end_id.as_str()) {
                return Err(BankFileError::DuplicateEntry { key: line.end_to_end_id.clone() });
            }
            let found = line.amount.currency();
            if found != currency {
                return Err(BankFileError::WrongCurrency { field: "payout amount", found, expected: currency });
            }
            if line.amount.is_zero() {
                return Err(BankFileError::ZeroPayout { end_to_end_id: line.end_to_end_id.clone() });
            }
            total += u128::from(line.amount.amount_minor());
            line.payee.check().map_err(|problem| BankFileError::BadAccount {
                at: format!("payout {} payee", line.end_to_end_id),
                problem,
            })?;
            if !line.remittance.is_empty() {
                camt::draft_text("remittance", &line.remittance, MAX_TEXT_CHARS)?;
            }
        }
        if total > u128::from(MAX_AMOUNT_MINOR) {
            let value = u64::try_from(total).unwrap_or(u64::MAX);
            return Err(BankFileError::OutOfRange { field: "batch total", value, max: MAX_AMOUNT_MINOR });
        }
        Ok(())
    }

    fn check_debtor(&self) -> Result<(), BankFileError> {
        let d = &self.debtor;
        camt::draft_text("debtor name", &d.name, MAX_TEXT_CHARS)?;
        if let Some(iban) = &d.iban {
            // Valid, and already in electronic form.
            let checked = checked_iban(iban).map_err(bad_account("debtor IBAN"))?;
            if checked != *iban {
                let problem = AccountError::IbanShape { iban: iban.chars().take(40).collect() };
                return Err(BankFileError::BadAccount { at: "debtor IBAN".into(), problem });
            }
        }
        if let Some(bic) = &d.bic
            && checked_bic(bic).map_err(bad_account("debtor BIC"))? != *bic
        {
            let problem = AccountError::BadBic(bic.chars().take(20).collect());
            return Err(BankFileError::BadAccount { at: "debtor BIC".into(), problem });
        }
        if let Some(zengin) = &d.zengin {
            zengin.check().map_err(bad_account("debtor account"))?;
        }
        if d.iban.is_none() && d.zengin.is_none() {
            return Err(BankFileError::Missing { at: "debtor account (an IBAN or a Zengin account)".into() });
        }
        Ok(())
    }

    /// The batch's currency (its first line's; yen for an empty batch).
    pub fn currency(&self) -> Currency {
        self.lines.first().map_or(Currency::JPY, |l| l.amount.currency())
    }

    /// The sum of the lines, in minor units (what `CtrlSum` and the Zengin
    /// trailer state). Within [`MAX_AMOUNT_MINOR`] for a checked batch.
    pub fn total_minor(&self) -> u128 {
        self.lines.iter().map(|l| u128::from(l.amount.amount_minor())).sum()
    }
}

/// Turns an account problem into the batch's error, saying where.
fn bad_account(at: &'static str) -> impl Fn(AccountError) -> BankFileError {
    move |problem| BankFileError::BadAccount { at: at.to_owned(), problem }
}

/// An end-to-end id as an error shows it: at most 40 characters.
fn shown_id(id: &str) -> String {
    id.chars().take(40).collect()
}

fn check_end_to_end_id(id: &str) -> Result<(), BankFileError> {
    let ok = (1..=MAX_END_TO_END_ID_CHARS).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !ok {
        let expected = "1-20 upper-case ASCII letters and digits";
        return Err(BankFileError::BadText { field: "end-to-end id", text: shown_id(id), expected });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Outcomes.

/// Which kind of bank file a [`PayoutReport`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PayoutFormat {
    /// ISO 20022 CustomerPaymentStatusReport, `pain.002.001.<version>`.
    Pain002 { version: u8 },
    /// ISO 20022 BankToCustomerStatement of the debtor account.
    Camt053 { version: u8 },
    /// ISO 20022 BankToCustomerDebitCreditNotification of the debtor account.
    Camt054 { version: u8 },
    /// A Zengin 総合振込 result, 120-byte records: see [`crate::zengin_transfer`].
    ZenginTransferResult,
}

/// What one bank file says about payouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutReport {
    pub format: PayoutFormat,
    /// The report's id: pain.002 `GrpHdr/MsgId`; camt statement or
    /// notification ids, comma-separated; Zengin `依頼人コード/MMDD` per
    /// group, comma-separated.
    pub id: String,
    /// One per payout the file reports on, in file order.
    pub outcomes: Vec<PayoutOutcome>,
    /// Set when a pain.002 rejects a whole pain.001 (group status `RJCT`,
    /// or the status of its one payment information block): every line of
    /// that batch is rejected, though the report lists none of them.
    pub group_rejected: Option<GroupRejected>,
}

/// A whole batch refused by the bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRejected {
    /// The batch's id (its pain.001 `MsgId`).
    pub original_message_id: String,
    /// The bank's reason code (`StsRsnInf/Rsn/Cd`, e.g. `AM04`), if given.
    pub reason: Option<String>,
}

/// What became of one payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutOutcome {
    /// The payout's [`PayoutLine::end_to_end_id`] as the bank quotes it.
    pub end_to_end_id: String,
    pub status: PayoutStatus,
    /// The amount the bank reports, when it reports one.
    pub amount: Option<Money>,
    /// Why it was rejected or returned: an ISO 20022 reason code (`AC04`,
    /// `AM04`, …; for Zengin the code its result maps to).
    pub reason: Option<String>,
    /// Booking date of a settled debit or a booked return (camt only).
    pub booked_on: Option<Date>,
    /// Unique within the file and the same each time the file is read, as
    /// [`crate::Credit::entry_key`] is: pain.002 `report MsgId/EndToEndId`;
    /// camt `account/bank reference/EndToEndId`; Zengin
    /// `依頼人コード/MMDD/EndToEndId`. A later report on the same payout
    /// has a key of its own.
    pub entry_key: String,
}

/// The states a payout's outcome can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayoutStatus {
    /// Paid: debited from the center's account (pain.002 `ACSC`/`ACCC`, a
    /// booked camt debit, Zengin 振込済).
    Settled,
    /// Refused before the money left (pain.002 `RJCT`, Zengin 資金不足 or
    /// cancelled by the requester).
    Rejected,
    /// Paid out and sent back by the payee's bank (a camt return credit,
    /// Zengin 振込不能).
    Returned,
    /// Reported, not final (pain.002 `ACTC`, `ACSP`, `PDNG`…, a pending
    /// camt entry): changes nothing.
    Pending,
}

/// Reads a bank's answer about payouts, detecting its format: XML (after
/// an optional byte-order mark and blanks) is ISO 20022 pain.002 (versions
/// 03 to 10) or camt.053/camt.054 (02 to 08), a file starting with a
/// Zengin header record (`1`) a 総合振込 result.
pub fn read_outcomes(bytes: &[u8]) -> Result<PayoutReport, BankFileError> {
    match crate::sniff(bytes)? {
        crate::Sniffed::Xml(text) => {
            let doc = camt::document(text)?;
            let namespace = doc.root_element().tag_name().namespace().unwrap_or("");
            if let Some(version) = pain002::version_of(namespace) {
                pain002::read(&doc, version)
            } else if let Some((kind, version)) = camt::kind_of(namespace) {
                camt::read_outcomes(&doc, kind, version)
            } else {
                Err(BankFileError::UnknownOutcomeNamespace(namespace.chars().take(100).collect()))
            }
        }
        crate::Sniffed::Zengin => zengin_transfer::read_result(bytes),
        crate::Sniffed::Unknown => Err(BankFileError::UnknownOutcomeFormat),
    }
}

/// Gathers a file's outcomes, enforcing the entry limit and unique keys.
#[derive(Debug)]
pub(crate) struct Outcomes {
    list: Vec<PayoutOutcome>,
    keys: HashSet<String>,
}

impl Outcomes {
    pub(crate) fn new() -> Outcomes {
        Outcomes { list: Vec::new(), keys: HashSet::new() }
    }

    pub(crate) fn push(&mut self, outcome: PayoutOutcome) -> Result<(), BankFileError> {
        if self.list.len() >= MAX_ENTRIES {
            return Err(BankFileError::TooManyEntries { max: MAX_ENTRIES });
        }
        if !self.keys.insert(outcome.entry_key.clone()) {
            return Err(BankFileError::DuplicateEntry { key: outcome.entry_key });
        }
        self.list.push(outcome);
        Ok(())
    }

    pub(crate) fn finish(self) -> Vec<PayoutOutcome> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zengin_numbers_are_exactly_their_widths() {
        assert_eq!(zengin_numbers("0001-101-1-1234567"), Ok((1, 101, 1, 1_234_567)));
        for bad in ["0001-101-1-123456", "001-101-1-1234567", "0001-101-11-1234567", "0001-101-1", "0001-1O1-1-1234567"]
        {
            assert!(matches!(zengin_numbers(bad), Err(AccountError::ZenginNumbers { .. })), "{bad}");
        }
        assert!(matches!(zengin_numbers("+001-101-1-1234567"), Err(AccountError::ZenginNumbers { .. })));
    }

    #[test]
    fn the_sepa_latin_set_is_what_names_may_hold() {
        assert_eq!(latin_name(" Muster GmbH (Kessai) ", 70).as_deref(), Ok("Muster GmbH (Kessai)"));
        assert_eq!(latin_name("O'Neil + Sons, Ltd.: 1/2-?", 70).as_deref(), Ok("O'Neil + Sons, Ltd.: 1/2-?"));
        assert_eq!(latin_name("Müller", 70), Err(AccountError::NotLatin { character: 'ü' }));
        assert_eq!(latin_name("A & B", 70), Err(AccountError::NotLatin { character: '&' }));
        assert_eq!(latin_name("  ", 70), Err(AccountError::NoName));
        assert_eq!(latin_name("abc", 2), Err(AccountError::NameTooLong { len: 3, max: 2 }));
    }
}
