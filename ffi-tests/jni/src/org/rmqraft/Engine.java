package org.rmqraft;

/**
 * An rmqraft engine: the listeners, the flusher and the groups opened on it. One per
 * process is typical. Thread-safe; {@link #close()} closes every group still open on it
 * (their {@link Group} objects then throw {@link RmqraftException#CLOSED}).
 */
public final class Engine implements AutoCloseable {
    private final Object lock = new Object();
    private long handle;

    /** Opens an engine from broker.conf text (may be empty). */
    public Engine(String properties) {
        handle = Native.engineOpen(Native.utf8(properties == null ? "" : properties));
    }

    public Engine() {
        this("");
    }

    /** Opens one member of a group from broker.conf text (dLegerGroup, dLegerPeers, ...). */
    public Group openGroup(String properties) {
        if (properties == null) throw new NullPointerException("properties");
        synchronized (lock) {
            if (handle == 0) throw new RmqraftException(RmqraftException.CLOSED, "engine is closed");
            return new Group(Native.groupOpen(handle, Native.utf8(properties)));
        }
    }

    /** The library's version, e.g. "0.1.0". */
    public static String version() {
        return Native.versionString();
    }

    /** Closes every group still open on this engine, stops its threads and frees it. Idempotent. */
    @Override
    public void close() {
        synchronized (lock) {
            long h = handle;
            handle = 0;
            Native.engineClose(h);
        }
    }
}
