//! PostgreSQL: settlement steps written in groups, as one writer applying
//! batches (TigerBeetle's way), so that a busy center spends a few
//! statements on many steps instead of about ten on each.
//!
//! A step's write is data ([`Step`]): a new settlement or a settlement's
//! compare-and-set, its books entries, the check that no prepaid payment
//! paid its bill, the card log records it collected and its stored answer.
//! The steps waiting when a group starts (at most [`MAX_GROUP`]) are written
//! in one READ COMMITTED transaction, every kind of row by one statement
//! over arrays, in one lock order for every write of the center: the bills'
//! advisory locks (sorted), the settlements' rows (sorted, `FOR UPDATE`),
//! then the ledger's (pending transfers, then accounts, by id), taken late
//! so that the rows every group meets on (a busy store's payable shards)
//! are held only until the commit; card logs and stored answers follow the
//! books, as in a write of its own. Each step is all or nothing and
//! independent of the others in its group: a step that lost its
//! compare-and-set or whose bill a prepaid payment paid is answered so and
//! writes nothing; a step whose books entries the ledger refused has its
//! rows written already, so the group is rolled back and written again
//! without it (`kessai_ledger::within::apply_each` answers each step's
//! entries alone). Each step is answered only after the group committed.
//!
//! A group that lost a deadlock or a serialization conflict is written
//! again from the start, so neither reaches a client. A group failed by one
//! step's statement (a constraint no check foresaw) is written again step by
//! step, so that step fails alone. An injected fault (a crash point) fails
//! the group as a crash would: nothing of it is written and every step of
//! it is answered `NotCommitted`.
//!
//! An instance writes one group at a time ([`GROUPS_AT_ONCE`]): the steps
//! of a busy store lock the same ledger rows (its payable's shards), so a
//! second group would mostly wait for the first's commit, and groups made
//! smaller by sharing the arrivals cost more statements a step. (Measured
//! with `kessai bench center --database postgres`, 64 wallets: one group at
//! a time 1,452 settlements/s, two 919, four 661.) Instances sharing one
//! database still meet on those rows and queue for them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::prepaid::bill_lock_key;
use super::{BillGuard, DbError, settlement_row};
use crate::books::Entries;
use crate::purchase::Settlement;
use crate::writer::{Bulk, Exec, Faults, Stmt};

/// Most steps one group writes.
const MAX_GROUP: usize = 256;
/// Groups an instance writes at once (each on its own connection).
const GROUPS_AT_ONCE: usize = 1;
/// Steps waiting for a group before callers wait to queue.
const QUEUE: usize = 4_096;
/// Times a group that lost a deadlock or a serialization conflict is written
/// again before its steps are answered that they were not written.
const GROUP_RETRIES: usize = 8;

/// Takes the bills' advisory locks, in the order given (sorted).
const LOCK_BILLS_SQL: &str = "SELECT pg_advisory_xact_lock(k) IS NULL AS locked FROM UNNEST($1::int8[]) AS k";
/// The bills among these that a prepaid payment paid. (Statements joining
/// UNNEST also restrict the table by `= ANY`, so that the planner probes its
/// index rather than hash-joining every row.)
const PAID_BILLS_SQL: &str = "SELECT p.store, p.bill_id FROM center_prepaid_payments p \
     JOIN UNNEST($1::text[], $2::text[]) AS b(store, bill_id) ON p.store = b.store AND p.bill_id = b.bill_id \
     WHERE p.store = ANY($1::text[]) AND p.bill_id = ANY($2::text[])";
/// Locks settlements' rows in id order and reads their versions.
const LOCK_SETTLEMENTS_SQL: &str =
    "SELECT id, version FROM center_settlements WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE";
const INSERT_SETTLEMENTS_SQL: &str = "INSERT INTO center_settlements (id, store, bill_id, card_id, phase, record, \
     version, created_at, updated_at) SELECT i, s, b, c, p, r, 1, t, t \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[]) \
     AS u(i, s, b, c, p, r, t) ON CONFLICT (store, bill_id) DO NOTHING RETURNING id";
