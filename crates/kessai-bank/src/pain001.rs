//! Writing ISO 20022 pain.001.001.09 (CustomerCreditTransferInitiation):
//! a [`PayoutBatch`] as the file a center hands its bank to pay stores.
//!
//! The output is valid against the official ISO 20022 schema
//! (`tests/vectors/pain.001.001.09.xsd`, checked by the tests with
//! xmllint). One message holds one payment information block (`PmtInf`)
//! with the batch's id as both `MsgId` and `PmtInfId`, so a status report
//! on either is a report on the batch; batch booking is requested
//! (`BtchBookg` true: one debit on the center's account for the whole
//! batch). `NbOfTxs` and `CtrlSum` are stated at both levels; amounts are
//! decimals with the currency's minor-unit digits (none for yen).
//!
//! Accounts are named the way each kind of account is known:
//!
//! - an IBAN payee: `CdtrAcct/Id/IBAN`, with `CdtrAgt/FinInstnId/BICFI`
//!   when its BIC is known (SEPA needs none);
//! - a Zengin payee: the bank and branch as a clearing system member,
//!   `CdtrAgt/FinInstnId/ClrSysMmbId` with `ClrSysId/Cd` `JPZGN` (ISO's
//!   external code for the Zengin clearing system) and `MmbId` the bank
//!   code's 4 digits then the branch code's 3; the account as
//!   `CdtrAcct/Id/Othr/Id`, its 7-digit number. The deposit type goes in
//!   `CdtrAcct/Tp/Prtry` as Zengin's own one-digit 預金種目 (`1` 普通,
//!   `2` 当座, `4` 貯蓄, `9` その他): ISO's cash account type codes have
//!   `CACC` and `SVGS` but nothing that tells 普通 from 貯蓄, and a bank
//!   turning the file into Zengin transfers needs the digit.
//!
//! The debtor likewise: `DbtrAcct` by IBAN when it has one, else by its
//! Zengin account; `DbtrAgt` by BIC, by Zengin bank and branch, or both,
//! and `Othr/Id` `NOTPROVIDED` (the SEPA convention) when neither is
//! known. Every text is XML-escaped.

use crate::BankFileError;
use crate::camt::{date_time, decimal};
use crate::payout::{PayeeAccount, PayoutBatch, PayoutLine};
use crate::xml_out::XmlOut;

/// The namespace written.
pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09";

/// The message name a pain.002 quotes as `OrgnlMsgNmId`.
pub const MESSAGE_NAME: &str = "pain.001.001.09";

/// ISO 20022 ExternalClearingSystemIdentification1Code of Zengin.
pub(crate) const ZENGIN_CLEARING: &str = "JPZGN";

/// The batch as pain.001.001.09 XML. Refuses a batch
/// [`PayoutBatch::check`] refuses.
pub fn write(batch: &PayoutBatch) -> Result<String, BankFileError> {
    batch.check()?;
    let currency = batch.currency();
    let count = batch.lines.len().to_string();
    let total = decimal(batch.total_minor(), currency.exponent());
    let mut x = XmlOut::document(NAMESPACE);
    x.open("CstmrCdtTrfInitn");
    x.open("GrpHdr");
    x.leaf("MsgId", &batch.id);
    x.leaf("CreDtTm", &date_time(batch.created_at));
    x.leaf("NbOfTxs", &count);
    x.leaf("CtrlSum", &total);
    x.open("InitgPty");
    x.leaf("Nm", &batch.debtor.name);
    x.close();
    x.close();
    x.open("PmtInf");
    x.leaf("PmtInfId", &batch.id);
    x.leaf("PmtMtd", "TRF");
    x.leaf("BtchBookg", "true");
    x.leaf("NbOfTxs", &count);
    x.leaf("CtrlSum", &total);
    x.open("ReqdExctnDt");
    x.leaf("Dt", &batch.execution_date.to_string());
    x.close();
    x.open("Dbtr");
    x.leaf("Nm", &batch.debtor.name);
    x.close();
    write_debtor_account(&mut x, batch);
    for line in &batch.lines {
        write_transaction(&mut x, line);
    }
    Ok(x.finish())
}

fn write_debtor_account(x: &mut XmlOut, batch: &PayoutBatch) {
    let debtor = &batch.debtor;
    x.open("DbtrAcct");
    x.open("Id");
    match (&debtor.iban, &debtor.zengin) {
        (Some(iban), _) => {
            x.leaf("IBAN", iban);
            x.close();
        }
        (None, Some(z)) => {
            x.open("Othr");
            x.leaf("Id", &format!("{:07}", z.number));
            x.close();
            x.close();
            deposit_type(x, z.deposit_type);
        }
        // PayoutBatch::check refuses a debtor without an account.
        (None, None) => x.close(),
    }
    x.close();
    x.open("DbtrAgt");
    x.open("FinInstnId");
    if let Some(bic) = &debtor.bic {
        x.leaf("BICFI", bic);
    }
    if let Some(z) = &debtor.zengin {
        zengin_member(x, z.bank_code, z.branch_code);
    }
    if debtor.bic.is_none() && debtor.zengin.is_none() {
        x.open("Othr");
        x.leaf("Id", "NOTPROVIDED");
        x.close();
    }
    x.close();
    x.close();
}

fn write_transaction(x: &mut XmlOut, line: &PayoutLine) {
    let currency = line.amount.currency();
    x.open("CdtTrfTxInf");
    x.open("PmtId");
    x.leaf("EndToEndId", &line.end_to_end_id);
    x.close();
    x.open("Amt");
    x.leaf_with(
        "InstdAmt",
        "Ccy",
        currency.code(),
        &decimal(u128::from(line.amount.amount_minor()), currency.exponent()),
    );
    x.close();
    match &line.payee {
        PayeeAccount::Iban(payee) => {
            if let Some(bic) = &payee.bic {
                x.open("CdtrAgt");
                x.open("FinInstnId");
                x.leaf("BICFI", bic);
                x.close();
                x.close();
            }
            creditor(x, &payee.holder);
            x.open("CdtrAcct");
            x.open("Id");
            x.leaf("IBAN", &payee.iban);
            x.close();
            x.close();
        }
        PayeeAccount::Zengin(payee) => {
            x.open("CdtrAgt");
            x.open("FinInstnId");
            zengin_member(x, payee.bank_code, payee.branch_code);
            x.close();
            x.close();
            creditor(x, &payee.holder);
            x.open("CdtrAcct");
            x.open("Id");
            x.open("Othr");
            x.leaf("Id", &format!("{:07}", payee.number));
            x.close();
            x.close();
            deposit_type(x, payee.deposit_type);
            x.close();
        }
    }
    if !line.remittance.is_empty() {
        x.open("RmtInf");
        x.leaf("Ustrd", &line.remittance);
        x.close();
    }
    x.close();
}

fn creditor(x: &mut XmlOut, name: &str) {
    x.open("Cdtr");
    x.leaf("Nm", name);
    x.close();
}

/// A Japanese bank branch as a member of the Zengin clearing system.
fn zengin_member(x: &mut XmlOut, bank_code: u16, branch_code: u16) {
    x.open("ClrSysMmbId");
    x.open("ClrSysId");
    x.leaf("Cd", ZENGIN_CLEARING);
    x.close();
    x.leaf("MmbId", &format!("{bank_code:04}{branch_code:03}"));
    x.close();
}

/// The Zengin 預金種目 as the account's proprietary type.
fn deposit_type(x: &mut XmlOut, deposit_type: u8) {
    x.open("Tp");
    x.leaf("Prtry", &deposit_type.to_string());
    x.close();
}
