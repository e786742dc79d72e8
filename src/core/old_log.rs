//! Before-election agreement on the old log (an upgrade in place): Raft replicates only
//! what comes after the old log, so the members must start from the same one. Each member
//! tells its peers the digest of its old log (an opaque byte string: equal bytes, equal
//! old logs; empty: no old log); a member that has an old log neither campaigns nor votes
//! until a majority of the group, itself included, showed the same digest, and then votes
//! only for candidates that showed it too. A member that a majority can no longer agree
//! with refuses for good: it never campaigns nor votes again.
//!
//! A member without an old log (a fresh group) is *passive*: it answers with the empty
//! digest and elects as before, but refuses as soon as it learns that the group it is in
//! cannot agree with having no old log. Pure: no clock, no I/O; the group threads feed
//! the digests in and carry the verdicts out.

use super::quorum::majority;

/// What [`OldLogGate`] decided on an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing new.
    Undecided,
    /// A majority, this member included, showed this member's digest: it may elect.
    Agreed,
    /// Too many members showed another digest: this member refuses. `peer` holds the
    /// digest most members other than this one showed (what a message names).
    Refused { peer: usize },
}

/// One member's view of the group's old-log digests.
#[derive(Debug, Clone)]
pub struct OldLogGate {
    me: usize,
    /// Whether this member's elections wait for the agreement (it has an old log).
    active: bool,
    /// This member's digest; `None` until its old log has been read.
    own: Option<Vec<u8>>,
    /// The digest each peer last showed.
    peers: Vec<Option<Vec<u8>>>,
    agreed: bool,
    refused: Option<usize>,
}

impl OldLogGate {
    /// A member that has an old log (its digest follows through [`OldLogGate::set_own`]).
    pub fn active(members: usize, me: usize) -> OldLogGate {
        assert!(me < members);
        OldLogGate {
            me,
            active: true,
            own: None,
            peers: vec![None; members],
            agreed: false,
            refused: None,
        }
    }

    /// A member without an old log: its digest is the empty one, its elections do not wait.
    pub fn passive(members: usize, me: usize) -> OldLogGate {
        let mut g = OldLogGate::active(members, me);
        g.active = false;
        g.own = Some(Vec::new());
        g
    }

