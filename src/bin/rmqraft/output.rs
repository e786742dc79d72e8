//! The cluster table and its JSON lines.

use crate::remote::{status_all, CallError};
use crate::target::Target;
use rmqraft::net::StatusReport;
use rmqraft::Role;
use std::fmt::Write as _;

/// One member as cluster-list shows it.
pub struct MemberRow {
    pub group: String,
    pub peer: String,
    /// Position in dLegerPeers.
    pub position: usize,
    pub addr: String,
    pub report: Result<StatusReport, CallError>,
}

impl MemberRow {
    /// RocketMQ's broker id: 0 for the leader (the master), position + 1 for a follower
    /// (as DLedger maps n0 -> 1, n1 -> 2), -1 while no role is decided (a candidate) or
    /// when the member does not answer.
    pub fn bid(&self) -> i64 {
        match &self.report {
            Ok(r) => match r.status.role {
                Role::Leader => 0,
                Role::Follower => self.position as i64 + 1,
                Role::Candidate => -1,
            },
            Err(_) => -1,
        }
    }

    pub fn role(&self) -> &'static str {
        match &self.report {
            Ok(r) => r.status.role.name(),
            Err(_) => "UNREACHABLE",
        }
    }

    pub fn is_leader(&self) -> bool {
        matches!(&self.report, Ok(r) if r.status.role == Role::Leader)
    }
}

/// Asks every member of every target; one row per member, in dLegerPeers order.
pub fn collect_rows(targets: &[Target]) -> Vec<MemberRow> {
    let mut rows = Vec::new();
    for target in targets {
        for (position, report) in status_all(target).into_iter().enumerate() {
            let peer = &target.peers[position];
            rows.push(MemberRow {
                group: target.group.clone(),
                peer: peer.id.clone(),
                position,
                addr: peer.addr.to_string(),
                report,
            });
        }
    }
    rows
}

fn tps_text(tps: f64) -> String {
    if tps.is_finite() && tps >= 0.0 {
        format!("{tps:.1}")
    } else {
        "0.0".to_string()
    }
}

/// The table, mqadmin clusterList style, with a header line.
pub fn table(rows: &[MemberRow]) -> String {
    let header = [
        "#Group", "#Peer", "#BID", "#Addr", "#Role", "#Term", "#Last", "#Commit", "#Flushed",
        "#TPS", "#PID",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for row in rows {
        let mut line = vec![
            row.group.clone(),
            row.peer.clone(),
            row.bid().to_string(),
            row.addr.clone(),
            row.role().to_string(),
        ];
        match &row.report {
            Ok(r) => line.extend([
                r.status.term.to_string(),
                r.status.last_index.to_string(),
                r.status.commit_index.to_string(),
                r.status.flushed_index.to_string(),
                tps_text(r.append_tps),
                r.pid.to_string(),
            ]),
            Err(_) => line.extend((0..6).map(|_| "-".to_string())),
        }
        cells.push(line);
    }
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| cells.iter().map(|l| l[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for line in &cells {
        let mut text = String::new();
        for (c, cell) in line.iter().enumerate() {
            if c + 1 == columns {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// The reasons members did not answer, one line each (for stderr under the table).
pub fn unreachable_notes(rows: &[MemberRow]) -> Vec<String> {
    rows.iter()
        .filter_map(|row| match &row.report {
            Err(e) => Some(format!(
                "{}/{} ({}) did not answer: {}",
                row.group, row.peer, row.addr, e
            )),
            Ok(_) => None,
        })
        .collect()
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One JSON object (one line) per member; the numbers of an unreachable member are null.
pub fn json_line(row: &MemberRow) -> String {
    let (term, last, commit, flushed, tps, pid) = match &row.report {
        Ok(r) => (
            r.status.term.to_string(),
            r.status.last_index.to_string(),
            r.status.commit_index.to_string(),
            r.status.flushed_index.to_string(),
            tps_text(r.append_tps),
            r.pid.to_string(),
        ),
        Err(_) => {
            let null = || "null".to_string();
            (null(), null(), null(), null(), null(), null())
        }
    };
    format!(
        "{{\"group\":{},\"peer\":{},\"addr\":{},\"bid\":{},\"role\":{},\"term\":{term},\
         \"last_index\":{last},\"commit_index\":{commit},\"flushed_index\":{flushed},\
         \"tps\":{tps},\"pid\":{pid}}}",
        json_string(&row.group),
        json_string(&row.peer),
        json_string(&row.addr),
        row.bid(),
        json_string(row.role()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmqraft::GroupStatus;

    fn row(role: Option<Role>, position: usize) -> MemberRow {
        MemberRow {
            group: "G\"1".to_string(),
            peer: format!("n{position}"),
            position,
            addr: "127.0.0.1:1".to_string(),
            report: match role {
                Some(role) => Ok(StatusReport {
                    status: GroupStatus {
                        role,
                        self_peer: position as i32,
                        leader_peer: 0,
                        term: 3,
                        first_index: 1,
                        last_index: 10,
                        commit_index: 9,
                        flushed_index: 8,
                    },
                    append_tps: 12.34,
                    pid: 42,
                }),
                None => Err(CallError::Unreachable("refused".to_string())),
            },
        }
    }

    #[test]
    fn bids_follow_rocketmq() {
        assert_eq!(row(Some(Role::Leader), 2).bid(), 0);
        assert_eq!(row(Some(Role::Follower), 0).bid(), 1);
        assert_eq!(row(Some(Role::Follower), 1).bid(), 2);
        assert_eq!(row(Some(Role::Candidate), 1).bid(), -1);
        assert_eq!(row(None, 1).bid(), -1);
    }

    #[test]
    fn json_lines() {
        assert_eq!(
            json_line(&row(Some(Role::Leader), 0)),
            "{\"group\":\"G\\\"1\",\"peer\":\"n0\",\"addr\":\"127.0.0.1:1\",\"bid\":0,\
             \"role\":\"LEADER\",\"term\":3,\"last_index\":10,\"commit_index\":9,\
             \"flushed_index\":8,\"tps\":12.3,\"pid\":42}"
        );
        assert!(json_line(&row(None, 1)).contains("\"role\":\"UNREACHABLE\",\"term\":null"));
        assert_eq!(json_string("a\u{1}\n"), "\"a\\u0001\\n\"");
    }

    #[test]
    fn table_aligns_columns() {
        let text = table(&[row(Some(Role::Leader), 0), row(None, 1)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("#Group"));
        assert!(lines[2].contains("UNREACHABLE"));
        assert_eq!(lines[0].find("#BID"), lines[1].find(" 0 ").map(|i| i + 1));
    }
}
