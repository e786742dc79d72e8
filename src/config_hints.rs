//! Hints about broker.conf keys: an unknown key one or two edits from a key rmqraft reads
//! is probably a typo (`flushDiskTpye`) and is warned about once; RocketMQ's own broker
//! keys (a host passes its whole broker.conf) are known and never warned about.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

/// Keys of RocketMQ 4.9 / 5.x broker.conf (BrokerConfig, MessageStoreConfig,
/// NettyServerConfig, NettyClientConfig, DLedger and controller settings) that rmqraft
/// does not read: passing them is normal, so they never draw a typo warning.
pub const ROCKETMQ_KEYS: &[&str] = &[
    // BrokerConfig
    "rocketmqHome",
    "namesrvAddr",
    "fetchNamesrvAddrByAddressServer",
    "brokerIP1",
    "brokerIP2",
    "brokerName",
    "brokerClusterName",
    "brokerId",
    "brokerPermission",
    "defaultTopicQueueNums",
    "autoCreateTopicEnable",
    "clusterTopicEnable",
    "brokerTopicEnable",
    "autoCreateSubscriptionGroup",
    "messageStorePlugIn",
    "msgTraceTopicName",
    "traceTopicEnable",
    "sendMessageThreadPoolNums",
    "putMessageFutureThreadPoolNums",
    "pullMessageThreadPoolNums",
    "litePullMessageThreadPoolNums",
    "ackMessageThreadPoolNums",
    "processReplyMessageThreadPoolNums",
    "queryMessageThreadPoolNums",
    "adminBrokerThreadPoolNums",
    "clientManageThreadPoolNums",
    "consumerManageThreadPoolNums",
    "loadBalanceProcessorThreadPoolNums",
    "heartbeatThreadPoolNums",
    "endTransactionThreadPoolNums",
    "recoverThreadPoolNums",
    "flushConsumerOffsetInterval",
    "flushConsumerOffsetHistoryInterval",
    "rejectTransactionMessage",
    "fetchNameSrvAddrByDnsLookup",
    "fetchNamesrvAddrInterval",
    "sendThreadPoolQueueCapacity",
    "putThreadPoolQueueCapacity",
    "pullThreadPoolQueueCapacity",
    "litePullThreadPoolQueueCapacity",
    "ackThreadPoolQueueCapacity",
    "replyThreadPoolQueueCapacity",
    "queryThreadPoolQueueCapacity",
    "clientManagerThreadPoolQueueCapacity",
    "consumerManagerThreadPoolQueueCapacity",
    "heartbeatThreadPoolQueueCapacity",
    "endTransactionPoolQueueCapacity",
    "adminBrokerThreadPoolQueueCapacity",
    "loadBalanceThreadPoolQueueCapacity",
    "filterServerNums",
    "longPollingEnable",
    "shortPollingTimeMills",
    "notifyConsumerIdsChangedEnable",
    "highSpeedMode",
    "commercialEnable",
    "commercialTimerCount",
    "commercialTransCount",
    "commercialBigCount",
    "commercialBaseCount",
    "commercialSizePerMsg",
    "accountStatsEnable",
    "accountStatsPrintZeroValues",
    "transferMsgByHeap",
    "maxDelayTime",
    "regionId",
    "registerBrokerTimeoutMills",
    "sendHeartbeatTimeoutMillis",
    "slaveReadEnable",
    "disableConsumeIfConsumerReadSlowly",
    "consumerFallbehindThreshold",
    "brokerFastFailureEnable",
    "waitTimeMillsInSendQueue",
    "waitTimeMillsInPullQueue",
    "waitTimeMillsInLitePullQueue",
    "waitTimeMillsInHeartbeatQueue",
    "waitTimeMillsInTransactionQueue",
    "waitTimeMillsInAckQueue",
    "startAcceptSendRequestTimeStamp",
    "traceOn",
    "enableCalcFilterBitMap",
    "rejectPullConsumerEnable",
    "expectConsumerNumUseFilter",
    "maxErrorRateOfBloomFilter",
    "filterDataCleanTimeSpan",
    "filterSupportRetry",
    "enablePropertyFilter",
    "compressedRegister",
    "forceRegister",
    "registerNameServerPeriod",
    "brokerHeartbeatInterval",
    "brokerNotActiveTimeoutMillis",
    "enableNetWorkFlowControl",
    "popPollingSize",
    "popPollingMapSize",
    "maxPopPollingSize",
    "reviveQueueNum",
    "reviveInterval",
    "reviveMaxSlow",
    "reviveScanTime",
    "enablePopLog",
    "enablePopBufferMerge",
    "popCkStayBufferTime",
    "popCkStayBufferTimeOut",
    "popCkMaxBufferSize",
    "popCkOffsetMaxQueueSize",
    "enablePopBatchAck",
    "enableNotifyAfterPopOrderLockRelease",
    "realTimeNotifyConsumerChange",
    "litePullMessageEnable",
    "syncBrokerMemberGroupPeriod",
    "loadBalancePollNameServerInterval",
    "cleanOfflineBrokerInterval",
    "serverLoadBalancerEnable",
    "defaultMessageRequestMode",
    "defaultPopShareQueueNum",
    "transactionTimeOut",
    "transactionCheckMax",
    "transactionCheckInterval",
    "transactionOpMsgMaxSize",
    "transactionOpBatchInterval",
    "aclEnable",
    "storeReplyMessageEnable",
    "enableDetailStat",
    "autoDeleteUnusedStats",
    "isolateLogEnable",
    "forwardTimeout",
    "enableSlaveActingMaster",
    "enableRemoteEscape",
    "skipPreOnline",
    "asyncSendEnable",
    "useServerSideResetOffset",
    "consumerOffsetUpdateVersionStep",
    "delayOffsetUpdateVersionStep",
    "lockInStrictMode",
    "compatibleWithOldNameSrv",
    "enableControllerMode",
    "controllerAddr",
    "fetchControllerAddrByDnsLookup",
    "syncBrokerMetadataPeriod",
    "checkSyncStateSetPeriod",
    "syncControllerMetadataPeriod",
    "controllerDeployedByContainer",
    "validateSystemTopicWhenUpdateTopic",
    "brokerElectionPriority",
    "useStaticSubscription",
    "metricsExporterType",
    "metricsGrpcExporterTarget",
    "metricsGrpcExporterHeader",
    "metricGrpcExporterTimeOutInMills",
    "metricGrpcExporterIntervalInMills",
    "metricLoggingExporterIntervalInMills",
    "metricsPromExporterPort",
    "metricsPromExporterHost",
    "metricsLabel",
    "metricsInDelta",
    "channelExpiredTimeout",
    "subscriptionExpiredTimeout",
    "estimatePolicy",
    "enableLmq",
    "enableMultiDispatch",
    "timerWheelEnable",
    "timerPrecisionMs",
    "timerMaxDelaySec",
    "timerEnableDisruptor",
    "timerEnableCheckMetrics",
    "timerFlushIntervalMs",
    "timerRollWindowSlot",
    "timerGetMessageThreadNum",
    "timerPutMessageThreadNum",
    "timerStopEnqueue",
    "timerStopDequeue",
    "timerSkipUnknownError",
    "timerWarmEnable",
    "appendAckAsync",
    "appendCkAsync",
    "transactionOpMsgMaxSize",
    "enableMixedMessageType",
    "enableSplitRegistration",
    "splitRegistrationSize",
    "clientCallbackExecutorThreads",
    "pollNameServerInterval",
    "heartbeatBrokerInterval",
    "persistConsumerOffsetInterval",
    "proxyMode",
    "grpcServerPort",
    "remotingListenPort",
    // MessageStoreConfig
    "storePathRootDir",
    "storePathCommitLog",
    "storePathDLedgerCommitLog",
    "storePathEpochFile",
    "storePathBrokerIdentity",
    "readOnlyCommitLogStorePaths",
    "mappedFileSizeCommitLog",
    "mappedFileSizeTimerLog",
    "timerStorePath",
    "mappedFileSizeConsumeQueue",
    "enableConsumeQueueExt",
    "mappedFileSizeConsumeQueueExt",
    "mapperFileSizeBatchConsumeQueue",
    "bitMapLengthConsumeQueueExt",
    "flushIntervalCommitLog",
    "commitIntervalCommitLog",
    "maxRecoveryCommitlogFiles",
    "diskSpaceWarningLevelRatio",
    "diskSpaceCleanForciblyRatio",
    "useReentrantLockWhenPutMessage",
    "flushCommitLogTimed",
    "flushIntervalConsumeQueue",
    "cleanResourceInterval",
    "deleteCommitLogFilesInterval",
    "deleteConsumeQueueFilesInterval",
    "destroyMapedFileIntervalForcibly",
    "redeleteHangedFileInterval",
    "deleteWhen",
    "diskMaxUsedSpaceRatio",
    "fileReservedTime",
    "deleteFileBatchMax",
    "putMsgIndexHightWater",
    "maxMessageSize",
    "checkCRCOnRecover",
    "flushCommitLogLeastPages",
    "commitCommitLogLeastPages",
    "flushLeastPagesWhenWarmMapedFile",
    "flushConsumeQueueLeastPages",
    "flushCommitLogThoroughInterval",
    "commitCommitLogThoroughInterval",
    "flushConsumeQueueThoroughInterval",
    "maxTransferBytesOnMessageInMemory",
    "maxTransferCountOnMessageInMemory",
    "maxTransferBytesOnMessageInDisk",
    "maxTransferCountOnMessageInDisk",
    "accessMessageInMemoryMaxRatio",
    "messageIndexEnable",
    "maxHashSlotNum",
    "maxIndexNum",
    "maxMsgsNumBatch",
    "messageIndexSafe",
    "haListenPort",
    "haSendHeartbeatInterval",
    "haHousekeepingInterval",
    "haTransferBatchSize",
    "haMasterAddress",
    "haMaxGapNotInSync",
    "brokerRole",
    "flushDiskType",
    "syncFlushTimeout",
    "putMessageTimeout",
    "slaveTimeout",
    "messageDelayLevel",
    "flushDelayOffsetInterval",
    "cleanFileForciblyEnable",
    "warmMapedFileEnable",
    "offsetCheckInSlave",
    "debugLockEnable",
    "duplicationEnable",
    "diskFallRecorded",
    "osPageCacheBusyTimeOutMills",
    "defaultQueryMaxNum",
    "transientStorePoolEnable",
    "transientStorePoolSize",
    "fastFailIfNoBufferInStorePool",
    "enableDLegerCommitLog",
    "dLegerGroup",
    "dLegerPeers",
    "dLegerSelfId",
    "preferredLeaderId",
    "enableBatchPush",
    "enableScheduleMessageStats",
    "enableScheduleAsyncDeliver",
    "scheduleAsyncDeliverMaxPendingLimit",
    "scheduleAsyncDeliverMaxResendNum2Blocked",
    "maxBatchDeleteFilesNum",
    "dispatchCqThreads",
    "dispatchCqCacheNum",
    "enableAsyncReput",
    "recheckReputOffsetFromCq",
    "maxTopicLength",
    "autoMessageVersionOnTopicLen",
    "enabledAppendPropCRC",
    "forceVerifyPropCRC",
    "travelCqFileNumWhenGetMessage",
    "correctLogicMinOffsetSleepInterval",
    "correctLogicMinOffsetForceInterval",
    "mappedFileSwapEnable",
    "commitLogForceSwapMapInterval",
    "commitLogSwapMapInterval",
    "commitLogSwapMapReserveFileNum",
    "logicQueueForceSwapMapInterval",
    "logicQueueSwapMapInterval",
    "cleanSwapedMapInterval",
    "logicQueueSwapMapReserveFileNum",
    "searchBcqByCacheEnable",
    "dispatchFromSenderThread",
    "wakeCommitWhenPutMessage",
    "wakeFlushWhenPutMessage",
    "enableCleanExpiredOffset",
    "maxAsyncPutMessageRequests",
    "pullBatchMaxMessageCount",
    "totalReplicas",
    "inSyncReplicas",
    "minInSyncReplicas",
    "allAckInSyncStateSet",
    "enableAutoInSyncReplicas",
    "haFlowControlEnable",
    "maxHaTransferByteInSecond",
    "haMaxTimeSlaveNotCatchup",
    "syncMasterFlushOffsetWhenStartup",
    "maxChecksumRange",
    "replicasPerDiskPartition",
    "logicalDiskSpaceCleanForciblyThreshold",
    "maxSlaveResendLength",
    "syncFromLastFile",
    "asyncLearner",
    "maxConsumeQueueScan",
    "sampleCountThreshold",
    "coldDataFlowControlEnable",
    "coldDataScanEnable",
    "dataReadAheadEnable",
    "timerColdDataCheckIntervalMs",
    "sampleSteps",
    "accessMessageInMemoryHotRatio",
    "enableBuildConsumeQueueConcurrently",
    "batchDispatchRequestThreadPoolNums",
    "cleanRocksDBDirtyCQIntervalMin",
    "statRocksDBCQIntervalSec",
    "memTableFlushIntervalMs",
    "realTimePersistRocksDBConfig",
    "enableRocksDBLog",
    "topicQueueLockNum",
    "storeType",
    "readUncommitted",
    "putConsumeQueueDataByFileChannel",
    "diskSpaceCleanForciblyRatio",
    // DLedger (DLedgerConfig) keys a DLedger broker.conf may carry
    "dLegerSelfId",
    "storeBaseDir",
    "peers",
    "group",
    "selfId",
    "dataStorePath",
    "mappedFileSizeForEntryData",
    "mappedFileSizeForEntryIndex",
    "enablePushToFollower",
    "maxPushTimeOutMs",
    "maxPendingRequestsNum",
    "maxWaitAckTimeMs",
    "maxPendingCommitIndexNum",
    "maxPendingCommitBytes",
    "maxCommitIndexNum",
    "heartBeatTimeIntervalMs",
    "maxHeartBeatLeak",
    "minVoteIntervalMs",
    "maxVoteIntervalMs",
    "fileReservedHours",
    "deleteWhen",
    "diskSpaceRatioToCheckExpired",
    "diskSpaceRatioToForceClean",
    "enableDiskForceClean",
    "flushFileInterval",
    "checkPointInterval",
    "minConsumedIndexFileCount",
    "enableLeaderElector",
    "preferredLeaderIds",
    "maxLeadershipTransferWaitIndex",
    "minTakeLeadershipVoteIntervalMs",
    "maxTakeLeadershipVoteIntervalMs",
    "isEnableBatchPush",
    "maxBatchPushSize",
    "leadershipTransferWaitTimeout",
    "enableSnapshot",
    "snapshotThreshold",
    "maxSnapshotReservedNum",
    "preferredLeaderId",
    "dividedCommitlogOffset",
    // NettyServerConfig / NettyClientConfig
    "listenPort",
    "bindAddress",
    "serverWorkerThreads",
    "serverCallbackExecutorThreads",
    "serverSelectorThreads",
    "serverOnewaySemaphoreValue",
    "serverAsyncSemaphoreValue",
    "serverChannelMaxIdleTimeSeconds",
    "serverSocketSndBufSize",
    "serverSocketRcvBufSize",
    "writeBufferHighWaterMark",
    "writeBufferLowWaterMark",
    "serverSocketBacklog",
    "serverPooledByteBufAllocatorEnable",
    "enableShutdownGracefully",
    "shutdownWaitTimeSeconds",
    "useEpollNativeSelector",
    "clientWorkerThreads",
    "clientOnewaySemaphoreValue",
    "clientAsyncSemaphoreValue",
    "connectTimeoutMillis",
    "channelNotActiveInterval",
    "clientChannelMaxIdleTimeSeconds",
    "clientSocketSndBufSize",
    "clientSocketRcvBufSize",
    "clientPooledByteBufAllocatorEnable",
    "clientCloseSocketIfTimeout",
    "useTLS",
    "disableCallbackExecutor",
    "disableNettyWorkerGroup",
    "maxReconnectIntervalTimeSeconds",
    "enableReconnectForGoAway",
    "enableTransparentRetry",
    "socksProxyConfig",
];

