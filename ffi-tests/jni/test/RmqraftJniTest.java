import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;
import java.util.stream.Stream;

import org.rmqraft.Engine;
import org.rmqraft.EntryMeta;
import org.rmqraft.Group;
import org.rmqraft.GroupStatus;
import org.rmqraft.RmqraftException;
import org.rmqraft.Role;

/**
 * The Java wrapper as a broker would use it: one JVM, one engine, the three members of a
 * group; appends, async appends, reads on every member, messages (send, sendAsync,
 * pull, lookups, topics, offsets), role changes seen in Java,
 * leadership transfer, failover and close. Run with -ea; exits non-zero on failure.
 */
public final class RmqraftJniTest {
    static final long TIME_SCALE = Long.getLong("rmqraft.test.timeScale", 1L);

    /** A role change as a listener saw it, with the thread it arrived on. */
    static final class Seen {
        final int member;
        final Role role;
        final long term;
        final int leader;
        final String thread;
        final boolean daemon;

        Seen(int member, Role role, long term, int leader) {
            this.member = member;
            this.role = role;
            this.term = term;
            this.leader = leader;
            this.thread = Thread.currentThread().getName();
            this.daemon = Thread.currentThread().isDaemon();
        }
    }

    static final List<Seen> seen = new CopyOnWriteArrayList<>();

