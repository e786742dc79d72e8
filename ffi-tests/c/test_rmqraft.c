/*
 * The C test suite of librmqraft: every exported function, every result code a host can
 * provoke, callbacks from library threads, the message layer of ABI 0.2, concurrent host threads, a three-member group
 * with leadership transfer and failover, and a restart from disk.
 *
 * Usage: test_rmqraft [test-name...]   (no name: every test)
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <stdatomic.h>
#include <sys/stat.h>

#define APPEND_TIMEOUT_MS 10000u
#define ELECTION_WAIT_MS 15000u

static pthread_t g_main_thread;

/* ---------------------------------------------------------------- version and names */

static void test_version(void) {
    char expected[64];
    snprintf(expected, sizeof expected, "%d.%d.%d", RMQRAFT_VERSION_MAJOR, RMQRAFT_VERSION_MINOR,
             RMQRAFT_VERSION_PATCH);
    REQUIRE(rmqraft_version() ==
            (((uint32_t)RMQRAFT_VERSION_MAJOR << 16) | ((uint32_t)RMQRAFT_VERSION_MINOR << 8) |
             (uint32_t)RMQRAFT_VERSION_PATCH));
    REQUIRE(strcmp(rmqraft_version_string(), expected) == 0);
#ifdef EXPECTED_VERSION
    /* From Cargo.toml, passed by run.sh. */
    REQUIRE(strcmp(EXPECTED_VERSION, expected) == 0);
#endif
}

static void test_result_names(void) {
    static const struct { rmqraft_result code; unsigned number; const char *name; } table[] = {
        {RMQRAFT_OK, 0, "RMQRAFT_OK"},
        {RMQRAFT_ERR_INVALID_ARGUMENT, 1, "RMQRAFT_ERR_INVALID_ARGUMENT"},
        {RMQRAFT_ERR_CONFIG, 2, "RMQRAFT_ERR_CONFIG"},
        {RMQRAFT_ERR_NOT_LEADER, 3, "RMQRAFT_ERR_NOT_LEADER"},
        {RMQRAFT_ERR_TIMEOUT, 4, "RMQRAFT_ERR_TIMEOUT"},
        {RMQRAFT_ERR_IO, 5, "RMQRAFT_ERR_IO"},
        {RMQRAFT_ERR_CORRUPT, 6, "RMQRAFT_ERR_CORRUPT"},
        {RMQRAFT_ERR_NOT_FOUND, 7, "RMQRAFT_ERR_NOT_FOUND"},
        {RMQRAFT_ERR_CLOSED, 8, "RMQRAFT_ERR_CLOSED"},
        {RMQRAFT_ERR_BUSY, 9, "RMQRAFT_ERR_BUSY"},
        {RMQRAFT_ERR_TOO_LARGE, 10, "RMQRAFT_ERR_TOO_LARGE"},
        {RMQRAFT_ERR_BUFFER_TOO_SMALL, 11, "RMQRAFT_ERR_BUFFER_TOO_SMALL"},
        {RMQRAFT_ERR_EXISTS, 12, "RMQRAFT_ERR_EXISTS"},
        {RMQRAFT_ERR_PANIC, 13, "RMQRAFT_ERR_PANIC"},
        {RMQRAFT_ERR_DISK_FULL, 14, "RMQRAFT_ERR_DISK_FULL"},
        {RMQRAFT_ERR_OUT_OF_ORDER, 15, "RMQRAFT_ERR_OUT_OF_ORDER"},
        {RMQRAFT_ERR_NO_TOPIC, 16, "RMQRAFT_ERR_NO_TOPIC"},
        {RMQRAFT_ERR_NO_PERMISSION, 17, "RMQRAFT_ERR_NO_PERMISSION"},
        {RMQRAFT_ERR_OUTCOME_UNKNOWN, 18, "RMQRAFT_ERR_OUTCOME_UNKNOWN"},
    };
    size_t i;
    REQUIRE(sizeof(rmqraft_result) == 4);
    for (i = 0; i < sizeof table / sizeof table[0]; i++) {
        REQUIRE((unsigned)table[i].code == table[i].number);
        REQUIRE(strcmp(rmqraft_result_name(table[i].code), table[i].name) == 0);
    }
    REQUIRE(strcmp(rmqraft_result_name((rmqraft_result)19), "RMQRAFT_UNKNOWN_RESULT") == 0);
    REQUIRE(strcmp(rmqraft_result_name((rmqraft_result)0xffffffffu), "RMQRAFT_UNKNOWN_RESULT") == 0);
    REQUIRE(RMQRAFT_ROLE_CANDIDATE == 0 && RMQRAFT_ROLE_LEADER == 1 && RMQRAFT_ROLE_FOLLOWER == 2);
}

/* ---------------------------------------------------------------- last error */

static void *other_thread_error(void *arg) {
    size_t *len = arg;
    *len = rmqraft_last_error(NULL, 0); /* a new thread has no error yet */
    rmqraft_engine_open(NULL, NULL);    /* its own failure, not the main thread's */
    return NULL;
}

static void test_last_error(void) {
    rmqraft_engine *e = NULL;
    char full[512], small[8];
    size_t len, other_len = 99;
    pthread_t t;
    REQUIRE_RC(RMQRAFT_ERR_CONFIG, rmqraft_engine_open("rmqraftFlusher = mmap\n", &e));
    len = rmqraft_last_error(NULL, 0);
    REQUIRE(len > 0);
    REQUIRE(rmqraft_last_error(full, sizeof full) == len);
    REQUIRE(strlen(full) == len);
    REQUIRE(strstr(full, "rmqraft_engine_open") != NULL);
    REQUIRE(strstr(full, "rmqraftFlusher") != NULL);
    memset(small, 'x', sizeof small);
    REQUIRE(rmqraft_last_error(small, 5) == len);
    REQUIRE(strlen(small) == 4 && memcmp(small, full, 4) == 0);
    REQUIRE(small[5] == 'x');
    small[0] = 'y';
    REQUIRE(rmqraft_last_error(small, 0) == len && small[0] == 'y');
    /* A success does not clear the detail; another thread's failure does not touch it. */
    REQUIRE(rmqraft_version() != 0xffffffffu);
    REQUIRE(pthread_create(&t, NULL, other_thread_error, &other_len) == 0);
    REQUIRE(pthread_join(t, NULL) == 0);
    REQUIRE(other_len == 0);
    REQUIRE(rmqraft_last_error(small, sizeof small) == len);
}

/* ---------------------------------------------------------------- engine */

static void test_engine_open_close(void) {
    rmqraft_engine *e = NULL;
    rmqraft_engine *sentinel = (rmqraft_engine *)&e; /* any non-NULL address */
    rmqraft_engine *out = sentinel;
    REQUIRE_OK(rmqraft_engine_open(NULL, &e));
    REQUIRE(e != NULL);
    rmqraft_engine_close(e);
    e = NULL;
    REQUIRE_OK(rmqraft_engine_open("", &e));
    rmqraft_engine_close(e);
    e = NULL;
    REQUIRE_OK(rmqraft_engine_open("# a whole broker.conf\n\nbrokerClusterName = RaftCluster\n"
                                   "brokerName = RaftNode00\nlistenPort = 30911\n",
                                   &e));
    rmqraft_engine_close(e);
    e = NULL;
    REQUIRE_RC(RMQRAFT_ERR_CONFIG, rmqraft_engine_open("rmqraftMaxFrameSize = lots\n", &out));
    REQUIRE(out == sentinel);
    REQUIRE(strstr(last_error_text(), "rmqraftMaxFrameSize") != NULL);
    REQUIRE_RC(RMQRAFT_ERR_CONFIG, rmqraft_engine_open("this line has no equals sign\n", &out));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_engine_open("brokerClusterName = \xff\xfe\n", &out));
    REQUIRE(strstr(last_error_text(), "UTF-8") != NULL);
    REQUIRE(out == sentinel);
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_engine_open(NULL, NULL));
    rmqraft_engine_close(NULL);
    rmqraft_group_close(NULL);
}

/* ---------------------------------------------------------------- group open */