/// Edits (insertions, deletions, substitutions, swaps of two adjacent characters) that
/// turn `a` into `b`, ignoring case; counting stops above `limit` (returns `limit + 1`).
pub fn edit_distance(a: &str, b: &str, limit: usize) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    if a.len().abs_diff(b.len()) > limit {
        return limit + 1;
    }
    // Optimal string alignment distance, three rows.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()].min(limit + 1)
}

/// For a key that is neither one rmqraft reads (`known`) nor a RocketMQ broker key: the
/// known key it is most likely a misspelling of (one or two edits away), if any.
pub fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    if key.len() < 4 || known.contains(&key) || ROCKETMQ_KEYS.contains(&key) {
        return None;
    }
    known
        .iter()
        .map(|k| (edit_distance(key, k, 2), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Warns (log::warn, once per key and process) about every key of `props` that looks
/// like a misspelling of one of `known`.
pub fn warn_misspelt_keys(props: &HashMap<String, String>, known: &[&str]) {
    static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut keys: Vec<&String> = props.keys().collect();
    keys.sort();
    for key in keys {
        if let Some(hint) = suggest(key, known) {
            let first = WARNED
                .get_or_init(Mutex::default)
                .lock()
                .map(|mut w| w.insert(key.clone()))
                .unwrap_or(true);
            if first {
                log::warn!("{key}: unknown key; did you mean {hint}?");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ENGINE_KEYS, GROUP_KEYS};

    fn all_known() -> Vec<&'static str> {
        ENGINE_KEYS.iter().chain(GROUP_KEYS).copied().collect()
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("flushDiskTpye", "flushDiskType", 2), 1);
        assert_eq!(edit_distance("flushdisktype", "flushDiskType", 2), 0);
        assert_eq!(edit_distance("dLegerPeer", "dLegerPeers", 2), 1);
        assert_eq!(edit_distance("dLegerSlefID", "dLegerSelfId", 2), 1);
        assert_eq!(edit_distance("abc", "xyz", 2), 3);
        assert_eq!(edit_distance("", "abcdef", 2), 3);
    }

    #[test]
    fn typos_get_a_suggestion() {
        let known = all_known();
        for (typo, meant) in [
            ("flushDiskTpye", "flushDiskType"),
            ("flushDisktype", "flushDiskType"),
            ("dLegerPeer", "dLegerPeers"),
            ("dLedgerPeers", "dLegerPeers"),
            ("mappedFileSizeComitLog", "mappedFileSizeCommitLog"),
            ("heartBeatTimeIntervalMS", "heartBeatTimeIntervalMs"),
            ("storePathRootDirr", "storePathRootDir"),
            ("dLegerSecrt", "dLegerSecret"),
        ] {
            assert_eq!(suggest(typo, &known), Some(meant), "{typo}");
        }
        assert_eq!(suggest("somethingElseEntirely", &known), None);
        assert_eq!(suggest("flushDiskType", &known), None);
    }

    #[test]
    fn rocketmq_broker_keys_never_get_one() {
        let known = all_known();
        let quiet: Vec<_> = ROCKETMQ_KEYS
            .iter()
            .filter_map(|k| suggest(k, &known).map(|s| (*k, s)))
            .collect();
        assert!(quiet.is_empty(), "{quiet:?}");
        // A typical DLedger broker.conf: nothing to warn about.
        for key in [
            "brokerClusterName",
            "brokerName",
            "brokerId",
            "brokerIP1",
            "brokerIP2",
            "namesrvAddr",
            "listenPort",
            "brokerRole",
            "deleteWhen",
            "fileReservedTime",
            "sendMessageThreadPoolNums",
            "storePathCommitLog",
            "enableDLegerCommitLog",
            "autoCreateTopicEnable",
            "flushIntervalConsumeQueue",
            "maxMessageSize",
        ] {
            assert_eq!(suggest(key, &known), None, "{key}");
        }
    }
}