    /// A member that refused before (recorded on disk): it never elects.
    pub fn refused(members: usize, me: usize) -> OldLogGate {
        let mut g = OldLogGate::passive(members, me);
        g.active = true;
        g.refused = Some(me);
        g
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    pub fn own(&self) -> Option<&[u8]> {
        self.own.as_deref()
    }

    /// The digest `peer` last showed.
    pub fn peer(&self, peer: usize) -> Option<&[u8]> {
        self.peers.get(peer).and_then(|d| d.as_deref())
    }

    /// This member's old log has been read. Only the first call counts.
    pub fn set_own(&mut self, digest: Vec<u8>) -> Verdict {
        if self.own.is_none() {
            self.own = Some(digest);
        }
        self.decide()
    }

    /// `peer` showed `digest`.
    pub fn heard(&mut self, peer: usize, digest: &[u8]) -> Verdict {
        if peer == self.me || peer >= self.peers.len() {
            return Verdict::Undecided;
        }
        if self.peers[peer].as_deref() != Some(digest) {
            self.peers[peer] = Some(digest.to_vec());
        }
        self.decide()
    }

    /// May this member stand for election?
    pub fn may_campaign(&self) -> bool {
        self.refused.is_none() && (!self.active || self.agreed)
    }

    /// May this member grant `candidate` a vote (pre-votes included)?
    pub fn may_vote_for(&self, candidate: usize) -> bool {
        if self.refused.is_some() {
            return false;
        }
        if !self.active {
            return true;
        }
        self.agreed && self.own.is_some() && self.peer(candidate) == self.own()
    }

    pub fn is_refused(&self) -> bool {
        self.refused.is_some()
    }

    pub fn is_agreed(&self) -> bool {
        self.agreed
    }

    /// Whether `peer`'s digest is still wanted (it is asked again until it answers).
    pub fn wants(&self, peer: usize) -> bool {
        peer != self.me && self.peers.get(peer).is_some_and(|d| d.is_none())
    }

    fn decide(&mut self) -> Verdict {
        if self.refused.is_some() || self.agreed {
            return Verdict::Undecided;
        }
        let Some(own) = &self.own else {
            return Verdict::Undecided;
        };
        let members = self.peers.len();
        let same = 1 + self
            .peers
            .iter()
            .filter(|d| d.as_ref() == Some(own))
            .count();
        let other: Vec<usize> = (0..members)
            .filter(|&p| self.peers[p].as_ref().is_some_and(|d| d != own))
            .collect();
        if members - other.len() < majority(members) {
            // The most common other digest names the comparison in the message.
            let peer = other
                .iter()
                .copied()
                .max_by_key(|&p| {
                    let n = other
                        .iter()
                        .filter(|&&q| self.peers[q] == self.peers[p])
                        .count();
                    (n, std::cmp::Reverse(p))
                })
                .expect("a refusal has another digest");
            self.refused = Some(peer);
            return Verdict::Refused { peer };
        }
        // A passive member never waits, so it never needs to agree: it only refuses.
        if self.active && same >= majority(members) {
            self.agreed = true;
            return Verdict::Agreed;
        }
        Verdict::Undecided
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"digest a";
    const B: &[u8] = b"digest b";

    #[test]
    fn elects_once_a_majority_showed_the_same_digest() {
        let mut g = OldLogGate::active(3, 0);
        assert!(!g.may_campaign() && !g.may_vote_for(1));
        assert_eq!(g.heard(1, A), Verdict::Undecided, "own digest not read yet");
        assert!(!g.may_campaign());
        assert_eq!(g.set_own(A.to_vec()), Verdict::Agreed);
        assert!(g.may_campaign() && g.may_vote_for(1));
        assert!(!g.may_vote_for(2), "member 2 showed nothing yet");
        assert!(g.wants(2) && !g.wants(1) && !g.wants(0));
        assert_eq!(g.heard(2, B), Verdict::Undecided, "the majority holds");
        assert!(!g.may_vote_for(2) && g.may_campaign());
    }

    #[test]
    fn the_member_a_majority_cannot_agree_with_refuses_for_good() {
        let mut g = OldLogGate::active(3, 2);
        g.set_own(B.to_vec());
        assert_eq!(
            g.heard(0, A),
            Verdict::Undecided,
            "member 1 may still agree"
        );
        assert!(!g.may_campaign());
        assert_eq!(g.heard(1, A), Verdict::Refused { peer: 0 });
        assert!(g.is_refused() && !g.may_campaign() && !g.may_vote_for(0));
        assert_eq!(g.heard(1, B), Verdict::Undecided, "refused for good");
        assert!(!g.may_campaign());
    }

    #[test]
    fn two_members_that_differ_wait_for_a_third() {
        let mut g = OldLogGate::active(3, 0);
        g.set_own(A.to_vec());
        assert_eq!(g.heard(1, B), Verdict::Undecided);
        assert!(!g.may_campaign() && !g.may_vote_for(1));
        assert_eq!(g.heard(2, A), Verdict::Agreed);
    }

    #[test]
    fn a_single_member_agrees_with_itself() {
        let mut g = OldLogGate::active(1, 0);
        assert_eq!(g.set_own(A.to_vec()), Verdict::Agreed);
        assert!(g.may_campaign());
    }

    #[test]
    fn all_different_all_refuse_and_name_the_most_common_other_digest() {
        let mut g = OldLogGate::active(5, 0);
        g.set_own(A.to_vec());
        assert_eq!(g.heard(1, B), Verdict::Undecided);
        assert_eq!(g.heard(2, b"c"), Verdict::Undecided);
        assert_eq!(g.heard(3, b"c"), Verdict::Refused { peer: 2 });
    }

    #[test]
    fn a_passive_member_elects_as_before_until_the_group_shows_an_old_log() {
        let mut g = OldLogGate::passive(3, 1);
        assert!(g.may_campaign() && g.may_vote_for(0) && g.may_vote_for(2));
        assert_eq!(g.heard(0, b""), Verdict::Undecided);
        assert!(g.may_campaign());
        assert_eq!(g.heard(0, A), Verdict::Undecided);
        assert!(g.may_campaign());
        assert_eq!(g.heard(2, A), Verdict::Refused { peer: 0 });
        assert!(!g.may_campaign() && !g.may_vote_for(0));
    }

    #[test]
    fn an_active_member_votes_only_for_who_showed_its_digest() {
        let mut g = OldLogGate::active(3, 0);
        g.set_own(A.to_vec());
        g.heard(1, A);
        g.heard(2, b"");
        assert!(g.may_vote_for(1) && !g.may_vote_for(2));
        assert!(!g.may_vote_for(7), "not a member");
    }

    #[test]
    fn a_recorded_refusal_never_elects() {
        let mut g = OldLogGate::refused(3, 0);
        assert_eq!(g.heard(1, b""), Verdict::Undecided);
        assert!(!g.may_campaign() && !g.may_vote_for(1) && g.is_refused());
    }
}
