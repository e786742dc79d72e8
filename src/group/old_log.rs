//! The before-election comparison of old logs (an upgrade in place) for one member: the
//! decisions are `crate::core::old_log`'s; this carries the digests over the transport
//! (`Message::OldLog`, answered by `Message::OldLogResp`), gates the member's elections and
//! votes, and records a refusal in `<member>/broker/old-log.refused`.

use super::Member;
use crate::config::GroupConfig;
use crate::core::old_log::{OldLogGate, Verdict};
use crate::error::{Error, ErrorKind};
use crate::net::msg::Message;
use crate::upgrade::{OldLogDigest, OldLogPart};
use bytes::Bytes;
use std::sync::{Mutex, MutexGuard};

/// A member's part in the comparison.
pub(super) struct OldLogState {
    pub(super) gate: OldLogGate,
    /// Why this member refuses, once it does.
    pub(super) refusal: Option<Error>,
}

impl OldLogState {
    pub(super) fn at_open(config: &GroupConfig) -> OldLogState {
        let broker_dir = config.member_dir().join("broker");
        let (members, me) = (config.peers.len(), config.self_index);
        match crate::upgrade::old_log_part(
            &broker_dir,
            config.classic_commitlog_dir.as_deref(),
            config.dledger_takeover,
        ) {
            OldLogPart::Refused(why) => OldLogState {
                gate: OldLogGate::refused(members, me),
                refusal: Some(Error::new(ErrorKind::Corrupt, why)),
            },
            OldLogPart::Active => OldLogState {
                gate: OldLogGate::active(members, me),
                refusal: None,
            },
            OldLogPart::Passive => OldLogState {
                gate: OldLogGate::passive(members, me),
                refusal: None,
            },
        }
    }
}

impl Member {
    fn old_log_state(&self) -> MutexGuard<'_, OldLogState> {
        self.old_log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May this member stand for election (or take a leadership transfer)?
    pub(super) fn old_log_may_campaign(&self) -> bool {
        self.old_log_state().gate.may_campaign()
    }

    /// May this member vote for `candidate`?
    pub(super) fn old_log_may_vote_for(&self, candidate: usize) -> bool {
        self.old_log_state().gate.may_vote_for(candidate)
    }

    /// Why this member refuses to elect and serve, if it does.
    pub(crate) fn old_log_refusal(&self) -> Option<Error> {
        self.old_log_state().refusal.clone()
    }

    /// This member's old log was read (`OldLogDigest::encode`): it is told to every peer,
    /// and elections wait for their answers.
    pub(crate) fn set_old_log_digest(&self, digest: Vec<u8>) {
        let verdict = {
            let mut st = self.old_log_state();
            if !st.gate.is_active() || st.gate.own().is_some() {
                return;
            }
            st.gate.set_own(digest)
        };
        self.old_log_verdict(verdict);
        self.old_log_ask();
    }

    /// Asks every peer whose digest is still unknown (at open, then once a second).
    /// Members without an old log never ask: a fresh group sends nothing new.
    pub(super) fn old_log_ask(&self) {
        let (own, peers) = {
            let st = self.old_log_state();
            if !st.gate.is_active() {
                return;
            }
            let Some(own) = st.gate.own() else { return };
            let peers: Vec<usize> = (0..self.config.peers.len())
                .filter(|&p| st.gate.wants(p))
                .collect();
            (Bytes::copy_from_slice(own), peers)
        };
        for p in peers {
            self.send(
                p,
                0,
                Message::OldLog {
                    digest: own.clone(),
                },
            );
        }
    }

    /// A peer's digest came in; an `OldLog` is answered with this member's own, once
    /// that is known.
    pub(super) fn on_old_log(&self, from: usize, digest: &Bytes, answer: bool) {
        let (verdict, own) = {
            let mut st = self.old_log_state();
            let v = st.gate.heard(from, digest);
            (v, st.gate.own().map(Bytes::copy_from_slice))
        };
        if let (true, Some(own)) = (answer, own) {
            self.send(from, 0, Message::OldLogResp { digest: own });
        }
        self.old_log_verdict(verdict);
    }

    fn old_log_verdict(&self, verdict: Verdict) {
        match verdict {
            Verdict::Undecided => {}
            Verdict::Agreed => log::info!(
                "{}/{}: a majority of the group holds this member's old log; it may elect",
                self.config.group,
                self.config.self_id
            ),
            Verdict::Refused { peer } => self.old_log_refuse(peer),
        }
    }

    fn old_log_refuse(&self, peer: usize) {
        let mut st = self.old_log_state();
        let whose = format!("member {}", self.config.peers[peer].id);
        let own = st.gate.own().unwrap_or_default().to_vec();
        let theirs = st.gate.peer(peer).unwrap_or_default().to_vec();
        let decode = |b: &[u8]| (!b.is_empty()).then(|| OldLogDigest::decode(b)).transpose();
        let why = match (decode(&own), decode(&theirs)) {
            (_, Err(_)) => format!("{whose} sent a malformed old-log digest"),
            (Err(e), _) => format!("this member's own old-log digest: {e}"),
            (Ok(None), Ok(Some(t))) => format!(
                "{whose} serves an old log (offsets {}..{}, sha256 {}) and this member has \
                 none (storePathCommitLog)",
                t.first,
                t.end,
                t.sha256_hex()
            ),
            (Ok(Some(o)), Ok(None)) => format!(
                "this member's old log holds offsets {}..{} (sha256 {}) and {whose} has none",
                o.first,
                o.end,
                o.sha256_hex()
            ),
            (Ok(Some(o)), Ok(Some(t))) => o
                .first_difference_from(&t, &whose)
                .unwrap_or_else(|| format!("{whose}'s digest differs")),
            (Ok(None), Ok(None)) => format!("{whose}'s digest differs"),
        };
        let err = Error::new(
            ErrorKind::Corrupt,
            format!(
                "{}/{}: refusing to serve and to elect: a majority of the group cannot hold \
                 this member's old log: {why}. Members must start from the same old log: \
                 compare the copies with `rmqraft store diff`, repair this one with \
                 `rmqraft store align`, and start it with a new storePathRootDir",
                self.config.group, self.config.self_id
            ),
        );
        log::error!("{err}");
        let broker_dir = self.config.member_dir().join("broker");
        if let Err(e) = std::fs::create_dir_all(&broker_dir) {
            log::error!("create {}: {e}", broker_dir.display());
        }
        crate::upgrade::record_refusal(&broker_dir, err.message());
        st.refusal = Some(err);
    }
}

/// Wraps the state for the member (one small lock, never held with the member's own).
pub(super) fn new_state(config: &GroupConfig) -> Mutex<OldLogState> {
    Mutex::new(OldLogState::at_open(config))
}
