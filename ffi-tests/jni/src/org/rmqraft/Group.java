package org.rmqraft;

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
