package org.rmqraft;

import java.util.Collections;
import java.util.List;

/** What {@link Group#pull} found: matching messages in queue order and where to pull next. */
public final class PullResult {
    private final List<MessageView> messages;
    private final long nextOffset;

    PullResult(List<MessageView> messages, long nextOffset) {
        this.messages = Collections.unmodifiableList(messages);
        this.nextOffset = nextOffset;
    }

    public List<MessageView> messages() { return messages; }
    /** Where the next pull starts (the queue's max when the pull was past the end). */
    public long nextOffset() { return nextOffset; }
}
