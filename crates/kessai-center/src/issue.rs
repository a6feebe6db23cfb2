//! Card issuance, run by the issuer on the center's host: personalize a
//! card image with keys diversified from the issuer master keys, put its
//! initial value on it through a real secure CREDIT, and record the card
//! and the same value in the registry and the books.

use std::path::Path;

use anyhow::{Context, bail};
use kessai_card::Card;
use kessai_card::image::{KeySource, Personalization, create_image_file};
use kessai_card::protocol::{
    CardId as ChipCardId, Currency as ChipCurrency, PublicInfo, TransferRequest, TxId, credit_command,
};
use kessai_card::storage::{Durability, FileStorage};
use kessai_card::terminal::Terminal;
use kessai_card::transport::InProcessReader;
use kessai_core::ids::CardId;
use kessai_core::{Currency, Money};

use crate::books::initial_value_id;
use crate::config::CenterConfig;
use crate::purchase::{CardRecord, CardRegistryStatus};
use crate::service::Center;

/// What to issue.
#[derive(Debug, Clone)]
pub struct IssueCard<'a> {
    pub image: &'a Path,
    pub card_id: CardId,
    /// `None`: the newest key version the center holds (after a master
    /// key rotation, new cards get the new version).
    pub key_version: Option<u8>,
    pub currency: Currency,
    pub max_balance_minor: u64,
    pub initial_value_minor: u64,
}

/// Issues one card. Refuses an existing image or an already registered id.
pub async fn issue_card(config: &CenterConfig, req: &IssueCard<'_>) -> anyhow::Result<PublicInfo> {
    if req.initial_value_minor > req.max_balance_minor || req.max_balance_minor == 0 {
        bail!("need 0 < max balance and initial value ≤ max balance");
    }
    let center = crate::app::open(config).await?;
    let key_version = match req.key_version {
        Some(v) => v,
        None => center.security.newest_key_version().context("the center holds no issuer master keys")?,
    };
    // Only the security server opens the issuer master keys.
    let keys = center
        .security
        .personalization_keys(&req.card_id, key_version)
        .with_context(|| format!("no master keys for key version {key_version}"))?;
    if center.db.card(&req.card_id).await?.is_some() {
        bail!("card {} is already registered", req.card_id);
    }
    let chip_currency = ChipCurrency::new(req.currency.code()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let p = Personalization {
        card_id: ChipCardId(*req.card_id.as_bytes()),
        keys: KeySource::Explicit(keys.clone()),
        currency: chip_currency,
        max_balance_minor: req.max_balance_minor,
    };
    create_image_file(req.image, &p).with_context(|| format!("writing {}", req.image.display()))?;
    if req.initial_value_minor > 0 {
        credit_image(req, &keys, &center)?;
    }
    let record = CardRecord {
        id: req.card_id,
        key_version,
        status: CardRegistryStatus::Active,
        currency: req.currency,
        max_balance_minor: req.max_balance_minor,
    };
    let initial = Money::new(req.initial_value_minor, req.currency)?;
    center.register_card(&record, Some(initial), &crate::console::Actor::host()).await?;
    let bytes = std::fs::read(req.image)?;
    Ok(kessai_card::public_info(&bytes)?)
}

/// The card image at hand, selected, in a level-33 session under `keys`.
fn card_session(
    image: &Path,
    keys: &kessai_scp03::StaticKeys,
    center: &Center,
) -> anyhow::Result<(Terminal<InProcessReader<FileStorage>>, kessai_scp03::HostSession)> {
    let card = Card::open(FileStorage::open(image, Durability::Fsync)?)?;
    let mut t = Terminal::new(InProcessReader::new(card));
    t.select().map_err(|e| anyhow::anyhow!("select: {e}"))?;
    let mut challenge = [0u8; 8];
    center.random.generator().fill_bytes(&mut challenge);
    let session = t.open_session(keys.clone(), challenge).map_err(|e| anyhow::anyhow!("secure session: {e}"))?;
    Ok((t, session))
}

/// The initial value goes onto the card the way all value does: a CREDIT
/// inside a level-33 secure session.
fn credit_image(req: &IssueCard<'_>, keys: &kessai_scp03::StaticKeys, center: &Center) -> anyhow::Result<()> {
    let (mut t, session) = card_session(req.image, keys, center)?;
    let mut tx = [0u8; 16];
    tx.copy_from_slice(&initial_value_id(&req.card_id).to_be_bytes());
    let request = TransferRequest {
        tx_id: TxId(tx),
        amount_minor: req.initial_value_minor,
        counterpart: *b"ISSUANCE",
        order_ref: [0; 16],
        time_unix_s: center.clock.now().unix_s(),
    };
    let (_, answer) = t.secure(session, &credit_command(&request)).map_err(|e| anyhow::anyhow!("credit: {e}"))?;
    if answer.sw().raw() != 0x9000 {
        bail!("the card refused the initial credit: {:04X}", answer.sw().raw());
    }
    Ok(())
}

/// What a re-key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rekeyed {
    pub from: u8,
    pub to: u8,
    /// The card had the new keys already (a re-key interrupted after the
    /// card's write): only the registry was brought up to date.
    pub card_had_them: bool,
}

/// Re-keys a card to master key version `to` (default the newest), run by
/// the issuer with the card at hand, as issuance is: a level-33 session
/// under the card's current keys, PUT KEY of the keys diversified for it
/// from version `to` (PROTOCOL §4.4), then the registry. Run again after an
/// interruption it finds the card re-keyed and records it.
pub async fn rekey_card(config: &CenterConfig, image: &Path, to: Option<u8>) -> anyhow::Result<Rekeyed> {
    let center = crate::app::open(config).await?;
    let done = rekey_with(&center, image, to).await;
    center.db.close().await;
    done
}

async fn rekey_with(center: &Center, image: &Path, to: Option<u8>) -> anyhow::Result<Rekeyed> {
    let to = match to {
        Some(v) => v,
        None => center.security.newest_key_version().context("the center holds no issuer master keys")?,
    };
    anyhow::ensure!(center.security.knows(to), "the center holds no master keys of key version {to}");
    let info =
        kessai_card::public_info(&std::fs::read(image).with_context(|| format!("reading {}", image.display()))?)?;
    let card_id = CardId::from_bytes(info.card_id.0);
    let record = center.db.card(&card_id).await?.with_context(|| format!("card {card_id} is not registered"))?;
    if info.key_version == to {
        center.db.set_card_key_version(&card_id, record.key_version, to).await?;
        return Ok(Rekeyed { from: record.key_version, to, card_had_them: true });
    }
    if info.key_version != record.key_version {
        bail!(
            "card {card_id} holds key version {} and the registry says {}: neither is {to}; see the audit",
            info.key_version,
            record.key_version
        );
    }
    let old = center.security.personalization_keys(&card_id, info.key_version)?;
    let new = center.security.personalization_keys(&card_id, to)?;
    let (mut t, session) = card_session(image, &old, center)?;
    let command = kessai_card::protocol::put_key_command(old.version, &new, &old.dek);
    let (_, answer) = t.secure(session, &command).map_err(|e| anyhow::anyhow!("PUT KEY: {e}"))?;
    if answer.sw().raw() != 0x9000 {
        bail!("the card refused PUT KEY: {:04X}", answer.sw().raw());
    }
    if answer.data() != kessai_card::protocol::put_key_response(&new) {
        bail!("the card's answer to PUT KEY does not name the new keys' check values");
    }
    center.db.set_card_key_version(&card_id, record.key_version, to).await?;
    Ok(Rekeyed { from: record.key_version, to, card_had_them: false })
}