const UPDATE_SETTLEMENTS_SQL: &str = "UPDATE center_settlements s SET phase = u.p, record = u.r, \
     version = s.version + 1, updated_at = u.t, delivered = u.d, delivery_due = u.due \
     FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[], $6::int8[], $7::int8[]) \
     AS u(p, r, t, i, v, d, due) WHERE s.id = u.i AND s.version = u.v AND s.id = ANY($4::text[])";

/// A single-row statement a group writes over arrays: its bulk form (the
/// same columns, `$n` the n-th arguments of every row) and the arguments
/// (0-based) that make its unique key, by which the rows are sorted so that
/// two groups writing some of the same keys take them in one order.
struct BulkForm {
    one: &'static str,
    bulk: &'static str,
    key: &'static [usize],
}

const BULK_FORMS: &[BulkForm] = &[
    BulkForm {
        one: super::idempotency::SAVE_SQL,
        bulk: "INSERT INTO center_idempotency (key, request_hash, status, body, created_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[]) \
         ON CONFLICT (key) DO NOTHING",
        key: &[0],
    },
    BulkForm {
        one: super::audit::CARD_LOG_SQL,
        bulk: "INSERT INTO center_card_log (card_id, counter, digest, kind, transaction_id, amount_minor, \
         counterpart, time_unix_s, balance_after_minor, collected_at) \
         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[], \
         $8::int8[], $9::int8[], $10::int8[]) ON CONFLICT (card_id, counter, digest) DO NOTHING",
        key: &[0, 1, 2],
    },
    BulkForm {
        one: crate::writer::PAYABLE_ITEM_SQL,
        bulk: "INSERT INTO center_payable_items (id, store, currency, kind, reference, amount_minor, at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[])",
        key: &[0],
    },
    // Unique by (store, bill_id), and by id.
    BulkForm { one: super::settlements::INSERT_SETTLEMENT_SQL, bulk: INSERT_SETTLEMENTS_SQL, key: &[1, 2, 0] },
    BulkForm { one: super::settlements::UPDATE_SETTLEMENT_SQL, bulk: UPDATE_SETTLEMENTS_SQL, key: &[3] },
];

/// `rows`, all of one single-row statement, as its bulk form.
fn bulk(rows: Vec<Stmt>) -> Result<Bulk, DbError> {
    let sql = rows.first().map(Stmt::sql).unwrap_or_default();
    let form =
        BULK_FORMS.iter().find(|f| f.one == sql).ok_or_else(|| DbError::Corrupt(format!("no bulk form of {sql}")))?;
    Bulk::of(form.bulk, rows, form.key)
}

/// One settlement step's write.
pub(super) struct Step {
    pub kind: StepKind,
    pub entries: Entries,
    /// That no prepaid payment paid the bill (a card's hold).
    pub guard: Option<BillGuard>,
    /// Statements that may change no row: records of the card's log
    /// ([`Grouper::takes`]).
    pub tidy: Vec<Stmt>,
    /// The answer to the step's Idempotency-Key.
    pub save: Option<Stmt>,
    pub now_s: u64,
}

pub(super) enum StepKind {
    /// A new settlement ([`INSERT_SETTLEMENT_SQL`]); `existing` reads the
    /// bill's settlement if it has one.
    ///
    /// [`INSERT_SETTLEMENT_SQL`]: super::settlements::INSERT_SETTLEMENT_SQL
    Insert { id: String, insert: Stmt, existing: Stmt },
    /// A settlement's compare-and-set from `version`
    /// ([`UPDATE_SETTLEMENT_SQL`]).
    ///
    /// [`UPDATE_SETTLEMENT_SQL`]: super::settlements::UPDATE_SETTLEMENT_SQL
    Update { id: String, version: i64, update: Stmt },
}

/// How a step was written.
#[derive(Debug)]
pub(super) enum Written {
    Inserted,
    /// Nothing: the bill has this settlement already.
    Existing(Box<(Settlement, i64)>),
    Updated,
}

type Answer = Result<Written, DbError>;

struct Job {
    step: Step,
    reply: oneshot::Sender<Answer>,
}

/// The queue of the steps waiting for a group.
#[derive(Debug, Clone)]
pub(super) struct Grouper {
    queue: mpsc::Sender<Job>,
}

