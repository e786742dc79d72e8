//! rocketmq-client-rust's TransactionMQProducer against rmqraft: half messages, commit
//! and rollback from the local transaction, and the broker's check for the ones left
//! unknown; a consumer gets exactly the committed and the checked-commit ones.

use std::any::Any;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmqraft_interop::{client_options, Client, Cluster, CLIENT_MIN_INTERVAL_MS};
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQPushConsumer,
    LocalTransactionState, MQPushConsumer, MessageListenerConcurrently, TransactionListener,
    TransactionMQProducer,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;

const TEST_LIMIT: Duration = Duration::from_secs(240);
const TOPIC: &str = "InteropTxn";

#[derive(Clone, Default)]
struct Collect {
    keys: Arc<Mutex<Vec<String>>>,
}

fn key_of(m: &MessageExt) -> String {
    m.message_inner()
        .keys()
        .and_then(|k| k.into_iter().next())
        .unwrap_or_default()
}

impl MessageListenerConcurrently for Collect {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut keys = self.keys.lock().unwrap();
        for m in msgs {
            keys.push(key_of(m));
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// Commits `commit-*`, rolls back `rollback-*`, leaves `unknown-*` for the check, which
/// commits them.
#[derive(Clone, Default)]
struct Local {
    checks: Arc<AtomicUsize>,
}

fn keys_of(msg: &dyn MessageTrait) -> String {
    msg.get_keys().map(|k| k.to_string()).unwrap_or_default()
}

impl TransactionListener for Local {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _arg: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        let k = keys_of(msg);
        if k.starts_with("commit-") {
            LocalTransactionState::CommitMessage
        } else if k.starts_with("rollback-") {
            LocalTransactionState::RollbackMessage
        } else {
            LocalTransactionState::Unknown
        }
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        self.checks.fetch_add(1, Ordering::SeqCst);
        if key_of(msg).starts_with("unknown-") {
            LocalTransactionState::CommitMessage
        } else {
            LocalTransactionState::RollbackMessage
        }
    }
}

fn message(key: &str) -> Message {
    Message::builder()
        .topic(TOPIC)
        .tags("TagTx")
        .key(key)
        .body_slice(format!("body of {key}").as_bytes())
        .build_unchecked()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactional_producer_commit_rollback_and_check() {
    let cluster = Cluster::start_with_conf(
        1,
        "SYNC_FLUSH",
        "transactionTimeOut = 1000\ntransactionCheckInterval = 1000\n",
    );
    let ns = cluster.namesrv_addr.clone();
    cluster.create_topic(TOPIC, 4);
    let client = Client::new("txn");
    tokio::time::timeout(TEST_LIMIT, async {
        let sink = Collect::default();
        let mut push = DefaultMQPushConsumer::builder(client.runtime())
            .client_options(client_options(&ns, CLIENT_MIN_INTERVAL_MS))
            .consumer_group("cg-txn".to_string())
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .build();
        push.subscribe(TOPIC, "*").await.expect("subscribe");
        push.register_message_listener_concurrently(sink.clone());
        push.start().await.expect("start push consumer");

        let local = Local::default();
        let mut p = TransactionMQProducer::builder(client.runtime())
            .client_options(client_options(&ns, CLIENT_MIN_INTERVAL_MS))
            .producer_group("pg-txn")
            .send_msg_timeout(3000)
            .transaction_listener(local.clone())
            .build();
        p.start().await.expect("start transactional producer");

        let mut want = HashSet::new();
        let mut never = HashSet::new();
        for i in 0..5 {
            for kind in ["commit", "rollback", "unknown"] {
                let key = format!("{kind}-{i}");
                // A send refused while leadership settles is retried; a half left
                // behind by a failed attempt is rolled back by the check (its key is
                // not `unknown-`), so each key is committed at most once.
                let send_deadline = Instant::now() + Duration::from_secs(60);
                let r = loop {
                    match p
                        .send_message_in_transaction::<(), _>(message(&key), None)
                        .await
                    {
                        Ok(r) => break r,
                        Err(e) if Instant::now() < send_deadline => {
                            eprintln!("send {key}: {e:?}; retrying");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(e) => panic!("send {key}: {e:?}\n{}", cluster.logs()),
                    }
                };
                let sr = r.send_result.as_ref().expect("a send result");
                assert_eq!(format!("{:?}", sr.send_status), "SendOk", "{key}: {r:?}");
                if kind == "rollback" {
                    never.insert(key);
                } else {
                    want.insert(key);
                }
            }
        }

        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let got: HashSet<String> = sink.keys.lock().unwrap().iter().cloned().collect();
            let bad: Vec<&String> = got.iter().filter(|k| never.contains(*k)).collect();
            assert!(bad.is_empty(), "rolled back but consumed: {bad:?}");
            if want.iter().all(|k| got.contains(k)) {
                assert_eq!(
                    got, want,
                    "exactly the committed and the checked-commit ones"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "consumed {:?} of {:?} within 90 s (checks {})\n{}",
                got,
                want,
                local.checks.load(Ordering::SeqCst),
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            local.checks.load(Ordering::SeqCst) >= 5,
            "every unknown one was checked"
        );
        p.shutdown().await;
        push.shutdown().await;
    })
    .await
    .unwrap_or_else(|_| panic!("test over {TEST_LIMIT:?}\n{}", cluster.logs()));
    client.shutdown().await;
}
