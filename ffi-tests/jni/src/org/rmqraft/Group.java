package org.rmqraft;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * One member of a replicated commitlog group. Thread-safe: calls may run from any thread
 * at once; {@link #close()} waits for calls in progress, and calls that find the member
 * closing or closed throw {@link RmqraftException} with code {@link RmqraftException#CLOSED}.
 */
public final class Group implements AutoCloseable {
    /** The timeout of {@link #append(byte[])} and {@link #transferLeadership(String)}. */
    public static final long DEFAULT_TIMEOUT_MS = 10_000;

    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private long handle; // guarded by lock

    Group(long handle) {
        this.handle = handle;
    }

    /** The handle for one call; the read lock is held until {@link #release()}. */
    private long acquire() {
        // tryLock, not lock: a callback running while close() holds the write lock (and
        // waits for that callback) must fail fast rather than deadlock.
        if (!lock.readLock().tryLock()) {
            throw new RmqraftException(RmqraftException.CLOSED, "group is closing");
        }
        if (handle == 0) {
            lock.readLock().unlock();
            throw new RmqraftException(RmqraftException.CLOSED, "group is closed");
        }
        return handle;
    }

    private void release() {
        lock.readLock().unlock();
    }

    private static byte[] nonEmpty(byte[] data) {
        if (data == null) throw new NullPointerException("data");
        return data;
    }

    /** Appends on the leader and blocks until committed under the group's flush policy. */
    public EntryMeta append(byte[] data) {
        return append(data, DEFAULT_TIMEOUT_MS);
    }

    public EntryMeta append(byte[] data, long timeoutMs) {
        nonEmpty(data);
        long h = acquire();
        try {
            long[] m = Native.append(h, data, timeoutMs);
            return new EntryMeta(m[0], m[1], m[2]);
        } finally {
            release();
        }
    }

    /**
     * Appends once per (producerId, sequence) and blocks until committed. producerId: any
     * nonzero value, random per producer instance; sequence: 0, 1, 2, ... Resending a pair
     * already in the log returns the original entry's meta and appends nothing; a sequence
     * beyond the next one, or older than the last 1,000, throws RMQRAFT_ERR_OUT_OF_ORDER.
     */
    public EntryMeta appendIdempotent(long producerId, long sequence, byte[] data) {
        return appendIdempotent(producerId, sequence, data, DEFAULT_TIMEOUT_MS);
    }

    public EntryMeta appendIdempotent(long producerId, long sequence, byte[] data, long timeoutMs) {
        nonEmpty(data);
        long h = acquire();
        try {
            long[] m = Native.appendIdempotent(h, producerId, sequence, data, timeoutMs);
            return new EntryMeta(m[0], m[1], m[2]);
        } finally {
            release();
        }
    }

    /**
     * Appends without blocking. The future completes on a native library thread (the one
     * that completes appends: keep dependent stages short or use an executor), with the
     * entry's place or exceptionally with an {@link RmqraftException}; refusals at once
     * (e.g. BUSY, NOT_LEADER) also complete it exceptionally.
     */
    public CompletableFuture<EntryMeta> appendAsync(byte[] data) {
        nonEmpty(data);
        CompletableFuture<EntryMeta> future = new CompletableFuture<>();
        long h;
        try {
            h = acquire();
        } catch (RmqraftException e) {
            future.completeExceptionally(e);
            return future;
        }
        try {
            Native.appendAsync(h, data, future);
        } catch (RmqraftException e) {
            future.completeExceptionally(e);
        } finally {
            release();
        }
        return future;
    }

    /** Called from native code exactly once per accepted async append. */
    @SuppressWarnings("unchecked")
    static void completeAppend(Object future, int code, long index, long term, long pos, String name) {
        CompletableFuture<EntryMeta> f = (CompletableFuture<EntryMeta>) future;
        if (code == 0) {
            f.complete(new EntryMeta(index, term, pos));
        } else {
            f.completeExceptionally(new RmqraftException(code, name + ": async append failed"));
        }
    }

    /** Reads a committed entry held by this member (leader or follower). */
    public byte[] read(long index) {
        long h = acquire();
        try {
            return Native.read(h, index);
        } finally {
            release();
        }
    }

    public GroupStatus status() {
        long h = acquire();
        try {
            return new GroupStatus(Native.status(h));
        } finally {
            release();
        }
    }

    /**
     * Sets the role listener (null removes it). It is called once at once with the current
     * role, then on every change; see {@link RoleListener} for the thread. Once this returns
     * the previous listener is not running and will not run again.
     */
    public synchronized void setRoleListener(RoleListener listener) {
        long h = acquire();
        try {
            Native.setRoleListener(h, listener);
        } finally {
            release();
        }
    }

    /** Called from native code on the role-notification thread. */
    static void dispatchRole(RoleListener listener, int role, long term, int leaderPeer) {
        try {
            listener.onRoleChange(Role.fromCode(role), term, leaderPeer);
        } catch (Throwable t) {
            System.err.println("rmqraft: role listener threw: " + t);
            t.printStackTrace();
        }
    }

    /**
     * Waits until this member knows a leader (itself or a peer), at most {@code timeoutMs};
     * returns the leader's position in dLegerPeers (0-based). Throws RmqraftException with
     * code TIMEOUT when none is known by then.
     */
    public int waitLeader(long timeoutMs) {
        long h = acquire();
        try {
            return Native.waitLeader(h, timeoutMs);
        } finally {
            release();
        }
    }

    /** On the leader: hands leadership to {@code peerId} (e.g. "n1") and waits until it leads. */
    public void transferLeadership(String peerId) {
        transferLeadership(peerId, DEFAULT_TIMEOUT_MS);
    }

    public void transferLeadership(String peerId, long timeoutMs) {
        if (peerId == null) throw new NullPointerException("peerId");
        long h = acquire();
        try {
            Native.transferLeadership(h, Native.utf8(peerId), timeoutMs);
        } finally {
            release();
        }
    }

    // ---- Messages (ABI 0.2): sends, topic and offset changes on the leader; reads on any member.

    /**
     * Sends on the leader and blocks until committed. Throws RmqraftException: NO_TOPIC,
     * NO_PERMISSION, TOO_LARGE, INVALID_ARGUMENT, NOT_LEADER, BUSY (nothing stored) or
     * TIMEOUT, OUTCOME_UNKNOWN (maybe stored).
     */
    public SendResult send(Message m) {
        return send(m, DEFAULT_TIMEOUT_MS);
    }

    public SendResult send(Message m, long timeoutMs) {
        if (m == null) throw new NullPointerException("message");
        long h = acquire();
        try {
            return Native.send(h, Native.utf8(m.topic()), Native.utf8(m.tags()), Native.utf8(m.keys()),
                    Native.utf8(m.propertyLines()), m.body(), m.queueId(), m.flag(), m.delayLevel(), timeoutMs);
        } finally {
            release();
        }
    }

    /**
     * Sends without blocking. The future completes on a native library thread (keep
     * dependent stages short or use an executor), or exceptionally with an
     * RmqraftException; refusals at once (NOT_LEADER, TOO_LARGE, ...) complete it
     * exceptionally too. OUTCOME_UNKNOWN: the member closed with the send in flight.
     */
    public CompletableFuture<SendResult> sendAsync(Message m) {
        if (m == null) throw new NullPointerException("message");
        CompletableFuture<SendResult> future = new CompletableFuture<>();
        long h;
        try {
            h = acquire();
        } catch (RmqraftException e) {
            future.completeExceptionally(e);
            return future;
        }
        try {
            Native.sendAsync(h, Native.utf8(m.topic()), Native.utf8(m.tags()), Native.utf8(m.keys()),
                    Native.utf8(m.propertyLines()), m.body(), m.queueId(), m.flag(), m.delayLevel(), future);
        } catch (RmqraftException e) {
            future.completeExceptionally(e);
        } finally {
            release();
        }
        return future;
    }

    /** Called from native code exactly once per accepted async send. */
    @SuppressWarnings("unchecked")
    static void completeSend(Object future, int code, SendResult result, String name) {
        CompletableFuture<SendResult> f = (CompletableFuture<SendResult>) future;
        if (code == 0) {
            f.complete(result);
        } else {
            f.completeExceptionally(new RmqraftException(code, name + ": async send failed"));
        }
    }

    /** All messages of one queue from {@code offset}, at most {@code maxMessages}. */
    public PullResult pull(String topic, int queueId, long offset, int maxMessages) {
        return pull(topic, queueId, offset, maxMessages, null);
    }

    /**
     * Pulls committed messages of one queue from {@code offset}: at most {@code maxMessages}
     * (1..1024) matching {@code tagExpression} (null or "*" for all, else "TagA || TagB"),
     * in queue order. Past the end: no messages, nextOffset = the queue's max. Does not
     * wait for new messages.
     */
    public PullResult pull(String topic, int queueId, long offset, int maxMessages, String tagExpression) {
        if (topic == null) throw new NullPointerException("topic");
        List<MessageView> out = new ArrayList<>();
        long h = acquire();
        try {
            long next = Native.pull(h, Native.utf8(topic), queueId, offset, maxMessages, Native.utf8(tagExpression), out);
            return new PullResult(out, next);
        } finally {
            release();
        }
    }

    /** {min, max} offsets of one queue; max is the next offset to be written. */
    public long[] queueOffsets(String topic, int queueId) {
        if (topic == null) throw new NullPointerException("topic");
        long h = acquire();
        try {
            return Native.queueOffsets(h, Native.utf8(topic), queueId);
        } finally {
            release();
        }
    }

    /** Messages of {@code topic} with {@code key} among their keys, newest first (mqadmin queryMsgByKey). */
    public List<MessageView> queryByKey(String topic, String key, int maxMessages) {
        return queryByKey(topic, key, maxMessages, 0, 0);
    }

    /** As above, stored within [beginMs, endMs] (0 = open). */
    public List<MessageView> queryByKey(String topic, String key, int maxMessages, long beginMs, long endMs) {
        if (topic == null) throw new NullPointerException("topic");
        if (key == null) throw new NullPointerException("key");
        List<MessageView> out = new ArrayList<>();
        long h = acquire();
        try {
            Native.queryByKey(h, Native.utf8(topic), Native.utf8(key), maxMessages, beginMs, endMs, out);
            return out;
        } finally {
            release();
        }
    }

    /**
     * The message with this id: an offset msg id of this group, else a UNIQ_KEY (mqadmin
     * queryMsgById). Throws RmqraftException NOT_FOUND when neither names one here.
     */
    public MessageView viewById(String msgId) {
        if (msgId == null) throw new NullPointerException("msgId");
        List<MessageView> out = new ArrayList<>();
        long h = acquire();
        try {
            Native.viewById(h, Native.utf8(msgId), out);
            return out.get(0);
        } finally {
            release();
        }
    }

    /** Creates or updates a topic (perm: 2 write, 4 read, 6 both), replicated. */
    public void updateTopic(String topic, int readQueues, int writeQueues, int perm) {
        updateTopic(topic, readQueues, writeQueues, perm, DEFAULT_TIMEOUT_MS);
    }

    public void updateTopic(String topic, int readQueues, int writeQueues, int perm, long timeoutMs) {
        if (topic == null) throw new NullPointerException("topic");
        long h = acquire();
        try {
            Native.topicUpdate(h, Native.utf8(topic), readQueues, writeQueues, perm, timeoutMs);
        } finally {
            release();
        }
    }

    /** Deletes a topic with its queues and consumer offsets. NO_TOPIC when it does not exist. */
    public void deleteTopic(String topic) {
        deleteTopic(topic, DEFAULT_TIMEOUT_MS);
    }

    public void deleteTopic(String topic, long timeoutMs) {
        if (topic == null) throw new NullPointerException("topic");
        long h = acquire();
        try {
            Native.topicDelete(h, Native.utf8(topic), timeoutMs);
        } finally {
            release();
        }
    }

    /** Every topic this member knows, by name. */
    public List<TopicConfig> topics() {
        List<TopicConfig> out = new ArrayList<>();
        long h = acquire();
        try {
            Native.topicList(h, out);
            return out;
        } finally {
            release();
        }
    }

    /** Commits a consumer group's next offset for a queue (replicated, on the leader). */
    public void commitOffset(String consumerGroup, String topic, int queueId, long offset) {
        commitOffset(consumerGroup, topic, queueId, offset, DEFAULT_TIMEOUT_MS);
    }

    /** As above; a zero timeout only queues the commit. */
    public void commitOffset(String consumerGroup, String topic, int queueId, long offset, long timeoutMs) {
        if (consumerGroup == null) throw new NullPointerException("consumerGroup");
        if (topic == null) throw new NullPointerException("topic");
        if (offset < 0) throw new IllegalArgumentException("offset " + offset + " is negative");
        long h = acquire();
        try {
            Native.offsetCommit(h, Native.utf8(consumerGroup), Native.utf8(topic), queueId, offset, timeoutMs);
        } finally {
            release();
        }
    }

    /** The committed next offset of a consumer group for a queue; -1 when it has none. */
    public long fetchOffset(String consumerGroup, String topic, int queueId) {
        if (consumerGroup == null) throw new NullPointerException("consumerGroup");
        if (topic == null) throw new NullPointerException("topic");
        long h = acquire();
        try {
            return Native.offsetFetch(h, Native.utf8(consumerGroup), Native.utf8(topic), queueId);
        } finally {
            release();
        }
    }

    /**
     * Closes the member: stops its threads, flushes, frees. Pending async appends complete
     * with CLOSED before it returns; no listener runs afterwards. Idempotent. Must not be
     * called from a listener or an async-append completion.
     */
    @Override
    public void close() {
        lock.writeLock().lock();
        try {
            long h = handle;
            handle = 0;
            Native.groupClose(h);
        } finally {
            lock.writeLock().unlock();
        }
    }
}