impl Grouper {
    /// Starts writing groups on `pool`'s connections (on this runtime).
    pub(super) fn start(pool: PgPool, faults: Arc<Faults>) -> Grouper {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(dispatch(pool, faults, jobs));
        Grouper { queue }
    }

    /// Whether a group can write these statements besides a step's own
    /// (records of a card's log).
    pub(super) fn takes(tidy: &[Stmt]) -> bool {
        tidy.iter().all(|s| s.sql() == super::audit::CARD_LOG_SQL)
    }

    /// Writes `step` in the next group; answers once the group committed.
    pub(super) async fn write(&self, step: Step) -> Answer {
        let (reply, answered) = oneshot::channel();
        self.queue
            .send(Job { step, reply })
            .await
            .map_err(|_| DbError::NotCommitted("the group writer has stopped".into()))?;
        answered.await.map_err(|_| {
            DbError::NotCommitted(
                "the group writer stopped before answering; whether the step was written is known only by reading it \
                 again"
                    .into(),
            )
        })?
    }
}

async fn dispatch(pool: PgPool, faults: Arc<Faults>, mut jobs: mpsc::Receiver<Job>) {
    let writing = Arc::new(Semaphore::new(GROUPS_AT_ONCE));
    loop {
        let Ok(permit) = writing.clone().acquire_owned().await else { return };
        let mut group = Vec::with_capacity(MAX_GROUP);
        if jobs.recv_many(&mut group, MAX_GROUP).await == 0 {
            return;
        }
        let (pool, faults) = (pool.clone(), faults.clone());
        tokio::spawn(async move {
            write_group(&pool, &faults, group).await;
            drop(permit);
        });
    }
}

/// Writes a group and answers each of its steps.
async fn write_group(pool: &PgPool, faults: &Arc<Faults>, group: Vec<Job>) {
    let (steps, replies): (Vec<Step>, Vec<_>) = group.into_iter().map(|j| (j.step, j.reply)).unzip();
    let answers = match write_retrying(pool, faults, &steps).await {
        Ok(answers) => answers,
        // One step's statement failed the group (a constraint no check
        // foresaw), or it lost deadlocks again and again: each on its own.
        Err(Failed::Written(e)) if steps.len() > 1 && (fails_one(&e) || e.is_retryable()) => {
            let mut answers = Vec::with_capacity(steps.len());
            for step in &steps {
                answers.push(match write_retrying(pool, faults, std::slice::from_ref(step)).await {
                    Ok(mut one) => one.remove(0),
                    Err(failed) => Err(failed.into_error()),
                });
            }
            answers
        }
        Err(failed) => {
            let e = failed.into_error();
            let why = e.to_string();
            let mut first = Some(e);
            steps.iter().map(|_| Err(first.take().unwrap_or_else(|| DbError::NotCommitted(why.clone())))).collect()
        }
    };
    for (reply, answer) in replies.into_iter().zip(answers) {
        let _ = reply.send(answer);
    }
}

/// How writing a group failed.
enum Failed {
    /// Before its commit: nothing of it was written.
    Written(DbError),
    /// At its commit, which may or may not have been written.
    Commit(DbError),
}

impl Failed {
    /// The error a step is answered with. After a failed commit it may
    /// have been written: not said otherwise.
    fn into_error(self) -> DbError {
        match self {
            Failed::Written(e) => e,
            Failed::Commit(e) => DbError::NotCommitted(format!(
                "the commit of its write failed ({e}); whether it was written is known only by reading it again"
            )),
        }
    }
}

/// Whether `e` is a statement's own failure (a constraint), which one step
/// written alone would meet alone.
fn fails_one(e: &DbError) -> bool {
    matches!(e, DbError::Sqlx(sqlx::Error::Database(_)) | DbError::Inconsistent(_))
}