static void test_group_open_errors(void) {
    cluster c, twin;
    rmqraft_engine *e2 = NULL;
    rmqraft_group *g = NULL;
    rmqraft_group *sentinel = (rmqraft_group *)&g;
    rmqraft_group *out = sentinel;
    char props[2048], bad[2200];
    memset(&c, 0, sizeof c);
    memset(&twin, 0, sizeof twin);
    if (!cluster_open(&c, 1, "")) return;
    member_props(&c, 0, props, sizeof props);

    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_open(NULL, props, &out));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_open(c.engine, NULL, &out));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_open(c.engine, props, NULL));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_open(c.engine, "dLegerGroup = \xc3\x28\n", &out));
    REQUIRE_RC(RMQRAFT_ERR_CONFIG, rmqraft_group_open(c.engine, "dLegerGroup = g\n", &out));
    REQUIRE(strstr(last_error_text(), "dLegerPeers") != NULL);
    snprintf(bad, sizeof bad, "%sflushDiskType = SOMETIMES\n", props);
    REQUIRE_RC(RMQRAFT_ERR_CONFIG, rmqraft_group_open(c.engine, bad, &out));
    REQUIRE(strstr(last_error_text(), "flushDiskType") != NULL);
    snprintf(bad, sizeof bad, "%sdLegerSelfId = n7\n", props);
    REQUIRE_RC(RMQRAFT_ERR_CONFIG, rmqraft_group_open(c.engine, bad, &out));
    REQUIRE(strstr(last_error_text(), "dLegerSelfId") != NULL);
    REQUIRE(out == sentinel);

    /* The same member again, on the same engine. */
    REQUIRE_RC(RMQRAFT_ERR_EXISTS, rmqraft_group_open(c.engine, props, &out));
    REQUIRE(out == sentinel);
    /* The same store directory from a second engine (other ports, same member id). */
    REQUIRE_OK(rmqraft_engine_open(engine_props(), &e2));
    twin = c;
    twin.engine = e2;
    twin.members[0] = NULL;
    twin.ports[0] = free_port();
    REQUIRE_RC(RMQRAFT_ERR_EXISTS, open_member(&twin, 0));
    rmqraft_engine_close(e2);
    cluster_close(&c, 1);
}

/* ---------------------------------------------------------------- one member */

static void test_single_member(void) {
    cluster c;
    rmqraft_group *g;
    rmqraft_group_state st, st_before;
    rmqraft_entry_meta meta, meta2, sentinel_meta = {7, 7, 7};
    const char *hello = "hello, rmqraft";
    size_t hello_len = strlen(hello);
    unsigned char buf[64];
    static unsigned char big[64 * 1024], too_big[1048576 + 1];
    size_t len = 0;
    size_t i;
    memset(&c, 0, sizeof c);
    if (!cluster_open(&c, 1, "flushDiskType = SYNC_FLUSH\n")) return;
    g = c.members[0];
    REQUIRE(wait_leader(&c, ELECTION_WAIT_MS) == 0);
    REQUIRE_OK(rmqraft_group_status(g, &st_before));
    REQUIRE(st_before.role == RMQRAFT_ROLE_LEADER);
    REQUIRE(st_before.self_peer == 0 && st_before.leader_peer == 0);
    REQUIRE(st_before.term >= 1);

    REQUIRE_OK(rmqraft_group_append(g, (const uint8_t *)hello, hello_len, APPEND_TIMEOUT_MS, &meta));
    REQUIRE(meta.index >= 1 && meta.term == st_before.term);
    REQUIRE_OK(rmqraft_group_status(g, &st));
    REQUIRE(st.last_index >= meta.index && st.commit_index >= meta.index);
    REQUIRE(st.flushed_index >= meta.index); /* SYNC_FLUSH: durable when acked */
    REQUIRE(st.first_index >= 1 && st.first_index <= meta.index);

    memset(buf, 0, sizeof buf);
    REQUIRE_OK(rmqraft_group_read(g, meta.index, buf, sizeof buf, &len, &meta2));
    REQUIRE(len == hello_len && memcmp(buf, hello, len) == 0);
    REQUIRE(meta2.index == meta.index && meta2.term == meta.term && meta2.pos == meta.pos);

    /* Too small a buffer: only *len_out is written. */
    len = 0;
    meta2 = sentinel_meta;
    memset(buf, 'z', sizeof buf);
    REQUIRE_RC(RMQRAFT_ERR_BUFFER_TOO_SMALL, rmqraft_group_read(g, meta.index, buf, 3, &len, &meta2));
    REQUIRE(len == hello_len);
    REQUIRE(meta2.index == 7 && meta2.term == 7 && meta2.pos == 7);
    REQUIRE(buf[0] == 'z');
    len = 0;
    REQUIRE_RC(RMQRAFT_ERR_BUFFER_TOO_SMALL, rmqraft_group_read(g, meta.index, NULL, 0, &len, &meta2));
    REQUIRE(len == hello_len);
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_read(g, meta.index, NULL, 10, &len, &meta2));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_read(g, meta.index, buf, sizeof buf, NULL, &meta2));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_read(g, meta.index, buf, sizeof buf, &len, NULL));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_read(NULL, meta.index, buf, sizeof buf, &len, &meta2));
    len = 12345;
    REQUIRE_RC(RMQRAFT_ERR_NOT_FOUND, rmqraft_group_read(g, st.last_index + 1000, buf, sizeof buf, &len, &meta2));
    REQUIRE(len == 12345);

    /* Bad appends. */
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_append(g, (const uint8_t *)hello, 0, 1000, &meta2));
    REQUIRE(strstr(last_error_text(), "empty") != NULL);
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_append(g, NULL, 5, 1000, &meta2));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_append(g, (const uint8_t *)hello, 5, 1000, NULL));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_append(NULL, (const uint8_t *)hello, 5, 1000, &meta2));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_append_async(g, (const uint8_t *)hello, 0, NULL, NULL));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_append_async(g, (const uint8_t *)hello, 5, NULL, NULL));
    memset(too_big, 'b', sizeof too_big);
    meta2 = sentinel_meta;
    REQUIRE_RC(RMQRAFT_ERR_TOO_LARGE, rmqraft_group_append(g, too_big, sizeof too_big, APPEND_TIMEOUT_MS, &meta2));
    REQUIRE(meta2.index == 7);
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_status(g, NULL));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_status(NULL, &st));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_transfer_leadership(g, NULL, 1000));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_transfer_leadership(NULL, "n0", 1000));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_set_role_callback(NULL, NULL, NULL));

    /* A larger entry (several reads' worth of a small buffer), read back through a heap buffer. */
    for (i = 0; i < sizeof big; i++) big[i] = (unsigned char)(i * 31u + 7u);
    REQUIRE_OK(rmqraft_group_append(g, big, sizeof big, APPEND_TIMEOUT_MS, &meta2));
    REQUIRE(meta2.index > meta.index && meta2.pos > meta.pos);
    {
        unsigned char *back = malloc(sizeof big);
        size_t got = 0;
        rmqraft_entry_meta m;
        rmqraft_result rc;
        REQUIRE(back != NULL);
        rc = rmqraft_group_read(g, meta2.index, back, sizeof big, &got, &m);
        if (rc != RMQRAFT_OK || got != sizeof big || memcmp(back, big, got) != 0 || m.index != meta2.index) {
            free(back);
            REQUIRE(!"the 64 KiB entry reads back unchanged");
        }
        free(back);
    }
    /* The first entry is still there. */
    REQUIRE(read_equals(g, meta.index, hello, hello_len));
    cluster_close(&c, 1);
}

/* ---------------------------------------------------------------- callbacks */

typedef struct role_log {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    int calls_off_host_thread;
    rmqraft_role last_role;
    uint64_t last_term;
    int32_t last_leader;
    rmqraft_role first_role;
    int32_t first_leader;
    int saw_leader;
    int follower_without_leader;
} role_log;

static void role_log_init(role_log *r) {
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->last_leader = -2;
}

