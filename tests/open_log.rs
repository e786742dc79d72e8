//! What a group says when it opens: a likely typo in its properties is warned about once
//! (a RocketMQ broker key never is), the settings it runs with are logged, and an empty
//! store says so. One test: it owns the process's logger.

#[path = "common/log_capture.rs"]
mod log_capture;
use log_capture::lines_with;
use rmqraft::Engine;
use std::net::TcpListener;

#[test]
fn open_warns_about_typos_once_and_logs_the_effective_settings() {
    let capture = log_capture::install();
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open("").expect("engine");
    let mut opened = Vec::new();
    for attempt in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let props = format!(
            "dLegerGroup=TypoGroup\ndLegerPeers=n0-127.0.0.1:{port}\ndLegerSelfId=n0\n\
             storePathRootDir={}\nmappedFileSizeCommitLog=4194304\nflushDiskTpye=ASYNC_FLUSH\n\
             brokerIP1=10.0.0.1\nbrokerName=broker-a\nsendMessageThreadPoolNums=16\n\
             storePathCommitLog=/data/commitlog\nenableDLegerCommitLog=true\n",
            dir.path().display()
        );
        match engine.open_group(&props) {
            Ok(group) => {
                opened.push(group);
                break;
            }
            Err(e) if attempt < 4 && e.kind() == rmqraft::ErrorKind::Io => continue,
            Err(e) => panic!("open: {e}"),
        }
    }
    let group = opened.pop().expect("the group opened");
    let typo = lines_with(capture, log::Level::Warn, "flushDiskTpye");
    assert_eq!(
        typo,
        vec!["flushDiskTpye: unknown key; did you mean flushDiskType?".to_string()]
    );
    for key in [
        "brokerIP1",
        "brokerName",
        "sendMessageThreadPoolNums",
        "storePathCommitLog",
    ] {
        assert!(
            lines_with(capture, log::Level::Warn, key).is_empty(),
            "{key}"
        );
    }
    let settings = lines_with(capture, log::Level::Info, "TypoGroup/n0: opened with");
    assert_eq!(settings.len(), 1, "{settings:?}");
    assert!(
        settings[0].contains("flushDiskType SYNC_FLUSH")
            && settings[0].contains("4 MiB")
            && settings[0].contains("election after 300-600 ms"),
        "{}",
        settings[0]
    );
    assert_eq!(
        lines_with(capture, log::Level::Info, "opened an empty store").len(),
        1
    );
    assert!(lines_with(capture, log::Level::Info, "opened entries 1..=0").is_empty());
    group.close();
    engine.close();
}
