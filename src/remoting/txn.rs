//! Transactions on the wire (docs/REMOTING.md): END_TRANSACTION (37) from producers, and
//! CHECK_TRANSACTION_STATE (39) pushed to a producer of the half message's group when
//! the leader checks a half left open. A send with SYSFLAG TRANSACTION_PREPARED is an
//! ordinary SEND_MESSAGE(_V2) that the broker stores as a half message.

use super::codec::RemotingCommand;
use super::codes::response as rs;
use super::server::{error_response, ConnectionId, Pusher, Request, Responder, Router};
use crate::broker::{Broker, CheckListener, TxnCheck, TxnEnd};
use crate::error::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// RequestCode.END_TRANSACTION.
pub const END_TRANSACTION: i32 = 37;
/// RequestCode.CHECK_TRANSACTION_STATE.
pub const CHECK_TRANSACTION_STATE: i32 = 39;
/// MessageSysFlag.TRANSACTION_NOT_TYPE: the producer does not know yet.
pub const TRANSACTION_NOT_TYPE: i32 = 0;
/// MessageSysFlag.TRANSACTION_COMMIT_TYPE.
pub const TRANSACTION_COMMIT_TYPE: i32 = 8;
/// MessageSysFlag.TRANSACTION_ROLLBACK_TYPE.
pub const TRANSACTION_ROLLBACK_TYPE: i32 = 12;
/// ResponseCode.SLAVE_NOT_AVAILABLE: RocketMQ's answer to END_TRANSACTION on a slave.
const SLAVE_NOT_AVAILABLE: i32 = 11;
/// How long an END_TRANSACTION waits for its entry.
const END_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an END_TRANSACTION retries while the leader's check handles the same half.
const BUSY_RETRY: Duration = Duration::from_secs(3);

/// The codes this module serves.
pub const CODES: [i32; 1] = [END_TRANSACTION];

/// Routes END_TRANSACTION to `broker`.
pub(super) fn route(router: &mut Router, broker: Arc<Broker>) {
    router.route(
        END_TRANSACTION,
        Arc::new(move |req: Request, resp: Responder| end_transaction(&broker, req, resp)),
    );
}

fn respond(resp: Responder, code: i32, remark: String) {
    if code != rs::SUCCESS {
        log::warn!("END_TRANSACTION: {remark}");
    }
    let mut r = error_response(code, remark);
    if code == rs::SUCCESS {
        r.remark = None;
    }
    resp.respond(r);
}

/// EndTransactionProcessor: commit (8) or rollback (12) an open half; 0 (unknown) is
/// logged and left for the check. Producers send it oneway; a two-way request gets
/// SUCCESS, or SYSTEM_ERROR naming why.
fn end_transaction(broker: &Broker, req: Request, resp: Responder) {
    let cmd = &req.command;
    let group = cmd.field("producerGroup").unwrap_or("").to_string();
    let offset = match cmd.required_i64("commitLogOffset") {
        Ok(o) if o >= 0 => o as u64,
        Ok(o) => {
            return respond(
                resp,
                rs::INVALID_PARAMETER,
                format!("commitLogOffset {o} is negative"),
            )
        }
        Err(e) => return respond(resp, rs::INVALID_PARAMETER, e),
    };
    let state = match cmd.required_i64("commitOrRollback") {
        Ok(s) => s as i32,
        Err(e) => return respond(resp, rs::INVALID_PARAMETER, e),
    };
    let from_check = cmd.optional_bool("fromTransactionCheck").unwrap_or(false);
    let msg_id = cmd.field("msgId").unwrap_or("").to_string();
    let end = match state {
        TRANSACTION_COMMIT_TYPE => TxnEnd::Commit,
        TRANSACTION_ROLLBACK_TYPE => TxnEnd::Rollback,
        TRANSACTION_NOT_TYPE => {
            log::debug!(
                "END_TRANSACTION from {}: producer group {group} does not know the state of \
                 {msg_id} yet (fromTransactionCheck={from_check}); left for the check",
                req.peer
            );
            return respond(resp, rs::SUCCESS, String::new());
        }
        other => {
            return respond(
                resp,
                rs::INVALID_PARAMETER,
                format!("commitOrRollback {other} is not 0, 8 or 12"),
            )
        }
    };
    let deadline = Instant::now() + BUSY_RETRY;
    let mut pause = Duration::from_millis(5);
    loop {
        match broker.end_transaction(&group, offset, &msg_id, end, END_TIMEOUT) {
            Ok(_) => return respond(resp, rs::SUCCESS, String::new()),
            Err(e) if e.kind() == ErrorKind::Busy && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) if e.kind() == ErrorKind::NotLeader => {
                return respond(resp, SLAVE_NOT_AVAILABLE, e.message().to_string())
            }
            Err(e) => {
                return respond(
                    resp,
                    rs::SYSTEM_ERROR,
                    format!(
                        "end transaction of {msg_id} at commit log offset {offset} \
                         (producer group {group}): {}",
                        e.message()
                    ),
                )
            }
        }
    }
}

/// CHECK_TRANSACTION_STATE for one checked half: CheckTransactionStateRequestHeader's
/// fields and the half in the wire message encoding, under its real topic and queue.
pub fn check_request(check: &TxnCheck) -> crate::Result<RemotingCommand> {
    let body = check.wire_body()?;
    let mut cmd = RemotingCommand::request(CHECK_TRANSACTION_STATE, 0)
        .with_field(
            "tranStateTableOffset",
            check.tran_state_table_offset.to_string(),
        )
        .with_field("commitLogOffset", check.commit_log_offset.to_string())
        .with_field("msgId", check.msg_id.clone())
        .with_field("transactionId", check.transaction_id.clone())
        .with_field("offsetMsgId", check.offset_msg_id.clone())
        .with_body(body.to_vec());
    // Oneway, as RocketMQ's Broker2Client.checkProducerTransactionState sends it.
    cmd.flag |= super::codec::FLAG_ONEWAY;
    Ok(cmd)
}

/// A check listener that pushes CHECK_TRANSACTION_STATE to one live connection of the
/// half's producer group (`connection_of`), as RocketMQ's ProducerManager picks one.
pub(super) fn check_listener(
    pusher: Pusher,
    connection_of: impl Fn(&str) -> Option<ConnectionId> + Send + Sync + 'static,
) -> CheckListener {
    Arc::new(move |check: TxnCheck| {
        let Some(conn) = connection_of(&check.producer_group) else {
            log::warn!(
                "transaction check of {}: no producer of group {} is connected",
                check.msg_id,
                check.producer_group
            );
            return;
        };
        match check_request(&check) {
            Ok(cmd) => {
                if !pusher.push(conn, &cmd) {
                    log::warn!(
                        "transaction check of {}: the push to producer group {} failed",
                        check.msg_id,
                        check.producer_group
                    );
                }
            }
            Err(e) => log::warn!("transaction check of {}: {e}", check.msg_id),
        }
    })
}