static void role_log_destroy(role_log *r) {
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

static void on_role(void *userdata, rmqraft_role role, uint64_t term, int32_t leader_peer) {
    role_log *r = userdata;
    pthread_mutex_lock(&r->mu);
    r->calls++;
    if (r->calls == 1) {
        r->first_role = role;
        r->first_leader = leader_peer;
    }
    if (role == RMQRAFT_ROLE_FOLLOWER && leader_peer < 0) r->follower_without_leader++;
    if (!pthread_equal(pthread_self(), g_main_thread)) r->calls_off_host_thread++;
    r->last_role = role;
    r->last_term = term;
    r->last_leader = leader_peer;
    if (role == RMQRAFT_ROLE_LEADER) r->saw_leader++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Waits until the log has at least `calls` calls and, if role >= 0, its last role is `role`. */
static int role_log_wait(role_log *r, int calls, int role, uint64_t timeout_ms) {
    struct timespec until = abs_deadline(timeout_ms);
    int ok, rc = 0;
    pthread_mutex_lock(&r->mu);
    while (!(r->calls >= calls && (role < 0 || (int)r->last_role == role)) && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&r->cv, &r->mu, &until);
    }
    ok = r->calls >= calls && (role < 0 || (int)r->last_role == role);
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static int role_log_calls(role_log *r) {
    int n;
    pthread_mutex_lock(&r->mu);
    n = r->calls;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* Async appends: one slot per append, a shared counter of completions. */
typedef struct async_batch async_batch;
typedef struct async_slot {
    async_batch *batch;
    atomic_int calls;
    rmqraft_result result;
    rmqraft_entry_meta meta;
    int off_host_thread;
    int accepted; /* append_async returned RMQRAFT_OK */
    char payload[32];
} async_slot;

struct async_batch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int completed;
    async_slot *slots;
    int n;
};

static void on_append(void *userdata, rmqraft_result result, const rmqraft_entry_meta *meta) {
    async_slot *s = userdata;
    atomic_fetch_add(&s->calls, 1);
    s->result = result;
    s->meta = *meta; /* never NULL */
    s->off_host_thread = !pthread_equal(pthread_self(), g_main_thread);
    pthread_mutex_lock(&s->batch->mu);
    s->batch->completed++;
    pthread_cond_broadcast(&s->batch->cv);
    pthread_mutex_unlock(&s->batch->mu);
}

static int batch_init(async_batch *b, int n) {
    int i;
    memset(b, 0, sizeof *b);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->slots = calloc((size_t)n, sizeof *b->slots);
    b->n = n;
    for (i = 0; b->slots && i < n; i++) {
        b->slots[i].batch = b;
        atomic_init(&b->slots[i].calls, 0);
        snprintf(b->slots[i].payload, sizeof b->slots[i].payload, "async-%d", i);
    }
    return b->slots != NULL;
}

static void batch_destroy(async_batch *b) {
    free(b->slots);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
}

static int batch_wait(async_batch *b, int completed, uint64_t timeout_ms) {
    struct timespec until = abs_deadline(timeout_ms);
    int rc = 0, ok;
    pthread_mutex_lock(&b->mu);
    while (b->completed < completed && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&b->cv, &b->mu, &until);
    ok = b->completed >= completed;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

static int batch_completed(async_batch *b) {
    int n;
    pthread_mutex_lock(&b->mu);
    n = b->completed;
    pthread_mutex_unlock(&b->mu);
    return n;
}

static void test_callbacks(void) {
    enum { N = 64 };
    cluster c;
    role_log roles, roles2;
    async_batch b;
    rmqraft_group *g;
    int i, j, calls;
    memset(&c, 0, sizeof c);
    role_log_init(&roles);
    role_log_init(&roles2);
    if (!batch_init(&b, N)) return;
    if (!cluster_open(&c, 1, "flushDiskType = ASYNC_FLUSH\n")) return;
    g = c.members[0];
    REQUIRE(wait_leader(&c, ELECTION_WAIT_MS) == 0);

    /* The role callback is called at once with the current role. */
    REQUIRE_OK(rmqraft_group_set_role_callback(g, on_role, &roles));
    REQUIRE(role_log_wait(&roles, 1, RMQRAFT_ROLE_LEADER, 5000));
    REQUIRE(roles.last_leader == 0 && roles.last_term >= 1);

    /* Async appends complete exactly once each, on library threads. */
    for (i = 0; i < N; i++) {
        async_slot *s = &b.slots[i];
        REQUIRE_OK(rmqraft_group_append_async(g, (const uint8_t *)s->payload, strlen(s->payload), on_append, s));
    }
    REQUIRE(batch_wait(&b, N, 20000));
    for (i = 0; i < N; i++) {
        async_slot *s = &b.slots[i];
        REQUIRE(atomic_load(&s->calls) == 1);
        REQUIRE(s->result == RMQRAFT_OK);
        REQUIRE(s->off_host_thread);
        REQUIRE(s->meta.index >= 1);
        for (j = 0; j < i; j++) REQUIRE(b.slots[j].meta.index != s->meta.index);
        REQUIRE(read_equals(g, s->meta.index, s->payload, strlen(s->payload)));
    }

    /* Replacing the callback: the new one is called at once; the old one no longer. */
    calls = role_log_calls(&roles);
    REQUIRE_OK(rmqraft_group_set_role_callback(g, on_role, &roles2));
    REQUIRE(role_log_wait(&roles2, 1, RMQRAFT_ROLE_LEADER, 5000));
    REQUIRE_OK(rmqraft_group_set_role_callback(g, NULL, NULL));
    REQUIRE(role_log_calls(&roles) == calls);
    cluster_close(&c, 1);
    REQUIRE(role_log_calls(&roles) == calls);
    batch_destroy(&b);
    role_log_destroy(&roles);
    role_log_destroy(&roles2);
}

/* ---------------------------------------------------------------- BUSY under a flood */

static void test_busy(void) {
    enum { MAX_ATTEMPTS = 20000 };
    cluster c;
    async_batch b;
    rmqraft_group *g;
    rmqraft_entry_meta meta;
    int i, accepted = 0, busy = 0, first_ok = -1;
    memset(&c, 0, sizeof c);
    if (!batch_init(&b, MAX_ATTEMPTS)) return;
    if (!cluster_open(&c, 1, "flushDiskType = SYNC_FLUSH\nmaxPendingRequestsNum = 2\n")) return;
    g = c.members[0];
    REQUIRE(wait_leader(&c, ELECTION_WAIT_MS) == 0);
    for (i = 0; i < MAX_ATTEMPTS && busy < 100; i++) {
        async_slot *s = &b.slots[i];
        rmqraft_result rc =
            rmqraft_group_append_async(g, (const uint8_t *)s->payload, strlen(s->payload), on_append, s);
        if (rc == RMQRAFT_OK) {
            accepted++;
            s->accepted = 1;
        } else {
            REQUIRE_RC(RMQRAFT_ERR_BUSY, rc);
            busy++;
        }
    }
    fprintf(stderr, "  %d accepted, %d busy\n", accepted, busy);
    REQUIRE(busy > 0);
    REQUIRE(accepted >= 2);
    REQUIRE(batch_wait(&b, accepted, 30000));
    for (i = 0; i < MAX_ATTEMPTS; i++) {
        async_slot *s = &b.slots[i];
        if (s->accepted) {
            REQUIRE(atomic_load(&s->calls) == 1);
            REQUIRE(s->result == RMQRAFT_OK);
            if (first_ok < 0) first_ok = i;
        } else {
            REQUIRE(atomic_load(&s->calls) == 0); /* refused appends never call back */
        }
    }
    REQUIRE(read_equals(g, b.slots[first_ok].meta.index, b.slots[first_ok].payload,
                        strlen(b.slots[first_ok].payload)));
    /* Once the flood drained, appends are accepted again. */
    REQUIRE_OK(rmqraft_group_append(g, (const uint8_t *)"after", 5, APPEND_TIMEOUT_MS, &meta));
    REQUIRE(read_equals(g, meta.index, "after", 5));
    cluster_close(&c, 1);
    batch_destroy(&b);
}

/* ---------------------------------------------------------------- host threads */

enum { WRITERS = 4, PER_WRITER = 40 };

typedef struct writer {
    rmqraft_group *g;
    int id;
    int failures;
    rmqraft_entry_meta metas[PER_WRITER];
} writer;

static void *writer_main(void *arg) {
    writer *w = arg;
    int k;
    for (k = 0; k < PER_WRITER; k++) {
        char payload[64];
        int n = snprintf(payload, sizeof payload, "writer %d entry %d", w->id, k);
        if (rmqraft_group_append(w->g, (const uint8_t *)payload, (size_t)n, APPEND_TIMEOUT_MS, &w->metas[k]) !=
            RMQRAFT_OK) {
            w->failures++;
        }
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_concurrent_appends(void) {
    cluster c;
    writer w[WRITERS];
    pthread_t t[WRITERS];
    uint64_t indexes[WRITERS * PER_WRITER];
    int i, k;
    memset(&c, 0, sizeof c);
    if (!cluster_open(&c, 1, "flushDiskType = SYNC_FLUSH\n")) return;
    REQUIRE(wait_leader(&c, ELECTION_WAIT_MS) == 0);
    for (i = 0; i < WRITERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].g = c.members[0];
        w[i].id = i;
        REQUIRE(pthread_create(&t[i], NULL, writer_main, &w[i]) == 0);
    }
    for (i = 0; i < WRITERS; i++) REQUIRE(pthread_join(t[i], NULL) == 0);
    for (i = 0; i < WRITERS; i++) {
        REQUIRE(w[i].failures == 0);
        for (k = 0; k < PER_WRITER; k++) {
            char payload[64];
            int n = snprintf(payload, sizeof payload, "writer %d entry %d", i, k);
            indexes[i * PER_WRITER + k] = w[i].metas[k].index;
            if (k > 0) REQUIRE(w[i].metas[k].index > w[i].metas[k - 1].index); /* one writer's order holds */
            REQUIRE(read_equals(c.members[0], w[i].metas[k].index, payload, (size_t)n));
        }
    }
    qsort(indexes, WRITERS * PER_WRITER, sizeof indexes[0], cmp_u64);
    for (i = 1; i < WRITERS * PER_WRITER; i++) REQUIRE(indexes[i] != indexes[i - 1]);
    cluster_close(&c, 1);
}

/* ---------------------------------------------------------------- three members */

static void test_three_members(void) {
    enum { K = 10 };
    cluster c;
    role_log roles[MAX_MEMBERS];
    rmqraft_entry_meta metas[K + 1], meta;
    char payloads[K + 1][32], peer[8];
    rmqraft_group_state st;
    int i, k, leader, follower, target, next;
    memset(&c, 0, sizeof c);
    for (i = 0; i < MAX_MEMBERS; i++) role_log_init(&roles[i]);
    if (!cluster_open(&c, 3, "flushDiskType = SYNC_FLUSH\n")) return;
    for (i = 0; i < 3; i++) REQUIRE_OK(rmqraft_group_set_role_callback(c.members[i], on_role, &roles[i]));
    leader = wait_leader(&c, ELECTION_WAIT_MS);
    REQUIRE(leader >= 0);
    for (i = 0; i < 3; i++) REQUIRE(role_log_wait(&roles[i], 1, i == leader ? RMQRAFT_ROLE_LEADER : RMQRAFT_ROLE_FOLLOWER, 5000));
    follower = (leader + 1) % 3;

    /* A follower refuses appends and names the leader. */
    REQUIRE_RC(RMQRAFT_ERR_NOT_LEADER, rmqraft_group_append(c.members[follower], (const uint8_t *)"x", 1, 1000, &meta));
    REQUIRE_OK(rmqraft_group_status(c.members[follower], &st));
    REQUIRE(st.role == RMQRAFT_ROLE_FOLLOWER && st.leader_peer == leader && st.self_peer == follower);
    snprintf(peer, sizeof peer, "n%d", (leader + 2) % 3); /* the other follower */
    REQUIRE_RC(RMQRAFT_ERR_NOT_LEADER, rmqraft_group_transfer_leadership(c.members[follower], peer, 1000));

    for (k = 0; k < K; k++) {
        int n = snprintf(payloads[k], sizeof payloads[k], "replicated %d", k);
        REQUIRE_OK(rmqraft_group_append(c.members[leader], (const uint8_t *)payloads[k], (size_t)n, APPEND_TIMEOUT_MS, &metas[k]));
    }
    /* Every member reads every entry. */
    for (i = 0; i < 3; i++) {
        REQUIRE(wait_committed(c.members[i], metas[K - 1].index, 10000));
        for (k = 0; k < K; k++) REQUIRE(read_equals(c.members[i], metas[k].index, payloads[k], strlen(payloads[k])));
    }

    /* Leadership transfer: the target leads and its role callback says so. */
    target = follower;
    snprintf(peer, sizeof peer, "n%d", target);
    REQUIRE_OK(rmqraft_group_transfer_leadership(c.members[leader], peer, 10000));
    REQUIRE(role_log_wait(&roles[target], 2, RMQRAFT_ROLE_LEADER, 10000));
    REQUIRE(wait_leader(&c, ELECTION_WAIT_MS) == target);
    REQUIRE(roles[target].calls_off_host_thread >= 1);
    leader = target;

    /* Failover: close the leader's member; the other two elect a new leader. */
    rmqraft_group_close(c.members[leader]);
    c.members[leader] = NULL;
    next = wait_leader(&c, ELECTION_WAIT_MS);
    REQUIRE(next >= 0 && next != leader);
    REQUIRE(role_log_wait(&roles[next], 1, RMQRAFT_ROLE_LEADER, 10000));
    k = K;
    snprintf(payloads[k], sizeof payloads[k], "after failover");
    REQUIRE_OK(rmqraft_group_append(c.members[next], (const uint8_t *)payloads[k], strlen(payloads[k]), APPEND_TIMEOUT_MS, &metas[k]));
    REQUIRE(metas[k].term > metas[0].term);
    for (i = 0; i < 3; i++) {
        if (!c.members[i]) continue;
        REQUIRE(wait_committed(c.members[i], metas[K].index, 10000));
        for (k = 0; k <= K; k++) REQUIRE(read_equals(c.members[i], metas[k].index, payloads[k], strlen(payloads[k])));
    }
    cluster_close(&c, 1);
    for (i = 0; i < MAX_MEMBERS; i++) role_log_destroy(&roles[i]);
}

/* ---------------------------------------------------------------- exactly-once appends */

static void test_idempotent(void) {
    cluster c;
    rmqraft_entry_meta first, again, next, meta;
    const uint64_t producer = 0x5eed000000000001ULL;
    int leader, follower;
    uint8_t buf[64];
    size_t len = 0;
    memset(&c, 0, sizeof c);
    if (!cluster_open(&c, 3, "flushDiskType = SYNC_FLUSH\n")) return;
    leader = wait_leader(&c, ELECTION_WAIT_MS);
    REQUIRE(leader >= 0);
    follower = (leader + 1) % 3;
    REQUIRE_OK(rmqraft_group_append_idempotent(c.members[leader], producer, 0, (const uint8_t *)"once", 4,
                                               APPEND_TIMEOUT_MS, &first));
    /* A resend appends nothing and answers with the original entry. */
    REQUIRE_OK(rmqraft_group_append_idempotent(c.members[leader], producer, 0, (const uint8_t *)"once", 4,
                                               APPEND_TIMEOUT_MS, &again));
    REQUIRE(again.index == first.index && again.term == first.term && again.pos == first.pos);
    /* Reads give the host's bytes only. */
    REQUIRE_OK(rmqraft_group_read(c.members[leader], first.index, buf, sizeof buf, &len, &meta));
    REQUIRE(len == 4 && memcmp(buf, "once", 4) == 0 && meta.index == first.index);
    /* A gap, producer 0, NULL data, a follower. */
    REQUIRE_RC(RMQRAFT_ERR_OUT_OF_ORDER, rmqraft_group_append_idempotent(c.members[leader], producer, 5,
                                                                         (const uint8_t *)"gap", 3, 1000, &meta));
    REQUIRE(strstr(last_error_text(), "skips ahead") != NULL);
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_append_idempotent(c.members[leader], 0, 0,
                                                                             (const uint8_t *)"x", 1, 1000, &meta));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_append_idempotent(c.members[leader], producer, 1,
                                                                             NULL, 1, 1000, &meta));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_append_idempotent(NULL, producer, 1,
                                                                             (const uint8_t *)"x", 1, 1000, &meta));
    REQUIRE_RC(RMQRAFT_ERR_NOT_LEADER, rmqraft_group_append_idempotent(c.members[follower], producer, 1,
                                                                       (const uint8_t *)"x", 1, 1000, &meta));
    REQUIRE_OK(rmqraft_group_append_idempotent(c.members[leader], producer, 1, (const uint8_t *)"next", 4,
                                               APPEND_TIMEOUT_MS, &next));
    REQUIRE(next.index > first.index);
    /* After failover the new leader still knows the producer. */
    rmqraft_group_close(c.members[leader]);
    c.members[leader] = NULL;
    leader = wait_leader(&c, ELECTION_WAIT_MS);
    REQUIRE(leader >= 0);
    REQUIRE_OK(rmqraft_group_append_idempotent(c.members[leader], producer, 1, (const uint8_t *)"next", 4,
                                               APPEND_TIMEOUT_MS, &again));
    REQUIRE(again.index == next.index && again.term == next.term);
    cluster_close(&c, 1);
}

/* ---------------------------------------------------------------- waiting for a leader */

static void test_wait_leader(void) {
    cluster c;
    role_log roles[MAX_MEMBERS];
    rmqraft_group_state st;
    int32_t leader = -7;
    uint64_t started, waited;
    int i;
    memset(&c, 0, sizeof c);
    for (i = 0; i < MAX_MEMBERS; i++) role_log_init(&roles[i]);
    if (!cluster_open(&c, 3, "")) return;
    /* Only n0 runs: it knows no leader, reports CANDIDATE (never FOLLOWER without a
     * leader), and rmqraft_group_wait_leader times out. */
    close_members(&c);
    REQUIRE_OK(open_member(&c, 0));
    REQUIRE_OK(rmqraft_group_set_role_callback(c.members[0], on_role, &roles[0]));
    REQUIRE(role_log_wait(&roles[0], 1, -1, 5000));
    REQUIRE(roles[0].first_role == RMQRAFT_ROLE_CANDIDATE && roles[0].first_leader == -1);
    REQUIRE_OK(rmqraft_group_status(c.members[0], &st));
    REQUIRE(st.role == RMQRAFT_ROLE_CANDIDATE && st.leader_peer == -1);
    started = now_ms();
    REQUIRE_RC(RMQRAFT_ERR_TIMEOUT, rmqraft_group_wait_leader(c.members[0], 300, &leader));
    waited = now_ms() - started;
    REQUIRE(waited >= 300);
    REQUIRE(leader == -7); /* outputs are written only on RMQRAFT_OK */
    REQUIRE(strstr(last_error_text(), "no leader") != NULL);
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_wait_leader(c.members[0], 10, NULL));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_group_wait_leader(NULL, 10, &leader));
    /* The others start: every member's wait returns the same leader, the one status names. */
    for (i = 1; i < 3; i++) {
        REQUIRE_OK(open_member(&c, i));
        REQUIRE_OK(rmqraft_group_set_role_callback(c.members[i], on_role, &roles[i]));
    }
    REQUIRE_OK(rmqraft_group_wait_leader(c.members[0], ELECTION_WAIT_MS * (uint32_t)time_scale(), &leader));
    REQUIRE(leader >= 0 && leader < 3);
    REQUIRE(wait_leader(&c, ELECTION_WAIT_MS) >= 0);
    for (i = 0; i < 3; i++) {
        int32_t seen = -1;
        REQUIRE_OK(rmqraft_group_wait_leader(c.members[i], ELECTION_WAIT_MS * (uint32_t)time_scale(), &seen));
        REQUIRE_OK(rmqraft_group_status(c.members[i], &st));
        REQUIRE(seen == st.leader_peer);
    }
    for (i = 0; i < 3; i++) REQUIRE(roles[i].follower_without_leader == 0);
    cluster_close(&c, 1);
    for (i = 0; i < MAX_MEMBERS; i++) role_log_destroy(&roles[i]);
}

