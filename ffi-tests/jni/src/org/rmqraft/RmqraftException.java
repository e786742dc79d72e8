package org.rmqraft;

/** A failed rmqraft call: the C ABI's result code and the library's detail. */
public class RmqraftException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public static final int INVALID_ARGUMENT = 1;
    public static final int CONFIG = 2;
    public static final int NOT_LEADER = 3;
    public static final int TIMEOUT = 4;
    public static final int IO = 5;
    public static final int CORRUPT = 6;
    public static final int NOT_FOUND = 7;
    public static final int CLOSED = 8;
    public static final int BUSY = 9;
    public static final int TOO_LARGE = 10;
    public static final int BUFFER_TOO_SMALL = 11;
    public static final int EXISTS = 12;
    public static final int PANIC = 13;
    public static final int DISK_FULL = 14;
    public static final int OUT_OF_ORDER = 15;

    private final int code;

    public RmqraftException(int code, String message) {
        super(message);
        this.code = code;
    }

    /** The result code, one of the constants above (the C ABI's rmqraft_result). */
    public int code() {
        return code;
    }
}
