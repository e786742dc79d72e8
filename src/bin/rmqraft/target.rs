//! Which group a client subcommand talks to, and the broker.conf files fast-try uses.

use crate::args::TargetArgs;
use rmqraft::config::Peer;
use rmqraft::{EngineConfig, GroupConfig};
use std::path::{Path, PathBuf};

/// A group as a client sees it: where its members listen and what cluster they belong to.
#[derive(Debug, Clone)]
pub struct Target {
    pub cluster: String,
    /// `dLegerSecret` of the config, or `RMQRAFT_SECRET` with `-p`: clients authenticate
    /// like peers when the cluster has one.
    pub secret: Option<rmqraft::config::Secret>,
    pub group: String,
    pub peers: Vec<Peer>,
}

impl Target {
    pub fn peer_index(&self, id: &str) -> Result<usize, String> {
        self.peers.iter().position(|p| p.id == id).ok_or_else(|| {
            let ids: Vec<&str> = self.peers.iter().map(|p| p.id.as_str()).collect();
            format!(
                "'{id}' is not a member of {} (members: {})",
                self.group,
                ids.join(", ")
            )
        })
    }
}

pub fn read_config(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses one broker.conf file as a group member's config, with the file named in errors.
pub fn load_config(path: &Path) -> Result<(EngineConfig, GroupConfig), String> {
    let text = read_config(path)?;
    let engine = EngineConfig::from_properties(&text)
        .map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    let group = GroupConfig::from_properties(&text)
        .map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    Ok((engine, group))
}

pub fn target_of(engine: &EngineConfig, group: &GroupConfig) -> Target {
    Target {
        cluster: engine.cluster_name.clone(),
        secret: engine.secret.clone(),
        group: group.group.clone(),
        peers: group.peers.clone(),
    }
}

/// The groups named by the TARGET flags, one per distinct group (cluster-list takes all,
/// the other subcommands the first).
pub fn resolve(args: &TargetArgs) -> Result<Vec<Target>, String> {
    if let (Some(peers), Some(group)) = (&args.peers, &args.group) {
        return Ok(vec![from_peers(peers, group, args.cluster.as_deref())?]);
    }
    let configs = if args.configs.is_empty() {
        vec![fast_try_config(&args.dir)?]
    } else {
        args.configs.clone()
    };
    let mut targets: Vec<Target> = Vec::new();
    for path in &configs {
        let (engine, group) = load_config(path)?;
        let target = target_of(&engine, &group);
        if !targets
            .iter()
            .any(|t| t.group == target.group && t.peers == target.peers)
        {
            targets.push(target);
        }
    }
    Ok(targets)
}

/// `-p PEERS -g GROUP`: checked by the library's own broker.conf parser, so the rules and
/// error messages for `dLegerPeers` are the same as in a config file.
fn from_peers(peers: &str, group: &str, cluster: Option<&str>) -> Result<Target, String> {
    let first_id = peers
        .split(';')
        .map(str::trim)
        .find(|s| !s.is_empty())
        .and_then(|item| item.split_once('-'))
        .map(|(id, _)| id.trim())
        .unwrap_or("");
    let text = format!(
        "dLegerGroup={group}\ndLegerPeers={peers}\ndLegerSelfId={first_id}\n\
         storePathRootDir=/nonexistent\n"
    );
    let config = GroupConfig::from_properties(&text).map_err(|e| e.message().to_string())?;
    Ok(Target {
        cluster: cluster
            .map(str::to_string)
            .unwrap_or_else(|| EngineConfig::default().cluster_name),
        secret: std::env::var("RMQRAFT_SECRET")
            .ok()
            .filter(|s| !s.is_empty())
            .map(|s| rmqraft::config::Secret::new(s.into_bytes())),
        group: config.group,
        peers: config.peers,
    })
}

/// The config of the group fast-try runs from `dir`: the one it generated for `--ports`, or
/// the shipped one.
pub fn fast_try_config(dir: &Path) -> Result<PathBuf, String> {
    let generated = generated_config_path(dir, 0);
    if generated.is_file() {
        return Ok(generated);
    }
    Ok(shipped_configs()?.remove(0))
}

/// `DIR/broker-nI.conf`, written by `fast-try start --ports`.
pub fn generated_config_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("broker-n{i}.conf"))
}

const SHIPPED_DIR: &str = "conf/dledger";

/// The shipped `conf/dledger/broker-n{0,1,2}.conf`: under the current directory, else
/// in the repository the executable was built in (target/<profile>/rmqraft), else in the
/// source tree it was compiled from.
pub fn shipped_configs() -> Result<Vec<PathBuf>, String> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for root in &roots {
        let dir = root.join(SHIPPED_DIR);
        let files: Vec<PathBuf> = (0..3)
            .map(|i| dir.join(format!("broker-n{i}.conf")))
            .collect();
        if files.iter().all(|f| f.is_file()) {
            return Ok(files);
        }
    }
    Err(format!(
        "cannot find {SHIPPED_DIR}/broker-n0.conf, -n1, -n2 (looked in the current directory, \
         beside the executable and in {}); run from the rmqraft repository, or give -c FILE \
         (cluster-list, append, ...) or --ports (fast-try start)",
        env!("CARGO_MANIFEST_DIR")
    ))
}