/* ---------------------------------------------------------------- restart from disk */

static void test_restart(void) {
    enum { K = 20 };
    cluster c;
    rmqraft_entry_meta metas[K];
    char payloads[K][32];
    int i, k, leader;
    memset(&c, 0, sizeof c);
    if (!cluster_open(&c, 3, "flushDiskType = SYNC_FLUSH\n")) return;
    leader = wait_leader(&c, ELECTION_WAIT_MS);
    REQUIRE(leader >= 0);
    for (k = 0; k < K; k++) {
        int n = snprintf(payloads[k], sizeof payloads[k], "durable %d", k);
        REQUIRE_OK(rmqraft_group_append(c.members[leader], (const uint8_t *)payloads[k], (size_t)n, APPEND_TIMEOUT_MS, &metas[k]));
    }
    /* Close everything (the engine first: group handles then only need freeing). */
    rmqraft_engine_close(c.engine);
    c.engine = NULL;
    for (i = 0; i < 3; i++) {
        rmqraft_group_state st;
        REQUIRE_RC(RMQRAFT_ERR_CLOSED, rmqraft_group_status(c.members[i], &st));
    }
    close_members(&c);

    /* Reopen the same store directories (the ports may change; the ids do not). */
    REQUIRE(cluster_open(&c, 3, "flushDiskType = SYNC_FLUSH\n"));
    leader = wait_leader(&c, ELECTION_WAIT_MS);
    REQUIRE(leader >= 0);
    for (i = 0; i < 3; i++) {
        rmqraft_group_state st;
        REQUIRE_OK(rmqraft_group_status(c.members[i], &st));
        REQUIRE(st.last_index >= metas[K - 1].index);
        REQUIRE(wait_committed(c.members[i], metas[K - 1].index, 10000));
        for (k = 0; k < K; k++) REQUIRE(read_equals(c.members[i], metas[k].index, payloads[k], strlen(payloads[k])));
    }
    cluster_close(&c, 1);
}

