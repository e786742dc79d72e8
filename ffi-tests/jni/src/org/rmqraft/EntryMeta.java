package org.rmqraft;

/** Where an entry sits in the group's log: index (from 1), term, byte position. */
public final class EntryMeta {
    private final long index;
    private final long term;
    private final long pos;

    public EntryMeta(long index, long term, long pos) {
        this.index = index;
        this.term = term;
        this.pos = pos;
    }

    public long index() { return index; }
    public long term() { return term; }
    public long pos() { return pos; }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof EntryMeta)) return false;
        EntryMeta m = (EntryMeta) o;
        return index == m.index && term == m.term && pos == m.pos;
    }

    @Override
    public int hashCode() {
        return Long.hashCode(index) * 31 + Long.hashCode(term) * 17 + Long.hashCode(pos);
    }

    @Override
    public String toString() {
        return "EntryMeta{index=" + index + ", term=" + term + ", pos=" + pos + "}";
    }
}
