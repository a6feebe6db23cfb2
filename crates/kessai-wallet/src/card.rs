//! The card in the reader: opened by configuration, kept open between
//! steps (the card's secure session lives in it), used from async code
//! through blocking tasks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kessai_card::protocol::{CardStatus, PublicInfo, get_data_command, select_command, tag};
use kessai_card::transport::vpcd::VpcdListener;
use kessai_card::transport::{InProcessReader, Reader, TransportError};
use kessai_card::{Card, Durability, FileStorage};
use kessai_core::ids::CardId;
use kessai_core::{Currency, Money};
use kessai_scp03::ResponseApdu;

use crate::config::ReaderConfig;
use crate::limits::{CARD_WAIT_MS, MAX_APDU_BYTES, MAX_APDUS_PER_STEP};

/// Why the card could not be reached or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    #[error("the card image could not be opened: {0}")]
    Image(String),
    #[error("the reader failed: {0}")]
    Transport(#[from] TransportError),
    #[error("this wallet was built without PC/SC support (feature `pcsc`)")]
    PcscUnavailable,
    #[error("the card answered {0:04X} to {1}")]
    Status(u16, &'static str),
    #[error("the card's answer is malformed: {0}")]
    Malformed(String),
    #[error("the center sent {0} commands in one step (at most {MAX_APDUS_PER_STEP})")]
    TooManyCommands(usize),
    #[error("a command from the center is not hex or longer than {MAX_APDU_BYTES} bytes")]
    BadCommand,
    #[error("no card answered within {CARD_WAIT_MS} ms")]
    NoAnswer,
    #[error("the card task stopped unexpectedly")]
    TaskFailed,
}

/// What GET DATA `DF10` says: not authenticated, for display only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardSummary {
    pub card_id: CardId,
    pub key_version: u8,
    /// The display balance (the center reads the authenticated one).
    pub balance: Money,
    pub max_balance: Money,
    pub blocked: bool,
    pub counter: u32,
}

type BoxedReader = Box<dyn Reader + Send>;

/// Sees each command the wallet sends to the card and the card's answer
/// (data ‖ SW), in order, after the exchange. For transcripts (`kessai
/// demo`): it only watches, and sees nothing the wallet could not read.
pub type ApduObserver = Arc<dyn Fn(&[u8], &[u8]) + Send + Sync>;

enum Source {
    Image(std::path::PathBuf),
    Vpcd(Arc<VpcdListener>),
    #[cfg_attr(not(feature = "pcsc"), allow(dead_code))]
    Pcsc(String),
}

/// The reader slot: opened on first use, dropped (and reopened next time)
/// when the reader fails. Cheap to clone.
#[derive(Clone)]
pub struct CardSlot {
    source: Arc<Source>,
    reader: Arc<Mutex<Option<BoxedReader>>>,
    observer: Option<ApduObserver>,
}

impl std::fmt::Debug for CardSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardSlot").finish_non_exhaustive()
    }
}

impl CardSlot {
    /// Prepares the reader of `config`; a vpcd listener binds now.
    pub fn new(
        config: &ReaderConfig,
        resolve: impl Fn(&std::path::Path) -> std::path::PathBuf,
    ) -> Result<Self, CardError> {
        let source = match config {
            ReaderConfig::InProcess { image } => Source::Image(resolve(image)),
            ReaderConfig::Vpcd { listen } => Source::Vpcd(Arc::new(VpcdListener::bind(*listen)?)),
            ReaderConfig::Pcsc { name } => Source::Pcsc(name.clone()),
        };
        Ok(CardSlot { source: Arc::new(source), reader: Arc::new(Mutex::new(None)), observer: None })
    }

    /// Reports every exchange with the card to `observer` from now on.
    pub fn observe(&mut self, observer: ApduObserver) {
        self.observer = Some(observer);
    }

