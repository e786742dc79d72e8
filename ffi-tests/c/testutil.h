/*
 * Helpers shared by the C and C++ tests: failure reporting, deadlines, free loopback ports,
 * temporary store directories and small groups opened on one engine.
 */
#ifndef RMQRAFT_TESTUTIL_H
#define RMQRAFT_TESTUTIL_H

#include "rmqraft.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int g_failures;

static inline void fail_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s:%d: FAILED: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    g_failures++;
}

static inline const char *last_error_text(void) {
    static char buf[1024];
    rmqraft_last_error(buf, sizeof buf);
    return buf;
}

/* In a test function returning void: stop the test when the condition does not hold. */
#define REQUIRE(cond)                                          \
    do {                                                       \
        if (!(cond)) {                                         \
            fail_at(__FILE__, __LINE__, "%s", #cond);          \
            return;                                            \
        }                                                      \
    } while (0)

/* In a test function returning void: stop the test unless `call` returns `expected`. */
#define REQUIRE_RC(expected, call)                                                          \
    do {                                                                                    \
        rmqraft_result rc_ = (call);                                                        \
        if (rc_ != (expected)) {                                                            \
            fail_at(__FILE__, __LINE__, "%s returned %s, expected %s (last error: %s)",     \
                    #call, rmqraft_result_name(rc_), rmqraft_result_name(expected),         \
                    rc_ == RMQRAFT_OK ? "-" : last_error_text());                           \
            return;                                                                         \
        }                                                                                   \
    } while (0)

#define REQUIRE_OK(call) REQUIRE_RC(RMQRAFT_OK, call)

/* Deadlines scale with RMQRAFT_TEST_TIME_SCALE (e.g. 10 under valgrind). */
static inline uint64_t time_scale(void) {
    const char *s = getenv("RMQRAFT_TEST_TIME_SCALE");
    long v = s ? strtol(s, NULL, 10) : 1;
    return v > 0 ? (uint64_t)v : 1;
}

static inline uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t deadline_in(uint64_t ms) { return now_ms() + ms * time_scale(); }

/* The pause between two looks at a polled condition (not a wait for an outcome). */
static inline void poll_pause(void) {
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* An absolute CLOCK_REALTIME time `ms` from now (scaled), for pthread_cond_timedwait. */
static inline struct timespec abs_deadline(uint64_t ms) {
    struct timespec ts;
    uint64_t ns;
    clock_gettime(CLOCK_REALTIME, &ts);
    ns = (uint64_t)ts.tv_nsec + (ms * time_scale() % 1000u) * 1000000u;
    ts.tv_sec += (time_t)(ms * time_scale() / 1000u + ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    return ts;
}

/* A loopback port the OS just handed out (bound, read back, closed). 0 on failure. */
static inline int free_port(void) {
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    int port = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &len) == 0) {
        port = ntohs(addr.sin_port);
    }
    close(fd);
    return port;
}

static inline int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void remove_tree(const char *dir) {
    if (dir[0] != '\0') nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline int make_temp_dir(char *out, size_t cap) {
    const char *base = getenv("TMPDIR");
    snprintf(out, cap, "%s/rmqraft-ctest-XXXXXX", base && base[0] ? base : "/tmp");
    return mkdtemp(out) != NULL;
}

/* Extra engine properties for every engine a test opens (e.g. rmqraftFlusher=pwrite). */
static inline const char *engine_props(void) {
    const char *s = getenv("RMQRAFT_TEST_ENGINE_PROPS");
    return s ? s : "";
}

#define MAX_MEMBERS 3

/* Up to three members of one group, all on one engine. */
typedef struct cluster {
    rmqraft_engine *engine;
    rmqraft_group *members[MAX_MEMBERS];
    int n;
    int ports[MAX_MEMBERS];
    char dir[256];
    char name[64];
    char extra[512];
} cluster;

static inline void member_props(const cluster *c, int i, char *out, size_t cap) {
    char peers[256] = "";
    int k;
    for (k = 0; k < c->n; k++) {
        size_t used = strlen(peers);
        snprintf(peers + used, sizeof peers - used, "%sn%d-127.0.0.1:%d", k ? ";" : "", k, c->ports[k]);
    }
    snprintf(out, cap,
             "# written by the C tests\n"
             "dLegerGroup = %s\n"
             "dLegerPeers = %s\n"
             "dLegerSelfId = n%d\n"
             "storePathRootDir = %s\n"
             "mappedFileSizeCommitLog = 4194304\n"
             "maxEntrySize = 1048576\n"
             "brokerRole = SYNC_MASTER\n"
             "%s\n",
             c->name, peers, i, c->dir, c->extra);
}

static inline rmqraft_result open_member(cluster *c, int i) {
    char props[2048];
    member_props(c, i, props, sizeof props);
    return rmqraft_group_open(c->engine, props, &c->members[i]);
}

static inline void close_members(cluster *c) {
    int i;
    for (i = 0; i < MAX_MEMBERS; i++) {
        rmqraft_group_close(c->members[i]);
        c->members[i] = NULL;
    }
}

/* Opens an engine and all n members, on fresh ports; retries when a port was taken in
 * the meantime. `dir` empty: a new temporary directory. Returns 1 on success. */
static inline int cluster_open(cluster *c, int n, const char *extra) {
    int attempt, i;
    rmqraft_result rc = RMQRAFT_OK;
    c->n = n;
    snprintf(c->extra, sizeof c->extra, "%s", extra ? extra : "");
    if (c->name[0] == '\0') snprintf(c->name, sizeof c->name, "RaftNode%02d", n);
    if (c->dir[0] == '\0' && !make_temp_dir(c->dir, sizeof c->dir)) {
        fail_at(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
        return 0;
    }
    for (attempt = 0; attempt < 8; attempt++) {
        c->engine = NULL;
        rc = rmqraft_engine_open(engine_props(), &c->engine);
        if (rc != RMQRAFT_OK) break;
        for (i = 0; i < n; i++) {
            c->ports[i] = free_port();
            if (c->ports[i] == 0) {
                fail_at(__FILE__, __LINE__, "no free port: %s", strerror(errno));
                return 0;
            }
        }
        for (i = 0; i < n; i++) {
            rc = open_member(c, i);
            if (rc != RMQRAFT_OK) break;
        }
        if (rc == RMQRAFT_OK) return 1;
        fprintf(stderr, "  (open attempt %d: %s: %s)\n", attempt + 1, rmqraft_result_name(rc), last_error_text());
        close_members(c);
        rmqraft_engine_close(c->engine);
        c->engine = NULL;
        if (rc != RMQRAFT_ERR_IO) break; /* only a taken port is worth another try */
    }
    fail_at(__FILE__, __LINE__, "opening a %d-member group: %s: %s", n, rmqraft_result_name(rc), last_error_text());
    return 0;
}

static inline void cluster_close(cluster *c, int remove_dir) {
    close_members(c);
    rmqraft_engine_close(c->engine);
    c->engine = NULL;
    if (remove_dir) {
        remove_tree(c->dir);
        c->dir[0] = '\0';
    }
}

/* Waits until one open member leads and the others that are open follow it. Returns
 * the leader's position, or -1 at the deadline. */
static inline int wait_leader(cluster *c, uint64_t timeout_ms) {
    uint64_t deadline = deadline_in(timeout_ms);
    while (now_ms() < deadline) {
        int i, leader = -1, agreed = 1;
        rmqraft_group_state st[MAX_MEMBERS];
        for (i = 0; i < c->n; i++) {
            if (!c->members[i]) continue;
            if (rmqraft_group_status(c->members[i], &st[i]) != RMQRAFT_OK) { agreed = 0; break; }
            if (st[i].role == RMQRAFT_ROLE_LEADER) leader = i;
        }
        if (agreed && leader >= 0) {
            for (i = 0; i < c->n; i++) {
                if (c->members[i] && st[i].leader_peer != leader) agreed = 0;
            }
            if (agreed) return leader;
        }
        poll_pause();
    }
    return -1;
}

/* Waits until member i has committed at least `index`. */
static inline int wait_committed(rmqraft_group *g, uint64_t index, uint64_t timeout_ms) {
    uint64_t deadline = deadline_in(timeout_ms);
    while (now_ms() < deadline) {
        rmqraft_group_state st;
        if (rmqraft_group_status(g, &st) == RMQRAFT_OK && st.commit_index >= index) return 1;
        poll_pause();
    }
    return 0;
}

/* Reads entry `index` of g and compares it with (data, len). 1 when equal. */
static inline int read_equals(rmqraft_group *g, uint64_t index, const void *data, size_t len) {
    unsigned char buf[4096];
    size_t got = 0;
    rmqraft_entry_meta meta;
    rmqraft_result rc = rmqraft_group_read(g, index, buf, sizeof buf, &got, &meta);
    if (rc != RMQRAFT_OK) {
        fprintf(stderr, "  read %llu: %s: %s\n", (unsigned long long)index, rmqraft_result_name(rc), last_error_text());
        return 0;
    }
    if (meta.index != index || got != len || memcmp(buf, data, len) != 0) {
        fprintf(stderr, "  read %llu: got %zu bytes at index %llu\n", (unsigned long long)index, got,
                (unsigned long long)meta.index);
        return 0;
    }
    return 1;
}

#endif /* RMQRAFT_TESTUTIL_H */