/* ---------------------------------------------------------------- closing */

static void test_closed(void) {
    enum { N = 200 };
    cluster c;
    async_batch b;
    rmqraft_group *g;
    rmqraft_group_state st;
    rmqraft_entry_meta meta;
    role_log roles;
    unsigned char buf[16];
    size_t len;
    int i, accepted = 0, completed;
    memset(&c, 0, sizeof c);
    role_log_init(&roles);
    if (!batch_init(&b, N)) return;
    if (!cluster_open(&c, 1, "flushDiskType = SYNC_FLUSH\n")) return;
    g = c.members[0];
    REQUIRE(wait_leader(&c, ELECTION_WAIT_MS) == 0);
    REQUIRE_OK(rmqraft_group_set_role_callback(g, on_role, &roles));
    for (i = 0; i < N; i++) {
        async_slot *s = &b.slots[i];
        if (rmqraft_group_append_async(g, (const uint8_t *)s->payload, strlen(s->payload), on_append, s) == RMQRAFT_OK) {
            s->accepted = 1;
            accepted++;
        }
    }
    /* Closing the engine completes every accepted append before it returns. */
    rmqraft_engine_close(c.engine);
    c.engine = NULL;
    completed = batch_completed(&b);
    REQUIRE(completed == accepted);
    for (i = 0; i < N; i++) {
        async_slot *s = &b.slots[i];
        REQUIRE(atomic_load(&s->calls) == s->accepted);
        if (s->accepted) REQUIRE(s->result == RMQRAFT_OK || s->result == RMQRAFT_ERR_OUTCOME_UNKNOWN);
    }
    /* Every call on a group of a closed engine says CLOSED; no callback runs. */
    REQUIRE_RC(RMQRAFT_ERR_CLOSED, rmqraft_group_append(g, (const uint8_t *)"x", 1, 1000, &meta));
    REQUIRE_RC(RMQRAFT_ERR_CLOSED, rmqraft_group_append_async(g, (const uint8_t *)"x", 1, on_append, &b.slots[0]));
    REQUIRE_RC(RMQRAFT_ERR_CLOSED, rmqraft_group_read(g, 1, buf, sizeof buf, &len, &meta));
    REQUIRE_RC(RMQRAFT_ERR_CLOSED, rmqraft_group_status(g, &st));
    REQUIRE_RC(RMQRAFT_ERR_CLOSED, rmqraft_group_set_role_callback(g, on_role, &roles));
    REQUIRE_RC(RMQRAFT_ERR_CLOSED, rmqraft_group_transfer_leadership(g, "n0", 1000));
    REQUIRE(batch_completed(&b) == completed);
    close_members(&c);
    remove_tree(c.dir);

    /* The same through rmqraft_group_close with appends in flight. */
    batch_destroy(&b);
    if (!batch_init(&b, N)) return;
    memset(&c, 0, sizeof c);
    if (!cluster_open(&c, 1, "flushDiskType = SYNC_FLUSH\n")) return;
    REQUIRE(wait_leader(&c, ELECTION_WAIT_MS) == 0);
    accepted = 0;
    for (i = 0; i < N; i++) {
        async_slot *s = &b.slots[i];
        if (rmqraft_group_append_async(c.members[0], (const uint8_t *)s->payload, strlen(s->payload), on_append, s) == RMQRAFT_OK) accepted++;
    }
    rmqraft_group_close(c.members[0]);
    c.members[0] = NULL;
    REQUIRE(batch_completed(&b) == accepted);
    cluster_close(&c, 1);
    REQUIRE(batch_completed(&b) == accepted);
    batch_destroy(&b);
    role_log_destroy(&roles);
}

/* ---------------------------------------------------------------- open/close loops */

static void test_open_close_loop(void) {
    int round;
    for (round = 0; round < 20; round++) {
        rmqraft_engine *e = NULL;
        REQUIRE_OK(rmqraft_engine_open(engine_props(), &e));
        rmqraft_engine_close(e);
    }
    for (round = 0; round < 5; round++) {
        cluster c;
        rmqraft_entry_meta meta;
        char payload[32];
        int n = snprintf(payload, sizeof payload, "round %d", round);
        memset(&c, 0, sizeof c);
        if (!cluster_open(&c, 1, "flushDiskType = ASYNC_FLUSH\n")) return;
        REQUIRE(wait_leader(&c, ELECTION_WAIT_MS) == 0);
        REQUIRE_OK(rmqraft_group_append(c.members[0], (const uint8_t *)payload, (size_t)n, APPEND_TIMEOUT_MS, &meta));
        REQUIRE(read_equals(c.members[0], meta.index, payload, (size_t)n));
        /* Alternate the order of closing. */
        if (round % 2) {
            rmqraft_group_close(c.members[0]);
            c.members[0] = NULL;
        }
        cluster_close(&c, 1);
    }
}

/* ---------------------------------------------------------------- messages (ABI 0.2) */


#define MSG_TIMEOUT_MS 10000u

/* What a message callback saw. */
typedef struct seen_messages {
    int calls;
    int stop_after; /* return nonzero on this call (1-based); 0: never */
    uint64_t queue_offsets[64];
    uint64_t commitlog_offsets[64];
    char bodies[64][32];
    char tags[64][16];
    char keys[64][32];
    char msg_ids[64][64];
    char offset_msg_ids[64][64];
    char properties[1024];
    char topic[64];
    int records_ok; /* every record started with its TOTALSIZE and a message magic */
    int64_t store_ts;
} seen_messages;

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int on_message(void *userdata, const rmqraft_message_view *m) {
    seen_messages *s = userdata;
    int i = s->calls++;
    if (i == 0) s->records_ok = 1;
    if (i < 64) {
        s->queue_offsets[i] = m->queue_offset;
        s->commitlog_offsets[i] = m->commitlog_offset;
        snprintf(s->bodies[i], sizeof s->bodies[i], "%.*s", (int)m->body_len, (const char *)m->body);
        snprintf(s->tags[i], sizeof s->tags[i], "%s", m->tags);
        snprintf(s->keys[i], sizeof s->keys[i], "%s", m->keys);
        snprintf(s->msg_ids[i], sizeof s->msg_ids[i], "%s", m->msg_id);
        snprintf(s->offset_msg_ids[i], sizeof s->offset_msg_ids[i], "%s", m->offset_msg_id);
    }
    snprintf(s->properties, sizeof s->properties, "%s", m->properties);
    snprintf(s->topic, sizeof s->topic, "%s", m->topic);
    s->store_ts = m->store_timestamp_ms;
    if (m->record_len < 8 || be32(m->record) != m->record_len ||
        (be32(m->record + 4) != 0xDAA320A7u && be32(m->record + 4) != 0xDAA320ABu))
        s->records_ok = 0;
    return s->stop_after != 0 && s->calls >= s->stop_after;
}

/* A message callback that calls back into the library (allowed, except _close). */
typedef struct reentrant_ctx {
    rmqraft_group *g;
    int calls, inner_ok;
} reentrant_ctx;