    static void waitUntil(String what, long timeoutMs, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs * TIME_SCALE);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) throw new AssertionError("timed out waiting for " + what);
            Thread.sleep(2); // between two polls of the condition
        }
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    static String props(String dir, int[] ports, int self) {
        StringBuilder peers = new StringBuilder();
        for (int i = 0; i < ports.length; i++) {
            peers.append(i == 0 ? "" : ";").append("n").append(i).append("-127.0.0.1:").append(ports[i]);
        }
        return "# broker.conf of member n" + self + "\n"
                + "brokerClusterName = JavaCluster\n"
                + "dLegerGroup = JavaGroup\n"
                + "dLegerPeers = " + peers + "\n"
                + "dLegerSelfId = n" + self + "\n"
                + "storePathRootDir = " + dir + "\n"
                + "mappedFileSizeCommitLog = 4194304\n"
                + "flushDiskType = SYNC_FLUSH\n";
    }

    static Group[] members = new Group[3];

    static int leaderOf() {
        for (int i = 0; i < 3; i++) {
            if (members[i] == null) continue;
            if (members[i].status().role() == Role.LEADER) return i;
        }
        return -1;
    }

    static int waitLeader(long timeoutMs) throws InterruptedException {
        int[] found = {-1};
        waitUntil("a leader", timeoutMs, () -> (found[0] = leaderOf()) >= 0);
        return found[0];
    }

    static void waitCommitted(Group g, long index) throws InterruptedException {
        waitUntil("commit of " + index, 10_000, () -> g.status().commitIndex() >= index);
    }

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static int expectCode(Runnable call) {
        try {
            call.run();
        } catch (RmqraftException e) {
            return e.code();
        }
        throw new AssertionError("no RmqraftException thrown");
    }

    static void run(Path dir) throws Exception {
        assert Engine.version().matches("\\d+\\.\\d+\\.\\d+") : Engine.version();
        assert expectCode(() -> new Engine("rmqraftFlusher = mmap\n")) == RmqraftException.CONFIG;

        Engine engine = new Engine("brokerClusterName = JavaCluster\n" + System.getProperty("rmqraft.test.engineProps", ""));
        int[] ports = null;
        for (int attempt = 0; ; attempt++) {
            ports = new int[] {freePort(), freePort(), freePort()};
            try {
                for (int i = 0; i < 3; i++) members[i] = engine.openGroup(props(dir.toString(), ports, i));
                break;
            } catch (RmqraftException e) {
                for (int i = 0; i < 3; i++) {
                    if (members[i] != null) members[i].close();
                    members[i] = null;
                }
                if (e.code() != RmqraftException.IO || attempt == 7) throw e;
            }
        }
        for (int i = 0; i < 3; i++) {
            final int member = i;
            members[i].setRoleListener((role, term, leader) -> seen.add(new Seen(member, role, term, leader)));
        }
        int[] otherPorts = {freePort(), freePort(), freePort()};
        assert expectCode(() -> engine.openGroup(props(dir.toString(), otherPorts, 0))) == RmqraftException.EXISTS;

        int leader = waitLeader(15_000);
        final int firstLeader = leader;
        // Group.waitLeader: the leader knows itself; every member learns the same leader.
        assert members[leader].waitLeader(1_000) == leader;
        for (int i = 0; i < 3; i++) {
            final int member = i;
            waitUntil("member " + i + " to know the leader", 10_000, () -> members[member].waitLeader(5_000) == firstLeader);
        }
        // A FOLLOWER always names its leader: before one is known a member reports CANDIDATE.
        assert seen.stream().noneMatch(s -> s.role == Role.FOLLOWER && s.leader < 0) : seen;
        waitUntil("the leader's role seen in Java", 5_000,
                () -> seen.stream().anyMatch(s -> s.member == firstLeader && s.role == Role.LEADER));

        // Synchronous appends, read back on every member.
        List<EntryMeta> metas = new ArrayList<>();
        List<byte[]> payloads = new ArrayList<>();
        for (int k = 0; k < 20; k++) {
            byte[] data = utf8("java-entry-" + k + "-" + "y".repeat(k * 100));
            EntryMeta m = members[leader].append(data);
            assert m.index() >= 1;
            assert metas.isEmpty() || m.index() > metas.get(metas.size() - 1).index();
            metas.add(m);
            payloads.add(data);
        }
        byte[] big = new byte[200_000];
        for (int i = 0; i < big.length; i++) big[i] = (byte) (i * 13 + 1);
        metas.add(members[leader].append(big));
        payloads.add(big);
        for (int i = 0; i < 3; i++) {
            waitCommitted(members[i], metas.get(metas.size() - 1).index());
            for (int k = 0; k < metas.size(); k++) {
                assert Arrays.equals(members[i].read(metas.get(k).index()), payloads.get(k)) : "member " + i + " entry " + k;
            }
        }

        // Async appends complete on native threads.
        List<CompletableFuture<EntryMeta>> futures = new ArrayList<>();
        Map<Long, String> asyncThreads = new ConcurrentHashMap<>();
        for (int k = 0; k < 100; k++) {
            futures.add(members[leader].appendAsync(utf8("async-" + k)).whenComplete(
                    (m, e) -> { if (m != null) asyncThreads.put(m.index(), Thread.currentThread().getName()); }));
        }
        CompletableFuture.allOf(futures.toArray(new CompletableFuture<?>[0])).get(20 * TIME_SCALE, TimeUnit.SECONDS);
        for (int k = 0; k < futures.size(); k++) {
            EntryMeta m = futures.get(k).get();
            assert new String(members[leader].read(m.index()), StandardCharsets.UTF_8).equals("async-" + k);
        }
        // A future the library completed before whenComplete was attached runs its action
        // on the attaching thread (main); every other one runs on a native callback thread.
        assert asyncThreads.values().stream().anyMatch(n -> n.startsWith("rmqraft-cb:")) : asyncThreads;
        assert asyncThreads.values().stream().allMatch(n -> n.startsWith("rmqraft-cb:") || n.equals("main")) : asyncThreads;

        // Messages: topics, sends, pulls, lookups and consumer offsets; read on a follower.
        {
            Group lead = members[leader];
            Group fol = members[(leader + 1) % 3];
            lead.updateTopic("JavaTopic", 4, 4, 6);
            assert lead.topics().stream().anyMatch(t -> t.name().equals("JavaTopic") && t.readQueues() == 4
                    && t.writeQueues() == 4 && t.perm() == 6) : lead.topics();
            List<org.rmqraft.SendResult> sent = new ArrayList<>();
            for (int k = 0; k < 10; k++) {
                sent.add(lead.send(new org.rmqraft.Message("JavaTopic", "java-" + k).tags(k % 2 == 0 ? "even" : "odd")
                        .keys("jk" + k + " all").property("seq", Integer.toString(k)).queue(2)));
            }
            assert sent.get(9).queueOffset() == 9 && sent.get(9).queueId() == 2 && sent.get(9).msgId().length() == 32;
            org.rmqraft.SendResult async = lead.sendAsync(new org.rmqraft.Message("JavaTopic", "java-async").queue(2))
                    .get(20 * TIME_SCALE, TimeUnit.SECONDS);
            assert async.queueOffset() == 10 : async;
            assert expectCode(() -> fol.send(new org.rmqraft.Message("JavaTopic", "nope"))) == RmqraftException.NOT_LEADER;
            try {
                fol.sendAsync(new org.rmqraft.Message("JavaTopic", "nope")).get(5, TimeUnit.SECONDS);
                throw new AssertionError("a follower accepted an async send");
            } catch (ExecutionException e) {
                assert ((RmqraftException) e.getCause()).code() == RmqraftException.NOT_LEADER;
            }
            waitUntil("the follower to hold every message", 15_000, () -> fol.queueOffsets("JavaTopic", 2)[1] == 11);
            org.rmqraft.PullResult all = fol.pull("JavaTopic", 2, 0, 64);
            assert all.nextOffset() == 11 && all.messages().size() == 11 : all.messages();
            for (int k = 0; k < 10; k++) {
                org.rmqraft.MessageView m = all.messages().get(k);
                assert m.bodyString().equals("java-" + k) && m.queueOffset() == k && m.msgId().equals(sent.get(k).msgId());
                assert m.properties().get("seq").equals(Integer.toString(k)) && m.tags().equals(k % 2 == 0 ? "even" : "odd");
                assert m.commitlogOffset() == sent.get(k).commitlogOffset() && m.record().length > m.body().length;
            }
            assert fol.pull("JavaTopic", 2, 0, 64, "odd").messages().size() == 5;
            org.rmqraft.PullResult end = fol.pull("JavaTopic", 2, 1_000, 64);
            assert end.messages().isEmpty() && end.nextOffset() == 11;
            assert fol.queryByKey("JavaTopic", "jk3", 8).get(0).bodyString().equals("java-3");
            assert fol.queryByKey("JavaTopic", "all", 4).size() == 4;
            assert fol.viewById(sent.get(5).offsetMsgId()).bodyString().equals("java-5");
            assert fol.viewById(sent.get(5).msgId()).bodyString().equals("java-5");
            assert expectCode(() -> fol.viewById("0123456789ABCDEF0123456789ABCDEF")) == RmqraftException.NOT_FOUND;
            assert expectCode(() -> fol.pull("NoSuchTopic", 0, 0, 8)) == RmqraftException.NO_TOPIC;
            assert lead.fetchOffset("java-cg", "JavaTopic", 2) == -1;
            lead.commitOffset("java-cg", "JavaTopic", 2, 6);
            assert lead.fetchOffset("java-cg", "JavaTopic", 2) == 6;
            waitUntil("the offset on the follower", 15_000, () -> fol.fetchOffset("java-cg", "JavaTopic", 2) == 6);
            lead.deleteTopic("JavaTopic");
            assert lead.topics().stream().noneMatch(t -> t.name().equals("JavaTopic"));
            assert expectCode(() -> lead.deleteTopic("JavaTopic")) == RmqraftException.NO_TOPIC;
        }

        // Failures carry their code.
        int follower = (leader + 1) % 3;
        assert expectCode(() -> members[follower].append(utf8("nope"))) == RmqraftException.NOT_LEADER;
        Group lead = members[leader];
        assert expectCode(() -> lead.append(new byte[0])) == RmqraftException.INVALID_ARGUMENT;
        assert expectCode(() -> lead.read(1_000_000)) == RmqraftException.NOT_FOUND;
        try {
            members[follower].appendAsync(utf8("nope")).get(5, TimeUnit.SECONDS);
            throw new AssertionError("a follower accepted an async append");
        } catch (ExecutionException e) {
            assert ((RmqraftException) e.getCause()).code() == RmqraftException.NOT_LEADER;
        }
        // Exactly-once appends: a resend answers with the original, a gap is refused.
        long producer = 0x5eedL << 32 | 7;
        EntryMeta once = lead.appendIdempotent(producer, 0, utf8("once"));
        EntryMeta again = lead.appendIdempotent(producer, 0, utf8("once"));
        assert once.index() == again.index() && once.term() == again.term() && once.pos() == again.pos() : again;
        assert new String(lead.read(once.index()), StandardCharsets.UTF_8).equals("once");
        assert expectCode(() -> lead.appendIdempotent(producer, 5, utf8("gap"))) == RmqraftException.OUT_OF_ORDER;
        assert expectCode(() -> lead.appendIdempotent(0, 0, utf8("x"))) == RmqraftException.INVALID_ARGUMENT;
        assert lead.appendIdempotent(producer, 1, utf8("twice")).index() > once.index();
        GroupStatus fs = members[follower].status();
        assert fs.role() == Role.FOLLOWER && fs.leaderPeer() == leader && fs.selfPeer() == follower : fs;

        // Leadership transfer, seen by the new leader's listener on a daemon thread.
        members[leader].transferLeadership("n" + follower);
        waitUntil("transfer seen in Java", 10_000,
                () -> seen.stream().anyMatch(s -> s.member == follower && s.role == Role.LEADER));
        assert members[follower].status().role() == Role.LEADER;
        Seen transferSeen = seen.stream().filter(s -> s.member == follower && s.role == Role.LEADER).findFirst().get();
        assert transferSeen.daemon && transferSeen.thread.startsWith("rmqraft-cb:") : transferSeen.thread;
        leader = follower;

        // Failover: close the leader's member; another takes over and accepts appends.
        final int closed = leader;
        members[closed].close();
        members[closed].close(); // idempotent
        assert expectCode(() -> members[closed].status()) == RmqraftException.CLOSED;
        members[closed] = null;
        int next = waitLeader(15_000);
        assert next != closed;
        waitUntil("failover seen in Java", 10_000,
                () -> seen.stream().anyMatch(s -> s.member == next && s.role == Role.LEADER && s.term > transferSeen.term));
        EntryMeta after = members[next].append(utf8("after failover"));
        assert after.term() > metas.get(0).term();
        for (int i = 0; i < 3; i++) {
            if (members[i] == null) continue;
            waitCommitted(members[i], after.index());
            assert new String(members[i].read(after.index()), StandardCharsets.UTF_8).equals("after failover");
            assert Arrays.equals(members[i].read(metas.get(0).index()), payloads.get(0));
        }

        // Removing a listener: no more events from that member.
        members[next].setRoleListener(null);

        // Closing the engine closes the members; the objects then say CLOSED.
        engine.close();
        engine.close();
        for (int i = 0; i < 3; i++) {
            if (members[i] == null) continue;
            final Group g = members[i];
            assert expectCode(g::status) == RmqraftException.CLOSED;
            assert g.appendAsync(utf8("late")).isCompletedExceptionally();
            g.close();
        }
        // Native callback threads ended with the engine and detached from the JVM.
        waitUntil("callback threads to detach", 5_000, () -> Thread.getAllStackTraces().keySet().stream()
                .noneMatch(t -> t.getName().startsWith("rmqraft-cb:")));
    }

    public static void main(String[] args) throws Exception {
        boolean assertions = false;
        assert assertions = true;
        if (!assertions) {
            System.err.println("run with -ea");
            System.exit(2);
        }
        Path dir = Files.createTempDirectory("rmqraft-jtest-");
        int status = 0;
        try {
            run(dir);
            System.err.println("Java JNI test: ok (" + seen.size() + " role changes seen)");
        } catch (Throwable t) {
            t.printStackTrace();
            System.err.println("Java JNI test: FAILED");
            status = 1;
        } finally {
            try (Stream<Path> paths = Files.walk(dir)) {
                paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
        System.exit(status);
    }
}
