package org.rmqraft;

/** A member's role; LEADER is RocketMQ's master, FOLLOWER its slave. */
public enum Role {
    CANDIDATE,
    LEADER,
    FOLLOWER;

    /** From the C ABI's rmqraft_role (0, 1, 2). */
    static Role fromCode(int code) {
        switch (code) {
            case 0: return CANDIDATE;
            case 1: return LEADER;
            case 2: return FOLLOWER;
            default: throw new IllegalArgumentException("unknown role " + code);
        }
    }
}
