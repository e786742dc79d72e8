package org.rmqraft;

/**
 * Told a member's role, the term and the leader's position in dLegerPeers (-1 when
 * unknown): once when set, then on every change. Runs on the member's role-notification
 * thread, a native library thread attached to the JVM as a daemon: return promptly, and do
 * not close the group or its engine from here. Exceptions thrown are logged to stderr and
 * dropped.
 */
@FunctionalInterface
public interface RoleListener {
    void onRoleChange(Role role, long term, int leaderPeer);
}