static int on_message_reentrant(void *userdata, const rmqraft_message_view *m) {
    reentrant_ctx *c = userdata;
    uint64_t min = 0, max = 0;
    int64_t off = 0;
    c->calls++;
    if (rmqraft_queue_offsets(c->g, m->topic, m->queue_id, &min, &max) == RMQRAFT_OK && max > m->queue_offset &&
        rmqraft_consumer_offset_fetch(c->g, "reentrant", m->topic, m->queue_id, &off) == RMQRAFT_OK && off == -1)
        c->inner_ok++;
    return 0;
}

static int on_message_never(void *userdata, const rmqraft_message_view *m) {
    (void)m;
    (*(int *)userdata)++;
    return 0;
}

typedef struct seen_topics {
    int calls;
    int found_rw;   /* TopicTest with 4/4/6 */
    int found_read; /* ReadOnly with perm 4 */
} seen_topics;

static int on_topic(void *userdata, const char *topic, int32_t r, int32_t w, int32_t perm) {
    seen_topics *s = userdata;
    s->calls++;
    if (strcmp(topic, "TopicTest") == 0 && r == 4 && w == 4 && perm == 6) s->found_rw = 1;
    if (strcmp(topic, "ReadOnly") == 0 && perm == 4) s->found_read = 1;
    return 0;
}

/* Async sends: completions counted under a lock. */
typedef struct send_log {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls, ok, outcome_unknown, other, null_res_on_error, off_host_thread;
    char last_msg_id[64];
} send_log;

