package org.rmqraft;

import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** A stored message as a pull or lookup returns it: a copy, valid for as long as it is kept. */
public final class MessageView {
    private final String topic;
    private final String tags;
    private final String keys;
    private final String msgId;
    private final String offsetMsgId;
    private final Map<String, String> properties;
    private final byte[] body;
    private final byte[] record;
    private final int queueId;
    private final long queueOffset;
    private final long commitlogOffset;
    private final long bornTimestamp;
    private final long storeTimestamp;
    private final int flag;
    private final int reconsumeTimes;

    private MessageView(byte[] topic, byte[] tags, byte[] keys, byte[] msgId, byte[] offsetMsgId, byte[] properties,
            byte[] body, byte[] record, int queueId, long queueOffset, long commitlogOffset, long bornTimestamp,
            long storeTimestamp, int flag, int reconsumeTimes) {
        this.topic = str(topic);
        this.tags = str(tags);
        this.keys = str(keys);
        this.msgId = str(msgId);
        this.offsetMsgId = str(offsetMsgId);
        Map<String, String> p = new LinkedHashMap<>();
        for (String line : str(properties).split("\n")) {
            int eq = line.indexOf('=');
            if (eq > 0) p.put(line.substring(0, eq), line.substring(eq + 1));
        }
        this.properties = Collections.unmodifiableMap(p);
        this.body = body;
        this.record = record;
        this.queueId = queueId;
        this.queueOffset = queueOffset;
        this.commitlogOffset = commitlogOffset;
        this.bornTimestamp = bornTimestamp;
        this.storeTimestamp = storeTimestamp;
        this.flag = flag;
        this.reconsumeTimes = reconsumeTimes;
    }

    private static String str(byte[] b) {
        return new String(b, StandardCharsets.UTF_8);
    }

    /** Called from native code, once per message, on the calling thread. */
    static void addTo(List<MessageView> out, byte[] topic, byte[] tags, byte[] keys, byte[] msgId, byte[] offsetMsgId,
            byte[] properties, byte[] body, byte[] record, int queueId, long queueOffset, long commitlogOffset,
            long bornTimestamp, long storeTimestamp, int flag, int reconsumeTimes) {
        out.add(new MessageView(topic, tags, keys, msgId, offsetMsgId, properties, body, record, queueId, queueOffset,
                commitlogOffset, bornTimestamp, storeTimestamp, flag, reconsumeTimes));
    }

    public String topic() { return topic; }
    /** "" when none. */
    public String tags() { return tags; }
    /** Space-separated; "" when none. */
    public String keys() { return keys; }
    /** The UNIQ_KEY. */
    public String msgId() { return msgId; }
    public String offsetMsgId() { return offsetMsgId; }
    /** All properties, system ones (TAGS, KEYS, UNIQ_KEY) included. */
    public Map<String, String> properties() { return properties; }
    public byte[] body() { return body.clone(); }
    public String bodyString() { return str(body); }
    /** The stored record, RocketMQ commitlog format. */
    public byte[] record() { return record.clone(); }
    public int queueId() { return queueId; }
    public long queueOffset() { return queueOffset; }
    public long commitlogOffset() { return commitlogOffset; }
    public long bornTimestamp() { return bornTimestamp; }
    public long storeTimestamp() { return storeTimestamp; }
    public int flag() { return flag; }
    public int reconsumeTimes() { return reconsumeTimes; }

    @Override
    public String toString() {
        return "MessageView{topic=" + topic + ", queueId=" + queueId + ", queueOffset=" + queueOffset + ", msgId=" + msgId
                + ", tags=" + tags + ", keys=" + keys + ", body=" + body.length + " bytes}";
    }
}
