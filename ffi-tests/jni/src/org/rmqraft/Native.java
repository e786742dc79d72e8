package org.rmqraft;

import java.nio.charset.StandardCharsets;

/**
 * The JNI entry points (librmqraft_jni.so). Strings cross as UTF-8 byte arrays (not JNI's
 * modified UTF-8); failures throw {@link RmqraftException}.
 */
final class Native {
    static {
        String path = System.getProperty("rmqraft.jni.path");
        if (path != null && !path.isEmpty()) {
            System.load(path);
        } else {
            System.loadLibrary("rmqraft_jni");
        }
    }

    private Native() {}

    static byte[] utf8(String s) {
        return s == null ? null : s.getBytes(StandardCharsets.UTF_8);
    }

    static native int version();
    static native String versionString();

    static native long engineOpen(byte[] properties);
    static native void engineClose(long engine);

    static native long groupOpen(long engine, byte[] properties);
    static native void groupClose(long group);

    /** Returns {index, term, pos}. */
    static native long[] append(long group, byte[] data, long timeoutMs);

    static native long[] appendIdempotent(long group, long producerId, long sequence, byte[] data, long timeoutMs);
    /** On return without exception, {@link Group#completeAppend} runs exactly once for this future. */
    static native void appendAsync(long group, byte[] data, Object future);
    static native byte[] read(long group, long index);
    /** Returns {role, selfPeer, leaderPeer, term, firstIndex, lastIndex, commitIndex, flushedIndex}. */
    static native long[] status(long group);
    static native void setRoleListener(long group, RoleListener listener);
    static native int waitLeader(long group, long timeoutMs);

    static native void transferLeadership(long group, byte[] peerId, long timeoutMs);

    // Messages (ABI 0.2). Optional strings (tags, keys, properties, tag expression) may be null.
    static native SendResult send(long group, byte[] topic, byte[] tags, byte[] keys, byte[] properties, byte[] body,
            int queueId, int flag, int delayLevel, long timeoutMs);
    /** On return without exception, {@link Group#completeSend} runs exactly once for this future. */
    static native void sendAsync(long group, byte[] topic, byte[] tags, byte[] keys, byte[] properties, byte[] body,
            int queueId, int flag, int delayLevel, Object future);
    /** Adds the messages to {@code out}; returns the next offset. */
    static native long pull(long group, byte[] topic, int queueId, long offset, int maxMessages, byte[] tagExpression,
            java.util.List<MessageView> out);
    /** Returns {min, max}. */
    static native long[] queueOffsets(long group, byte[] topic, int queueId);
    static native void queryByKey(long group, byte[] topic, byte[] key, int maxMessages, long beginMs, long endMs,
            java.util.List<MessageView> out);
    static native void viewById(long group, byte[] msgId, java.util.List<MessageView> out);
    static native void topicUpdate(long group, byte[] topic, int readQueues, int writeQueues, int perm, long timeoutMs);
    static native void topicDelete(long group, byte[] topic, long timeoutMs);
    static native void topicList(long group, java.util.List<TopicConfig> out);
    static native void offsetCommit(long group, byte[] consumerGroup, byte[] topic, int queueId, long offset, long timeoutMs);
    static native long offsetFetch(long group, byte[] consumerGroup, byte[] topic, int queueId);
}