static void on_send(void *userdata, rmqraft_result r, const rmqraft_send_result *res) {
    send_log *l = userdata;
    pthread_mutex_lock(&l->mu);
    l->calls++;
    if (r == RMQRAFT_OK && res) {
        l->ok++;
        snprintf(l->last_msg_id, sizeof l->last_msg_id, "%s", res->msg_id);
    } else if (r == RMQRAFT_ERR_OUTCOME_UNKNOWN) {
        l->outcome_unknown++;
    } else {
        l->other++;
    }
    if (r != RMQRAFT_OK && res == NULL) l->null_res_on_error++;
    if (!pthread_equal(pthread_self(), g_main_thread)) l->off_host_thread++;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static int send_log_wait(send_log *l, int calls, uint64_t timeout_ms) {
    struct timespec until = abs_deadline(timeout_ms);
    int rc = 0, ok;
    pthread_mutex_lock(&l->mu);
    while (l->calls < calls && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&l->cv, &l->mu, &until);
    ok = l->calls >= calls;
    pthread_mutex_unlock(&l->mu);
    return ok;
}

static rmqraft_message make_message(const char *topic, const char *tags, const char *keys, const char *body) {
    rmqraft_message m;
    memset(&m, 0, sizeof m);
    m.topic = topic;
    m.tags = tags;
    m.keys = keys;
    m.body = (const uint8_t *)body;
    m.body_len = strlen(body);
    m.queue_id = -1;
    return m;
}

static int path_exists(const char *dir, const char *sub) {
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    return stat(path, &st) == 0;
}

static void test_messages(void) {
    cluster c;
    rmqraft_group *g;
    rmqraft_message m;
    rmqraft_send_result res, sentinel_res;
    rmqraft_entry_meta meta;
    seen_messages seen;
    seen_topics topics;
    send_log sends;
    uint64_t min = 77, max = 77, next = 77;
    int64_t off = 77;
    int i, never = 0, accepted;
    static uint8_t big[1025];
    memset(&c, 0, sizeof c);
    memset(&sends, 0, sizeof sends);
    pthread_mutex_init(&sends.mu, NULL);
    pthread_cond_init(&sends.cv, NULL);
    if (!cluster_open(&c, 1, "autoCreateTopicEnable = false\nmaxMessageSize = 1024\n")) return;
    g = c.members[0];
    REQUIRE(wait_leader(&c, ELECTION_WAIT_MS) == 0);
    /* A raw-entry host pays nothing for the message layer: no broker/ until a message call. */
    REQUIRE_OK(rmqraft_group_append(g, (const uint8_t *)"raw", 3, APPEND_TIMEOUT_MS, &meta));
    REQUIRE(!path_exists(c.dir, "dledger-n0/broker"));

    /* Bad input: nothing stored, outputs untouched. */
    memset(&sentinel_res, 0x5a, sizeof sentinel_res);
    res = sentinel_res;
    m = make_message("TopicTest", "TagA", "k1", "body-0");
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_send(NULL, &m, MSG_TIMEOUT_MS, &res));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_send(g, NULL, MSG_TIMEOUT_MS, &res));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_send(g, &m, MSG_TIMEOUT_MS, NULL));
    m.topic = NULL;
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_send(g, &m, MSG_TIMEOUT_MS, &res));
    m.topic = "bad topic!";
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_send(g, &m, MSG_TIMEOUT_MS, &res));
    REQUIRE(strstr(last_error_text(), "illegal character") != NULL);
    m.topic = "TopicTest";
    m.body = NULL;
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_send(g, &m, MSG_TIMEOUT_MS, &res));
    m.body = (const uint8_t *)"x";
    m.body_len = 0;
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_send(g, &m, MSG_TIMEOUT_MS, &res));
    m = make_message("TopicTest", "TagA", "k1", "body-0");
    m.properties = "no equals sign\n";
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_send(g, &m, MSG_TIMEOUT_MS, &res));
    m.properties = NULL;
    /* autoCreateTopicEnable=false: an unknown topic is NO_TOPIC. */
    REQUIRE_RC(RMQRAFT_ERR_NO_TOPIC, rmqraft_message_send(g, &m, MSG_TIMEOUT_MS, &res));
    REQUIRE(strstr(last_error_text(), "TopicTest") != NULL);
    REQUIRE(memcmp(&res, &sentinel_res, sizeof res) == 0);
    REQUIRE(path_exists(c.dir, "dledger-n0/broker")); /* opened by the first message call */

    /* Topics. */
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_topic_update(NULL, "TopicTest", 4, 4, 6, MSG_TIMEOUT_MS));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_topic_update(g, NULL, 4, 4, 6, MSG_TIMEOUT_MS));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_topic_update(g, "bad/topic", 4, 4, 6, MSG_TIMEOUT_MS));
    REQUIRE_OK(rmqraft_topic_update(g, "TopicTest", 4, 4, 6, MSG_TIMEOUT_MS));
    REQUIRE_OK(rmqraft_topic_update(g, "ReadOnly", 1, 1, 4, MSG_TIMEOUT_MS));
    REQUIRE_OK(rmqraft_topic_update(g, "Doomed", 1, 1, 6, MSG_TIMEOUT_MS));
    memset(&topics, 0, sizeof topics);
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_topic_list(g, NULL, &topics));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_topic_list(NULL, on_topic, &topics));
    REQUIRE_OK(rmqraft_topic_list(g, on_topic, &topics));
    REQUIRE(topics.calls >= 3 && topics.found_rw && topics.found_read);
    REQUIRE_OK(rmqraft_topic_delete(g, "Doomed", MSG_TIMEOUT_MS));
    REQUIRE_RC(RMQRAFT_ERR_NO_TOPIC, rmqraft_topic_delete(g, "Doomed", MSG_TIMEOUT_MS));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_topic_delete(g, NULL, MSG_TIMEOUT_MS));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_topic_delete(NULL, "TopicTest", MSG_TIMEOUT_MS));

    /* perm 4 (read only): a send is NO_PERMISSION; over maxMessageSize: TOO_LARGE. */
    m = make_message("ReadOnly", NULL, NULL, "x");
    REQUIRE_RC(RMQRAFT_ERR_NO_PERMISSION, rmqraft_message_send(g, &m, MSG_TIMEOUT_MS, &res));
    memset(big, 'b', sizeof big);
    m = make_message("TopicTest", NULL, NULL, "");
    m.body = big;
    m.body_len = sizeof big;
    REQUIRE_RC(RMQRAFT_ERR_TOO_LARGE, rmqraft_message_send(g, &m, MSG_TIMEOUT_MS, &res));
    REQUIRE(strstr(last_error_text(), "maxMessageSize") != NULL);
    REQUIRE(memcmp(&res, &sentinel_res, sizeof res) == 0);

    /* Sends to queue 1: three messages with tags, keys and properties. */
    for (i = 0; i < 3; i++) {
        char body[16], keys[32];
        snprintf(body, sizeof body, "body-%d", i);
        snprintf(keys, sizeof keys, "k%d shared", i);
        m = make_message("TopicTest", i == 1 ? "TagB" : "TagA", keys, body);
        m.queue_id = 1;
        m.properties = "a=1\nb=x=y\n";
        REQUIRE_OK(rmqraft_message_send(g, &m, MSG_TIMEOUT_MS, &res));
        REQUIRE(res.queue_id == 1 && res.queue_offset == (uint64_t)i);
        REQUIRE(strlen(res.msg_id) == 32 && strlen(res.offset_msg_id) == 32);
        REQUIRE(res.commitlog_offset > 0);
    }
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_queue_offsets(g, "TopicTest", 1, NULL, &max));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_queue_offsets(g, "TopicTest", 1, &min, NULL));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_queue_offsets(g, NULL, 1, &min, &max));
    REQUIRE_RC(RMQRAFT_ERR_NO_TOPIC, rmqraft_queue_offsets(g, "Nope", 1, &min, &max));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_queue_offsets(g, "TopicTest", 9, &min, &max));
    REQUIRE(min == 77 && max == 77);
    REQUIRE_OK(rmqraft_queue_offsets(g, "TopicTest", 1, &min, &max));
    REQUIRE(min == 0 && max == 3);

    /* Pull: all, by tag, stopped early, past the end. */
    memset(&seen, 0, sizeof seen);
    REQUIRE_OK(rmqraft_queue_pull(g, "TopicTest", 1, 0, 32, NULL, on_message, &seen, &next));
    REQUIRE(seen.calls == 3 && next == 3 && seen.records_ok);
    for (i = 0; i < 3; i++) {
        char body[16];
        snprintf(body, sizeof body, "body-%d", i);
        REQUIRE(seen.queue_offsets[i] == (uint64_t)i && strcmp(seen.bodies[i], body) == 0);
    }
    REQUIRE(strcmp(seen.tags[1], "TagB") == 0 && strcmp(seen.keys[0], "k0 shared") == 0);
    REQUIRE(strcmp(seen.msg_ids[2], res.msg_id) == 0 && strcmp(seen.offset_msg_ids[2], res.offset_msg_id) == 0);
    REQUIRE(seen.commitlog_offsets[2] == res.commitlog_offset);
    REQUIRE(strstr(seen.properties, "a=1\n") && strstr(seen.properties, "b=x=y\n"));
    REQUIRE(strstr(seen.properties, "UNIQ_KEY=") && strstr(seen.properties, "TAGS=TagA\n"));
    REQUIRE(strcmp(seen.topic, "TopicTest") == 0 && seen.store_ts > 0);
    memset(&seen, 0, sizeof seen);
    REQUIRE_OK(rmqraft_queue_pull(g, "TopicTest", 1, 0, 32, "TagB || TagC", on_message, &seen, &next));
    REQUIRE(seen.calls == 1 && strcmp(seen.bodies[0], "body-1") == 0 && next == 3);
    memset(&seen, 0, sizeof seen);
    seen.stop_after = 1;
    REQUIRE_OK(rmqraft_queue_pull(g, "TopicTest", 1, 0, 32, "*", on_message, &seen, &next));
    REQUIRE(seen.calls == 1 && next == 1);
    memset(&seen, 0, sizeof seen);
    REQUIRE_OK(rmqraft_queue_pull(g, "TopicTest", 1, 2, 1, "", on_message, &seen, &next));
    REQUIRE(seen.calls == 1 && next == 3 && seen.queue_offsets[0] == 2);
    next = 77;
    REQUIRE_OK(rmqraft_queue_pull(g, "TopicTest", 1, 100, 32, NULL, on_message_never, &never, &next));
    REQUIRE(never == 0 && next == 3);
    REQUIRE_OK(rmqraft_queue_pull(g, "TopicTest", 1, 3, 32, NULL, on_message_never, &never, &next));
    REQUIRE(never == 0 && next == 3);
    REQUIRE_OK(rmqraft_queue_pull(g, "TopicTest", 0, 0, 32, NULL, on_message_never, &never, &next));
    REQUIRE(never == 0 && next == 0);
    next = 77;
    REQUIRE_RC(RMQRAFT_ERR_NO_TOPIC, rmqraft_queue_pull(g, "Nope", 0, 0, 32, NULL, on_message_never, &never, &next));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_queue_pull(g, "TopicTest", 4, 0, 32, NULL, on_message_never, &never, &next));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_queue_pull(NULL, "TopicTest", 1, 0, 32, NULL, on_message_never, &never, &next));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_queue_pull(g, NULL, 1, 0, 32, NULL, on_message_never, &never, &next));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_queue_pull(g, "TopicTest", 1, 0, 32, NULL, NULL, &never, &next));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_queue_pull(g, "TopicTest", 1, 0, 32, NULL, on_message_never, &never, NULL));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_queue_pull(g, "TopicTest", 1, 0, 0, NULL, on_message_never, &never, &next));
    REQUIRE(never == 0 && next == 77);
    {
        reentrant_ctx rc_ctx = {NULL, 0, 0};
        rc_ctx.g = g;
        REQUIRE_OK(rmqraft_queue_pull(g, "TopicTest", 1, 0, 32, NULL, on_message_reentrant, &rc_ctx, &next));
        REQUIRE(rc_ctx.calls == 3 && rc_ctx.inner_ok == 3);
    }
    {
        /* Properties over RocketMQ's 32767 bytes: refused before anything is stored. */
        static char huge[40000];
        memset(huge, 'v', sizeof huge - 1);
        memcpy(huge, "big=", 4);
        m = make_message("TopicTest", NULL, NULL, "x");
        m.properties = huge;
        REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_send(g, &m, MSG_TIMEOUT_MS, &res));
        REQUIRE(strstr(last_error_text(), "32767") != NULL);
        REQUIRE_OK(rmqraft_queue_offsets(g, "TopicTest", 1, &min, &max));
        REQUIRE(max == 3);
    }

    /* Lookups: by key (each KEYS element), by both ids. */
    memset(&seen, 0, sizeof seen);
    REQUIRE_OK(rmqraft_message_query_by_key(g, "TopicTest", "k2", 32, 0, 0, on_message, &seen));
    REQUIRE(seen.calls == 1 && strcmp(seen.bodies[0], "body-2") == 0);
    memset(&seen, 0, sizeof seen);
    REQUIRE_OK(rmqraft_message_query_by_key(g, "TopicTest", "shared", 32, 0, 0, on_message, &seen));
    REQUIRE(seen.calls == 3 && strcmp(seen.bodies[0], "body-2") == 0); /* newest first */
    memset(&seen, 0, sizeof seen);
    REQUIRE_OK(rmqraft_message_query_by_key(g, "TopicTest", "shared", 2, 0, 0, on_message, &seen));
    REQUIRE(seen.calls == 2);
    REQUIRE_OK(rmqraft_message_query_by_key(g, "TopicTest", "shared", 32, 1, 2, on_message_never, &never));
    REQUIRE_OK(rmqraft_message_query_by_key(g, "TopicTest", "no-such-key", 32, 0, 0, on_message_never, &never));
    REQUIRE(never == 0);
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_query_by_key(g, "TopicTest", NULL, 32, 0, 0, on_message_never, &never));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_query_by_key(g, NULL, "k1", 32, 0, 0, on_message_never, &never));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_query_by_key(g, "TopicTest", "k1", 32, 0, 0, NULL, &never));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_query_by_key(NULL, "TopicTest", "k1", 32, 0, 0, on_message_never, &never));
    memset(&seen, 0, sizeof seen);
    REQUIRE_OK(rmqraft_message_view_by_id(g, res.msg_id, on_message, &seen));
    REQUIRE(seen.calls == 1 && seen.commitlog_offsets[0] == res.commitlog_offset);
    memset(&seen, 0, sizeof seen);
    REQUIRE_OK(rmqraft_message_view_by_id(g, res.offset_msg_id, on_message, &seen));
    REQUIRE(seen.calls == 1 && strcmp(seen.msg_ids[0], res.msg_id) == 0);
    REQUIRE_RC(RMQRAFT_ERR_NOT_FOUND, rmqraft_message_view_by_id(g, "0123456789ABCDEF0123456789ABCDEF", on_message_never, &never));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_view_by_id(g, NULL, on_message_never, &never));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_view_by_id(g, res.msg_id, NULL, &never));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_view_by_id(NULL, res.msg_id, on_message_never, &never));
    REQUIRE(never == 0);

    /* Consumer offsets: -1, then the committed value. */
    REQUIRE_OK(rmqraft_consumer_offset_fetch(g, "cg", "TopicTest", 1, &off));
    REQUIRE(off == -1);
    REQUIRE_OK(rmqraft_consumer_offset_commit(g, "cg", "TopicTest", 1, 2, MSG_TIMEOUT_MS));
    REQUIRE_OK(rmqraft_consumer_offset_fetch(g, "cg", "TopicTest", 1, &off));
    REQUIRE(off == 2);
    off = 77;
    REQUIRE_RC(RMQRAFT_ERR_NO_TOPIC, rmqraft_consumer_offset_commit(g, "cg", "Nope", 0, 1, MSG_TIMEOUT_MS));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_consumer_offset_commit(g, "cg", "TopicTest", 9, 1, MSG_TIMEOUT_MS));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_consumer_offset_commit(g, NULL, "TopicTest", 1, 1, MSG_TIMEOUT_MS));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_consumer_offset_commit(g, "cg", NULL, 1, 1, MSG_TIMEOUT_MS));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_consumer_offset_commit(NULL, "cg", "TopicTest", 1, 1, MSG_TIMEOUT_MS));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_consumer_offset_fetch(g, "cg", "TopicTest", 1, NULL));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_consumer_offset_fetch(g, NULL, "TopicTest", 1, &off));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_consumer_offset_fetch(NULL, "cg", "TopicTest", 1, &off));
    REQUIRE(off == 77);

    /* send_async: exactly once, on a library thread, res NULL unless OK; refused: never. */
    m = make_message("TopicTest", "TagA", "async", "async-body");
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_send_async(g, &m, NULL, &sends));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_send_async(g, NULL, on_send, &sends));
    REQUIRE_RC(RMQRAFT_ERR_INVALID_ARGUMENT, rmqraft_message_send_async(NULL, &m, on_send, &sends));
    m.body = big;
    m.body_len = sizeof big;
    REQUIRE_RC(RMQRAFT_ERR_TOO_LARGE, rmqraft_message_send_async(g, &m, on_send, &sends));
    m = make_message("ReadOnly", NULL, NULL, "x");
    REQUIRE_RC(RMQRAFT_ERR_NO_PERMISSION, rmqraft_message_send_async(g, &m, on_send, &sends));
    m = make_message("TopicTest", "TagA", "async", "async-body");
    REQUIRE_OK(rmqraft_message_send_async(g, &m, on_send, &sends));
    REQUIRE(send_log_wait(&sends, 1, 20000));
    pthread_mutex_lock(&sends.mu);
    i = sends.calls == 1 && sends.ok == 1 && sends.off_host_thread == 1 && strlen(sends.last_msg_id) == 32;
    pthread_mutex_unlock(&sends.mu);
    REQUIRE(i);
    /* Visible once dispatched: look it up by the id the callback gave. */
    {
        uint64_t deadline = deadline_in(10000);
        memset(&seen, 0, sizeof seen);
        while (seen.calls == 0 && now_ms() < deadline) {
            rmqraft_result r = rmqraft_message_view_by_id(g, sends.last_msg_id, on_message, &seen);
            REQUIRE(r == RMQRAFT_OK || r == RMQRAFT_ERR_NOT_FOUND);
            if (seen.calls == 0) poll_pause();
        }
        REQUIRE(seen.calls == 1 && strcmp(seen.bodies[0], "async-body") == 0);
    }
    /* Sends in flight at close: each accepted one completes exactly once, by close's return. */
    accepted = 0;
    for (i = 0; i < 50; i++) {
        if (rmqraft_message_send_async(g, &m, on_send, &sends) == RMQRAFT_OK) accepted++;
    }
    rmqraft_group_close(g);
    c.members[0] = NULL;
    pthread_mutex_lock(&sends.mu);
    i = sends.calls == 1 + accepted && sends.other == 0 && sends.null_res_on_error == sends.outcome_unknown;
    pthread_mutex_unlock(&sends.mu);
    REQUIRE(i);
    cluster_close(&c, 1);
    pthread_mutex_destroy(&sends.mu);
    pthread_cond_destroy(&sends.cv);
}