/// Writes `steps` as one transaction, again while it loses a deadlock or a
/// serialization conflict (at most [`GROUP_RETRIES`] times), and without a
/// new settlement the books refused; one answer per step.
async fn write_retrying(pool: &PgPool, faults: &Arc<Faults>, steps: &[Step]) -> Result<Vec<Answer>, Failed> {
    let mut left_out: Vec<Option<DbError>> = steps.iter().map(|_| None).collect();
    let mut retries = 0;
    loop {
        let mut tx =
            pool.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED").await.map_err(|e| Failed::Written(e.into()))?;
        let written = write_once(Exec::pg(&mut tx).with_faults(faults.clone()), steps, &mut left_out).await;
        let written = match written {
            Ok(Some(answers)) => match tx.commit().await {
                Ok(()) => Ok(answers),
                Err(e) => return Err(Failed::Commit(e.into())),
            },
            // Rolled back (on drop) and written again without it.
            Ok(None) => continue,
            Err(e) => Err(e),
        };
        match written {
            Err(e) if e.is_retryable() && retries < GROUP_RETRIES => retries += 1,
            Err(e) => return Err(Failed::Written(e)),
            Ok(answers) => {
                return Ok(answers
                    .into_iter()
                    .zip(left_out)
                    .map(|(answer, out)| match out {
                        Some(refused) => Err(refused),
                        None => answer,
                    })
                    .collect());
            }
        }
    }
}

