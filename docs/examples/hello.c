/* hello.c: one member of a group on this machine appends an entry and reads it back.
 * Build: cc hello.c $(pkg-config --cflags --libs rmqraft) -o hello; run: ./hello [PORT] */
#define _XOPEN_SOURCE 700
#include <rmqraft.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints what failed with the library's detail; returns the exit status. */
static int failed(const char *what, rmqraft_result r) {
    char detail[512];
    rmqraft_last_error(detail, sizeof detail);
    fprintf(stderr, "hello: %s: %s: %s\n", what, rmqraft_result_name(r), detail);
    return 1;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

int main(int argc, char **argv) {
    const char *port = argc > 1 ? argv[1] : "40911";
    char store[] = "/tmp/rmqraft-hello-XXXXXX", props[512], back[16];
    rmqraft_engine *engine = NULL;
    rmqraft_group *group = NULL;
    rmqraft_entry_meta meta, read_meta;
    rmqraft_result r;
    int32_t leader;
    size_t len;
    int status = 1;

    if (!mkdtemp(store)) {
        perror("hello: mkdtemp");
        return 1;
    }
    /* A one-member group leads itself. mappedFileSizeCommitLog: each segment file is
     * preallocated at this size (1 GiB by default, plus a spare one made ahead of
     * time); 4 MiB is plenty for a try-out. */
    snprintf(props, sizeof props,
             "dLegerGroup = HelloGroup\n"
             "dLegerPeers = n0-127.0.0.1:%s\n"
             "dLegerSelfId = n0\n"
             "storePathRootDir = %s\n"
             "mappedFileSizeCommitLog = 4194304\n",
             port, store);
    if ((r = rmqraft_engine_open(NULL, &engine)) != RMQRAFT_OK) {
        status = failed("rmqraft_engine_open", r);
    } else if ((r = rmqraft_group_open(engine, props, &group)) != RMQRAFT_OK) {
        status = failed("rmqraft_group_open", r); /* e.g. RMQRAFT_ERR_IO: the port is taken */
    } else if ((r = rmqraft_group_wait_leader(group, 10000, &leader)) != RMQRAFT_OK) {
        status = failed("rmqraft_group_wait_leader", r);
    } else if ((r = rmqraft_group_append(group, (const uint8_t *)"hello", 5, 3000, &meta)) != RMQRAFT_OK) {
        status = failed("rmqraft_group_append", r); /* RMQRAFT_ERR_NOT_LEADER: ask the leader */
    } else if ((r = rmqraft_group_read(group, meta.index, (uint8_t *)back, sizeof back, &len, &read_meta)) !=
               RMQRAFT_OK) {
        status = failed("rmqraft_group_read", r);
    } else if (len != 5 || memcmp(back, "hello", 5) != 0) {
        fprintf(stderr, "hello: entry %llu reads back %zu other bytes\n", (unsigned long long)meta.index, len);
    } else {
        printf("hello: entry %llu (term %llu) committed and read back: %.*s\n", (unsigned long long)meta.index,
               (unsigned long long)meta.term, (int)len, back);
        status = 0;
    }
    rmqraft_group_close(group); /* NULL is a no-op */
    rmqraft_engine_close(engine);
    nftw(store, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return status;
}