/* Three members: sends on the leader, reads on a follower, NOT_LEADER there. */
static void test_messages_three(void) {
    enum { N = 20 };
    cluster c;
    rmqraft_message m;
    rmqraft_send_result res[N], r1;
    seen_messages seen;
    send_log sends;
    rmqraft_group *lg, *fg;
    uint64_t min = 0, max = 0, next = 0, deadline;
    int64_t off = -7;
    int i, leader, follower, never = 0;
    memset(&c, 0, sizeof c);
    memset(&sends, 0, sizeof sends);
    pthread_mutex_init(&sends.mu, NULL);
    pthread_cond_init(&sends.cv, NULL);
    if (!cluster_open(&c, 3, "")) return;
    leader = wait_leader(&c, ELECTION_WAIT_MS);
    REQUIRE(leader >= 0);
    follower = (leader + 1) % 3;
    lg = c.members[leader];
    fg = c.members[follower];
    /* Auto-created topic (8 queues): every message to queue 2. */
    for (i = 0; i < N; i++) {
        char body[16], key[16];
        snprintf(body, sizeof body, "m-%d", i);
        snprintf(key, sizeof key, "key%d", i);
        m = make_message("TopicAuto", "TagA", key, body);
        m.queue_id = 2;
        REQUIRE_OK(rmqraft_message_send(lg, &m, MSG_TIMEOUT_MS, &res[i]));
        REQUIRE(res[i].queue_offset == (uint64_t)i);
    }
    /* The follower refuses writes. */
    m = make_message("TopicAuto", NULL, NULL, "x");
    REQUIRE_RC(RMQRAFT_ERR_NOT_LEADER, rmqraft_message_send(fg, &m, MSG_TIMEOUT_MS, &r1));
    REQUIRE_RC(RMQRAFT_ERR_NOT_LEADER, rmqraft_message_send_async(fg, &m, on_send, &sends));
    REQUIRE_RC(RMQRAFT_ERR_NOT_LEADER, rmqraft_topic_update(fg, "Other", 1, 1, 6, MSG_TIMEOUT_MS));
    REQUIRE_RC(RMQRAFT_ERR_NOT_LEADER, rmqraft_consumer_offset_commit(fg, "cg", "TopicAuto", 2, 5, MSG_TIMEOUT_MS));
    /* The follower sees every committed message, in queue order. */
    deadline = deadline_in(15000);
    while (now_ms() < deadline) {
        if (rmqraft_queue_offsets(fg, "TopicAuto", 2, &min, &max) == RMQRAFT_OK && max == N) break;
        poll_pause();
    }
    REQUIRE(min == 0 && max == N);
    memset(&seen, 0, sizeof seen);
    REQUIRE_OK(rmqraft_queue_pull(fg, "TopicAuto", 2, 0, 64, NULL, on_message, &seen, &next));
    REQUIRE(seen.calls == N && next == N && seen.records_ok);
    for (i = 0; i < N; i++) {
        REQUIRE(seen.queue_offsets[i] == (uint64_t)i);
        REQUIRE(strcmp(seen.msg_ids[i], res[i].msg_id) == 0);
        REQUIRE(seen.commitlog_offsets[i] == res[i].commitlog_offset);
    }
    REQUIRE_OK(rmqraft_queue_pull(fg, "TopicAuto", 2, 1000, 64, NULL, on_message_never, &never, &next));
    REQUIRE(never == 0 && next == N);
    /* Both ids and a key resolve on the follower. */
    memset(&seen, 0, sizeof seen);
    REQUIRE_OK(rmqraft_message_view_by_id(fg, res[7].offset_msg_id, on_message, &seen));
    REQUIRE_OK(rmqraft_message_view_by_id(fg, res[7].msg_id, on_message, &seen));
    REQUIRE(seen.calls == 2 && strcmp(seen.bodies[0], "m-7") == 0 && strcmp(seen.bodies[1], "m-7") == 0);
    memset(&seen, 0, sizeof seen);
    REQUIRE_OK(rmqraft_message_query_by_key(fg, "TopicAuto", "key11", 32, 0, 0, on_message, &seen));
    REQUIRE(seen.calls == 1 && strcmp(seen.bodies[0], "m-11") == 0);
    /* A consumer offset committed on the leader reaches the follower. */
    REQUIRE_OK(rmqraft_consumer_offset_commit(lg, "cg", "TopicAuto", 2, 5, MSG_TIMEOUT_MS));
    deadline = deadline_in(15000);
    while (now_ms() < deadline) {
        if (rmqraft_consumer_offset_fetch(fg, "cg", "TopicAuto", 2, &off) == RMQRAFT_OK && off == 5) break;
        poll_pause();
    }
    REQUIRE(off == 5);
    REQUIRE(sends.calls == 0);
    cluster_close(&c, 1);
    pthread_mutex_destroy(&sends.mu);
    pthread_cond_destroy(&sends.cv);
}

/* ---------------------------------------------------------------- main */

static const struct {
    const char *name;
    void (*run)(void);
} tests[] = {
    {"version", test_version},
    {"result_names", test_result_names},
    {"last_error", test_last_error},
    {"engine_open_close", test_engine_open_close},
    {"group_open_errors", test_group_open_errors},
    {"single_member", test_single_member},
    {"callbacks", test_callbacks},
    {"busy", test_busy},
    {"concurrent_appends", test_concurrent_appends},
    {"three_members", test_three_members},
    {"wait_leader", test_wait_leader},
    {"idempotent", test_idempotent},
    {"restart", test_restart},
    {"closed", test_closed},
    {"open_close_loop", test_open_close_loop},
    {"messages", test_messages},
    {"messages_three", test_messages_three},
};

int main(int argc, char **argv) {
    size_t i;
    int a, ran = 0;
    g_main_thread = pthread_self();
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int selected = argc < 2;
        for (a = 1; a < argc; a++) selected |= strcmp(argv[a], tests[i].name) == 0;
        if (!selected) continue;
        {
            int before = g_failures;
            uint64_t started = now_ms();
            fprintf(stderr, "test %s ...\n", tests[i].name);
            tests[i].run();
            fprintf(stderr, "test %s %s (%llu ms)\n", tests[i].name, g_failures == before ? "ok" : "FAILED",
                    (unsigned long long)(now_ms() - started));
            ran++;
        }
    }
    if (ran == 0) {
        fprintf(stderr, "no test matched\n");
        return 2;
    }
    fprintf(stderr, "%d test(s), %d failure(s)\n", ran, g_failures);
    return g_failures == 0 ? 0 : 1;
}
