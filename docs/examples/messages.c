/* messages.c: one member of a group on this machine sends RocketMQ messages, pulls them
 * back and finds one by key. Build: cc messages.c $(pkg-config --cflags --libs rmqraft)
 * -o messages; run: ./messages [PORT] */
#define _XOPEN_SOURCE 700
#include <rmqraft.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failed(const char *what, rmqraft_result r) {
    char detail[512];
    rmqraft_last_error(detail, sizeof detail);
    fprintf(stderr, "messages: %s: %s: %s\n", what, rmqraft_result_name(r), detail);
    return 1;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Runs on the calling thread; the view is valid only during the call. */
static int print_message(void *userdata, const rmqraft_message_view *m) {
    printf("%s: queue %d offset %llu tags %s keys '%s' body %.*s\n", (const char *)userdata, m->queue_id,
           (unsigned long long)m->queue_offset, m->tags, m->keys, (int)m->body_len, (const char *)m->body);
    return 0; /* nonzero stops */
}

int main(int argc, char **argv) {
    const char *port = argc > 1 ? argv[1] : "40911";
    char store[] = "/tmp/rmqraft-messages-XXXXXX", props[512], body[32], keys[32];
    rmqraft_engine *engine = NULL;
    rmqraft_group *group = NULL;
    rmqraft_send_result sent;
    rmqraft_message m;
    rmqraft_result r = RMQRAFT_OK;
    uint64_t next = 0;
    int32_t leader;
    int i, status = 1;

    if (!mkdtemp(store)) {
        perror("messages: mkdtemp");
        return 1;
    }
    snprintf(props, sizeof props,
             "dLegerGroup = RaftNode00\n"
             "dLegerPeers = n0-127.0.0.1:%s\n"
             "dLegerSelfId = n0\n"
             "storePathRootDir = %s\n"
             "mappedFileSizeCommitLog = 4194304\n",
             port, store);
    if ((r = rmqraft_engine_open(NULL, &engine)) != RMQRAFT_OK) {
        status = failed("rmqraft_engine_open", r);
    } else if ((r = rmqraft_group_open(engine, props, &group)) != RMQRAFT_OK) {
        status = failed("rmqraft_group_open", r);
    } else if ((r = rmqraft_group_wait_leader(group, 10000, &leader)) != RMQRAFT_OK) {
        status = failed("rmqraft_group_wait_leader", r);
    } else if ((r = rmqraft_topic_update(group, "TopicTest", 4, 4, 6, 3000)) != RMQRAFT_OK) {
        status = failed("rmqraft_topic_update", r);
    } else {
        for (i = 0; i < 3 && r == RMQRAFT_OK; i++) {
            memset(&m, 0, sizeof m);
            snprintf(body, sizeof body, "hello %d", i);
            snprintf(keys, sizeof keys, "m60000%d", i);
            m.topic = "TopicTest";
            m.tags = "TagA";
            m.keys = keys;
            m.body = (const uint8_t *)body;
            m.body_len = strlen(body);
            m.queue_id = 0;
            r = rmqraft_message_send(group, &m, 3000, &sent); /* committed on OK */
        }
        if (r != RMQRAFT_OK) {
            status = failed("rmqraft_message_send", r);
        } else if ((r = rmqraft_queue_pull(group, "TopicTest", 0, 0, 32, "TagA", print_message, "pull", &next)) !=
                   RMQRAFT_OK) {
            status = failed("rmqraft_queue_pull", r);
        } else if ((r = rmqraft_message_query_by_key(group, "TopicTest", "m600001", 8, 0, 0, print_message, "key")) !=
                   RMQRAFT_OK) {
            status = failed("rmqraft_message_query_by_key", r);
        } else if ((r = rmqraft_message_view_by_id(group, sent.offset_msg_id, print_message, "id")) != RMQRAFT_OK) {
            status = failed("rmqraft_message_view_by_id", r);
        } else {
            printf("messages: next offset %llu, last msg id %s\n", (unsigned long long)next, sent.msg_id);
            status = 0;
        }
    }
    rmqraft_group_close(group);
    rmqraft_engine_close(engine);
    nftw(store, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return status;
}
