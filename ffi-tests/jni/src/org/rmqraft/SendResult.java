package org.rmqraft;

import java.nio.charset.StandardCharsets;

/** What a committed send tells: the message's ids, queue and offsets. */
public final class SendResult {
    private final String msgId;
    private final String offsetMsgId;
    private final int queueId;
    private final long queueOffset;
    private final long commitlogOffset;

    SendResult(String msgId, String offsetMsgId, int queueId, long queueOffset, long commitlogOffset) {
        this.msgId = msgId;
        this.offsetMsgId = offsetMsgId;
        this.queueId = queueId;
        this.queueOffset = queueOffset;
        this.commitlogOffset = commitlogOffset;
    }

    /** Called from native code. */
    static SendResult fromNative(byte[] msgId, byte[] offsetMsgId, int queueId, long queueOffset, long commitlogOffset) {
        return new SendResult(new String(msgId, StandardCharsets.UTF_8), new String(offsetMsgId, StandardCharsets.UTF_8),
                queueId, queueOffset, commitlogOffset);
    }

    /** The UNIQ_KEY. */
    public String msgId() { return msgId; }
    /** RocketMQ's offsetMsgId: store host and commitlog offset. */
    public String offsetMsgId() { return offsetMsgId; }
    public int queueId() { return queueId; }
    public long queueOffset() { return queueOffset; }
    public long commitlogOffset() { return commitlogOffset; }

    @Override
    public String toString() {
        return "SendResult{msgId=" + msgId + ", offsetMsgId=" + offsetMsgId + ", queueId=" + queueId + ", queueOffset="
                + queueOffset + ", commitlogOffset=" + commitlogOffset + "}";
    }
}
