// Messages.java: one member of a group on this machine sends RocketMQ messages, pulls them
// back and finds one by key, through the installed rmqraft.jar (docs/EMBEDDING.md, Java).
// Build: javac -cp $PREFIX/share/java/rmqraft.jar Messages.java
// Run:   java -cp $PREFIX/share/java/rmqraft.jar:. -Djava.library.path=$PREFIX/lib Messages [PORT]
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

import org.rmqraft.Engine;
import org.rmqraft.Group;
import org.rmqraft.Message;
import org.rmqraft.MessageView;
import org.rmqraft.PullResult;
import org.rmqraft.RmqraftException;
import org.rmqraft.SendResult;

public final class Messages {
    public static void main(String[] args) throws Exception {
        String port = args.length > 0 ? args[0] : "40911";
        Path store = Files.createTempDirectory("rmqraft-messages-");
        int status = 1;
        // A one-member group leads itself; small segments for a try-out.
        String conf = "dLegerGroup = RaftNode00\n"
                + "dLegerPeers = n0-127.0.0.1:" + port + "\n"
                + "dLegerSelfId = n0\n"
                + "storePathRootDir = " + store + "\n"
                + "mappedFileSizeCommitLog = 4194304\n";
        try (Engine engine = new Engine();
             Group group = engine.openGroup(conf)) {
            group.waitLeader(10_000);
            group.updateTopic("TopicTest", 4, 4, 6);
            SendResult sent = null;
            for (int i = 0; i < 3; i++) {
                sent = group.send(new Message("TopicTest", "hello " + i).tags("TagA").keys("m60000" + i).queue(0));
            }
            PullResult pulled = group.pull("TopicTest", 0, 0, 32);
            MessageView byKey = group.queryByKey("TopicTest", "m600001", 1).get(0);
            MessageView byId = group.viewById(sent.offsetMsgId());
            System.out.println("messages: pulled " + pulled.messages().size() + " (next offset " + pulled.nextOffset()
                    + "), by key: " + byKey.bodyString() + ", by id: " + byId.bodyString());
            status = 0;
        } catch (RmqraftException e) {
            System.err.println("messages: " + e.getMessage() + " (code " + e.code() + ")");
        } finally {
            try (Stream<Path> paths = Files.walk(store)) {
                paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
        System.exit(status);
    }
}
