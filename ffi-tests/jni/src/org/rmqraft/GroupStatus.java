package org.rmqraft;

/** A member's view of its group (the C ABI's rmqraft_group_state). */
public final class GroupStatus {
    private final Role role;
    private final int selfPeer;
    private final int leaderPeer;
    private final long term;
    private final long firstIndex;
    private final long lastIndex;
    private final long commitIndex;
    private final long flushedIndex;

    GroupStatus(long[] raw) {
        this.role = Role.fromCode((int) raw[0]);
        this.selfPeer = (int) raw[1];
        this.leaderPeer = (int) raw[2];
        this.term = raw[3];
        this.firstIndex = raw[4];
        this.lastIndex = raw[5];
        this.commitIndex = raw[6];
        this.flushedIndex = raw[7];
    }

    public Role role() { return role; }
    /** Position of dLegerSelfId in dLegerPeers. */
    public int selfPeer() { return selfPeer; }
    /** Position of the known leader in dLegerPeers, -1 when none is known. */
    public int leaderPeer() { return leaderPeer; }
    public long term() { return term; }
    /** First retained entry; 0 when the log is empty. */
    public long firstIndex() { return firstIndex; }
    /** Last entry in the local log; 0 when empty. */
    public long lastIndex() { return lastIndex; }
    /** Highest entry known committed. */
    public long commitIndex() { return commitIndex; }
    /** Highest entry durable on this member's disk. */
    public long flushedIndex() { return flushedIndex; }

    @Override
    public String toString() {
        return "GroupStatus{role=" + role + ", selfPeer=" + selfPeer + ", leaderPeer=" + leaderPeer + ", term=" + term
                + ", first=" + firstIndex + ", last=" + lastIndex + ", commit=" + commitIndex + ", flushed="
                + flushedIndex + "}";
    }
}