/// The broker.conf text of member `i` of the three-member try-out group. The shipped
/// conf/dledger files are this text for the default ports and stores (a test checks it).
#[cfg(test)]
pub fn broker_conf(i: usize, raft_ports: [u16; 3], store_root: &Path) -> String {
    broker_conf_with(i, raft_ports, store_root, RocketmqPorts::default())
}

/// The Raft ports of conf/dledger's dLegerPeers.
pub const SHIPPED_RAFT_PORTS: [u16; 3] = [40911, 40912, 40913];

/// The name server's port and the members' listenPorts of a fast-try group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RocketmqPorts {
    pub namesrv: u16,
    pub listen: [u16; 3],
}

impl Default for RocketmqPorts {
    /// RocketMQ's: 9876, and conf/dledger's 30911, 30921, 30931.
    fn default() -> Self {
        RocketmqPorts {
            namesrv: 9876,
            listen: [30911, 30921, 30931],
        }
    }
}

/// [`broker_conf`] with other RocketMQ ports.
pub fn broker_conf_with(
    i: usize,
    raft_ports: [u16; 3],
    store_root: &Path,
    rocketmq: RocketmqPorts,
) -> String {
    let peers = raft_ports
        .iter()
        .enumerate()
        .map(|(n, port)| format!("n{n}-127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(";");
    let listen_port = rocketmq.listen[i];
    let namesrv_port = rocketmq.namesrv;
    let store = store_root.display();
    format!(
        "\
# Member n{i} of the three-member try-out group, in RocketMQ's broker.conf format
# (`key = value`). rmqraft reads the keys marked [rmqraft] and ignores the others, so
# one file can serve a RocketMQ broker and rmqraft alike.
# Start the group with `rmqraft fast-try start`, or this member alone with
# `rmqraft node -c broker-n{i}.conf`.

# [rmqraft] Cluster name: members and clients of one cluster must all use it.
brokerClusterName = RaftCluster
brokerName = RaftNode00
listenPort = {listen_port}
namesrvAddr = 127.0.0.1:{namesrv_port}
# [rmqraft] Root of this member's files; rmqraft keeps them in <root>/dledger-n{i}/.
storePathRootDir = {store}
storePathCommitLog = {store}/commitlog
sendMessageThreadPoolNums = 16
# [rmqraft] SYNC_FLUSH: an append is acknowledged once a majority has it on disk.
# ASYNC_FLUSH: once a majority holds it in memory (flushed within flushIntervalCommitLog ms).
flushDiskType = SYNC_FLUSH
# [rmqraft] Size of one commitlog segment file. 64 MiB keeps a try-out small; without
# the key it is RocketMQ's default, 1 GiB (preallocated on disk).
mappedFileSizeCommitLog = 67108864

enableDLegerCommitLog = true
# [rmqraft] The replicated group this member belongs to.
dLegerGroup = RaftNode00
# [rmqraft] Every member as id-host:port (its Raft port), in the same order in every file.
dLegerPeers = {peers}
# [rmqraft] Which member of dLegerPeers this file describes.
dLegerSelfId = n{i}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store root of member `i` in the shipped configs.
    fn shipped_store_root(i: usize) -> PathBuf {
        PathBuf::from(format!("/tmp/rmqstore/node0{i}"))
    }

    /// The Raft ports of the shipped configs.

    #[test]
    fn shipped_configs_are_the_template() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(SHIPPED_DIR);
        for i in 0..3 {
            let path = dir.join(format!("broker-n{i}.conf"));
            let shipped = std::fs::read_to_string(&path).expect("shipped config");
            assert_eq!(
                shipped,
                broker_conf(i, SHIPPED_RAFT_PORTS, &shipped_store_root(i)),
                "{} differs from target::broker_conf",
                path.display()
            );
            let (engine, group) = load_config(&path).expect("shipped config parses");
            assert_eq!(engine.cluster_name, "RaftCluster");
            assert_eq!(group.self_index, i);
        }
    }

    #[test]
    fn peers_flag_uses_the_config_rules() {
        let t = from_peers("a-127.0.0.1:1;b-127.0.0.1:2", "G", None).unwrap();
        assert_eq!(t.peers.len(), 2);
        assert_eq!(t.cluster, "DefaultCluster");
        let err = from_peers("a-127.0.0.1:1;a-127.0.0.1:2", "G", None).unwrap_err();
        assert!(err.contains("dLegerPeers"), "{err}");
        assert!(from_peers("", "G", None).is_err());
    }
}
