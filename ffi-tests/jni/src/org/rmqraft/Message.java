package org.rmqraft;

import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A message to send, built step by step:
 * {@code new Message("TopicTest", body).tags("TagA").keys("m600000")}. Not thread-safe while
 * being built; {@link Group#send} copies it.
 */
public final class Message {
    private final String topic;
    private final byte[] body;
    private String tags;
    private String keys;
    private final Map<String, String> properties = new LinkedHashMap<>();
    private int queueId = -1;
    private int flag;
    private int delayLevel;

    public Message(String topic, byte[] body) {
        if (topic == null) throw new NullPointerException("topic");
        if (body == null) throw new NullPointerException("body");
        this.topic = topic;
        this.body = body;
    }

    public Message(String topic, String body) {
        this(topic, body.getBytes(StandardCharsets.UTF_8));
    }

    public Message tags(String tags) { this.tags = tags; return this; }
    /** Space-separated keys; each is indexed ({@link Group#queryByKey}). */
    public Message keys(String keys) { this.keys = keys; return this; }
    /** A user property; UNIQ_KEY sets the message id. */
    public Message property(String name, String value) {
        if (name.isEmpty() || name.contains("=") || name.contains("\n") || value.contains("\n")) {
            throw new IllegalArgumentException("property names may not be empty or hold '=' or newlines; values no newlines");
        }
        properties.put(name, value);
        return this;
    }
    /** -1 (the default): the library picks a write queue. */
    public Message queue(int queueId) { this.queueId = queueId; return this; }
    public Message flag(int flag) { this.flag = flag; return this; }
    public Message delayLevel(int delayLevel) { this.delayLevel = delayLevel; return this; }

    public String topic() { return topic; }
    public byte[] body() { return body; }
    public String tags() { return tags; }
    public String keys() { return keys; }
    public int queueId() { return queueId; }
    public int flag() { return flag; }
    public int delayLevel() { return delayLevel; }

    /** "name=value\n" lines, as the C ABI takes them. */
    String propertyLines() {
        StringBuilder b = new StringBuilder();
        for (Map.Entry<String, String> e : properties.entrySet()) b.append(e.getKey()).append('=').append(e.getValue()).append('\n');
        return b.toString();
    }
}
