/*
 * Built against an installed prefix with `pkg-config --cflags --libs rmqraft` only: opens
 * a one-member group, appends an entry and reads it back.
 */
#define _GNU_SOURCE
#include <rmqraft.h>

#include "../c/testutil.h"

int main(void) {
    cluster c;
    rmqraft_entry_meta meta;
    const char *msg = "hello from an installed librmqraft";
    int leader, ok;
    memset(&c, 0, sizeof c);
    if (rmqraft_version() != (((uint32_t)RMQRAFT_VERSION_MAJOR << 16) | ((uint32_t)RMQRAFT_VERSION_MINOR << 8) |
                              (uint32_t)RMQRAFT_VERSION_PATCH)) {
        fprintf(stderr, "header %d.%d.%d does not match library %s\n", RMQRAFT_VERSION_MAJOR, RMQRAFT_VERSION_MINOR,
                RMQRAFT_VERSION_PATCH, rmqraft_version_string());
        return 1;
    }
    if (!cluster_open(&c, 1, "")) return 1;
    leader = wait_leader(&c, 15000);
    ok = leader == 0 &&
         rmqraft_group_append(c.members[0], (const uint8_t *)msg, strlen(msg), 10000, &meta) == RMQRAFT_OK &&
         read_equals(c.members[0], meta.index, msg, strlen(msg));
    if (!ok) fprintf(stderr, "pkg-config hello: %s\n", last_error_text());
    cluster_close(&c, 1);
    printf("pkg-config hello: %s (librmqraft %s)\n", ok ? "ok" : "FAILED", rmqraft_version_string());
    return ok ? 0 : 1;
}
