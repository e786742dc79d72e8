package org.rmqraft;

import java.nio.charset.StandardCharsets;
import java.util.List;

/** A topic: read and write queue numbers and RocketMQ's perm bits (2 write, 4 read). */
public final class TopicConfig {
    private final String name;
    private final int readQueues;
    private final int writeQueues;
    private final int perm;

    TopicConfig(String name, int readQueues, int writeQueues, int perm) {
        this.name = name;
        this.readQueues = readQueues;
        this.writeQueues = writeQueues;
        this.perm = perm;
    }

    /** Called from native code. */
    static void addTo(List<TopicConfig> out, byte[] name, int readQueues, int writeQueues, int perm) {
        out.add(new TopicConfig(new String(name, StandardCharsets.UTF_8), readQueues, writeQueues, perm));
    }

    public String name() { return name; }
    public int readQueues() { return readQueues; }
    public int writeQueues() { return writeQueues; }
    public int perm() { return perm; }

    @Override
    public String toString() {
        return "TopicConfig{" + name + ", read=" + readQueues + ", write=" + writeQueues + ", perm=" + perm + "}";
    }
}