/// The group's statements in one transaction. Steps with a reason in
/// `left_out` are not written. Returns each step's answer, or `None` when
/// the books refused a step's entries after its rows were written: it is
/// then in `left_out`, and the transaction must be rolled back.
async fn write_once(
    mut conn: Exec<'_>,
    steps: &[Step],
    left_out: &mut [Option<DbError>],
) -> Result<Option<Vec<Answer>>, DbError> {
    let mut answers: Vec<Option<Answer>> = left_out.iter().map(|_| None).collect();
    let skip: Vec<bool> = left_out.iter().map(Option::is_some).collect();
    let live = |answers: &[Option<Answer>], i: usize| answers[i].is_none() && !skip[i];

    // 1. The bills a hold or a new settlement's hold pays: locked, then
    //    checked against prepaid payments (which take the same locks).
    let guarded: Vec<(usize, &BillGuard)> = steps
        .iter()
        .enumerate()
        .filter(|(i, _)| live(&answers, *i))
        .filter_map(|(i, s)| Some((i, s.guard.as_ref()?)))
        .collect();
    if !guarded.is_empty() {
        let mut keys: Vec<i64> = guarded.iter().map(|(_, g)| bill_lock_key(&g.store, &g.bill_id)).collect();
        keys.sort_unstable();
        keys.dedup();
        conn.fetch_all_bulk(Bulk::new(LOCK_BILLS_SQL).ints(keys.into_iter().map(Some).collect()), |_| Ok(())).await?;
        let paid = Bulk::new(PAID_BILLS_SQL)
            .texts(guarded.iter().map(|(_, g)| Some(g.store.as_str().to_owned())).collect())
            .texts(guarded.iter().map(|(_, g)| Some(g.bill_id.clone())).collect());
        let paid: HashSet<(String, String)> = conn
            .fetch_all_bulk(paid, |r| Ok((r.required_text("store")?, r.required_text("bill_id")?)))
            .await?
            .into_iter()
            .collect();
        for (i, g) in &guarded {
            if paid.contains(&(g.store.as_str().to_owned(), g.bill_id.clone())) {
                answers[*i] = Some(Err(DbError::BillPaid));
            }
        }
    }

    // 2. The settlements stepped: their rows locked; a step whose version
    //    is not the row's lost (a second step of one settlement in the same
    //    group loses to the first).
    let mut ids: Vec<String> = steps
        .iter()
        .enumerate()
        .filter(|(i, _)| live(&answers, *i))
        .filter_map(|(_, s)| match &s.kind {
            StepKind::Update { id, .. } => Some(id.clone()),
            StepKind::Insert { .. } => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if !ids.is_empty() {
        let lock = Bulk::new(LOCK_SETTLEMENTS_SQL).texts(ids.into_iter().map(Some).collect());
        let mut versions: HashMap<String, i64> = conn
            .fetch_all_bulk(lock, |r| Ok((r.required_text("id")?, r.required_int("version")?)))
            .await?
            .into_iter()
            .collect();
        for (i, step) in steps.iter().enumerate() {
            if let (true, StepKind::Update { id, version, .. }) = (live(&answers, i), &step.kind) {
                match versions.get_mut(id) {
                    Some(v) if v == version => *v += 1,
                    _ => answers[i] = Some(Err(DbError::Conflict)),
                }
            }
        }
    }

    // 3. New settlements: inserted unless their bill has one, which is then
    //    their answer (and their entries are not applied).
    let inserting: Vec<usize> =
        (0..steps.len()).filter(|i| live(&answers, *i) && matches!(steps[*i].kind, StepKind::Insert { .. })).collect();
    if !inserting.is_empty() {
        let rows = inserting
            .iter()
            .filter_map(|i| match &steps[*i].kind {
                StepKind::Insert { insert, .. } => Some(insert.clone()),
                StepKind::Update { .. } => None,
            })
            .collect();
        let made: HashSet<String> =
            conn.fetch_all_bulk(bulk(rows)?, |r| r.required_text("id")).await?.into_iter().collect();
        for i in inserting {
            let StepKind::Insert { id, existing, .. } = &steps[i].kind else { continue };
            if !made.contains(id) {
                let found = conn.fetch_one(existing.clone(), settlement_row).await?;
                answers[i] = Some(Ok(Written::Existing(Box::new(found))));
            }
        }
    }

    // 4. The compare-and-sets of the steps still standing.
    let updates: Vec<Stmt> = (0..steps.len())
        .filter(|i| live(&answers, *i))
        .filter_map(|i| match &steps[i].kind {
            StepKind::Update { update, .. } => Some(update.clone()),
            StepKind::Insert { .. } => None,
        })
        .collect();
    if !updates.is_empty() {
        let count = updates.len() as u64;
        if conn.execute_bulk(bulk(updates)?).await? != count {
            return Err(DbError::Inconsistent("a locked settlement changed under its step".into()));
        }
    }

    // 5. The books late, so that the ledger's rows (a busy store's payable
    //    shards, which every instance's groups lock) are held only from here
    //    to the commit: every step's entries at once, each all or nothing.
    //    A step they refuse has its rows written already: the group is
    //    written again without it (a step of its settlement that lost to it
    //    then goes through).
    let booked: Vec<usize> = (0..steps.len()).filter(|i| live(&answers, *i) && !steps[*i].entries.is_empty()).collect();
    let mut items = Vec::new();
    if !booked.is_empty() {
        let entries: Vec<(&Entries, u64)> = booked.iter().map(|i| (&steps[*i].entries, steps[*i].now_s)).collect();
        let mut again = false;
        for (i, applied) in booked.iter().zip(conn.books_each(&entries).await?) {
            match applied {
                Ok(new_items) => items.extend(new_items),
                Err(refused) => {
                    left_out[*i] = Some(refused);
                    again = true;
                }
            }
        }
        if again {
            return Ok(None);
        }
    }
    if !items.is_empty() {
        let count = items.len() as u64;
        if conn.execute_bulk(bulk(items)?).await? != count {
            return Err(DbError::Inconsistent("payable items not all recorded".into()));
        }
    }

    // 6. What the standing steps keep besides, after the books as a write
    //    of its own keeps them (a card's log may be collected by a value
    //    update too): card logs, then stored answers.
    let live_steps: Vec<&Step> = (0..steps.len()).filter(|i| live(&answers, *i)).map(|i| &steps[i]).collect();
    for shape in [super::audit::CARD_LOG_SQL, super::idempotency::SAVE_SQL] {
        let rows: Vec<Stmt> = live_steps
            .iter()
            .flat_map(|step| step.tidy.iter().chain(&step.save))
            .filter(|s| s.sql() == shape)
            .cloned()
            .collect();
        if !rows.is_empty() {
            conn.execute_bulk(bulk(rows)?).await?;
        }
    }
    Ok(Some(
        answers
            .into_iter()
            .enumerate()
            .map(|(i, answer)| {
                answer.unwrap_or(Ok(match steps[i].kind {
                    StepKind::Insert { .. } => Written::Inserted,
                    StepKind::Update { .. } => Written::Updated,
                }))
            })
            .collect(),
    ))
}