    /// Transmits each command in order, returning the card's answers;
    /// stops at the first transport failure.
    pub async fn transmit_all(&self, commands: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, CardError> {
        let slot = self.clone();
        let task = tokio::task::spawn_blocking(move || slot.transmit_blocking(&commands));
        // On a timeout the blocking exchange may still finish later; a DEBIT
        // that lands then is found by recovery (the phase stays `offered`).
        match tokio::time::timeout(Duration::from_millis(CARD_WAIT_MS), task).await {
            Err(_) => Err(CardError::NoAnswer),
            Ok(joined) => joined.map_err(|_| CardError::TaskFailed)?,
        }
    }

    fn transmit_blocking(&self, commands: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, CardError> {
        // A poisoned lock means a card task panicked mid-exchange; the
        // reader is dropped below on any failure, so reuse is safe.
        let mut guard = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        let mut answers = Vec::with_capacity(commands.len());
        for command in commands {
            let Some(reader) = guard.as_mut() else { return Err(CardError::TaskFailed) };
            match reader.transmit(command) {
                Ok(answer) => {
                    if let Some(observe) = &self.observer {
                        observe(command, &answer);
                    }
                    answers.push(answer);
                }
                Err(e) => {
                    *guard = None;
                    return Err(e.into());
                }
            }
        }
        Ok(answers)
    }

    fn open(&self) -> Result<BoxedReader, CardError> {
        match self.source.as_ref() {
            Source::Image(path) => {
                let storage = FileStorage::open(path, Durability::Fsync)
                    .map_err(|e| CardError::Image(format!("{}: {e}", path.display())))?;
                let card = Card::open(storage).map_err(|e| CardError::Image(format!("{}: {e}", path.display())))?;
                Ok(Box::new(InProcessReader::new(card)))
            }
            Source::Vpcd(listener) => Ok(Box::new(listener.accept()?)),
            Source::Pcsc(name) => open_pcsc(name),
        }
    }

    /// Relays hex commands from the center; answers as hex (data ‖ SW).
    pub async fn relay_hex(&self, commands: &[String]) -> Result<Vec<String>, CardError> {
        if commands.len() > MAX_APDUS_PER_STEP {
            return Err(CardError::TooManyCommands(commands.len()));
        }
        let bytes = commands
            .iter()
            .map(|h| hex::decode(h).ok().filter(|b| b.len() >= 4 && b.len() <= MAX_APDU_BYTES))
            .collect::<Option<Vec<_>>>()
            .ok_or(CardError::BadCommand)?;
        Ok(self.transmit_all(bytes).await?.iter().map(hex::encode).collect())
    }

    /// SELECT and GET DATA `DF10`: the card id and display balance. Ends
    /// any secure session on the card.
    pub async fn summary(&self) -> Result<CardSummary, CardError> {
        let answers =
            self.transmit_all(vec![select_command().to_bytes(), get_data_command(tag::ALL).to_bytes()]).await?;
        let [select, data] = answers.as_slice() else {
            return Err(CardError::Malformed("two answers expected".into()));
        };
        let select = ResponseApdu::parse(select).map_err(|e| CardError::Malformed(e.to_string()))?;
        if select.sw().raw() != 0x9000 && select.sw().raw() != 0x6283 {
            return Err(CardError::Status(select.sw().raw(), "SELECT"));
        }
        let data = ResponseApdu::parse(data).map_err(|e| CardError::Malformed(e.to_string()))?;
        if data.sw().raw() != 0x9000 {
            return Err(CardError::Status(data.sw().raw(), "GET DATA"));
        }
        summary_of(&PublicInfo::parse(data.data()).map_err(|e| CardError::Malformed(e.to_string()))?)
    }
}

fn summary_of(info: &PublicInfo) -> Result<CardSummary, CardError> {
    let bad = |e: kessai_core::money::MoneyError| CardError::Malformed(e.to_string());
    let currency = Currency::parse(info.currency.as_str()).map_err(bad)?;
    Ok(CardSummary {
        card_id: CardId::from_bytes(info.card_id.0),
        key_version: info.key_version,
        balance: Money::new(info.balance_minor, currency).map_err(bad)?,
        max_balance: Money::new(info.max_balance_minor, currency).map_err(bad)?,
        blocked: info.status == CardStatus::Blocked,
        counter: info.counter,
    })
}

#[cfg(feature = "pcsc")]
fn open_pcsc(name: &str) -> Result<BoxedReader, CardError> {
    Ok(Box::new(kessai_card::transport::pcsc::PcscReader::connect(name)?))
}

#[cfg(not(feature = "pcsc"))]
fn open_pcsc(_name: &str) -> Result<BoxedReader, CardError> {
    Err(CardError::PcscUnavailable)
}
