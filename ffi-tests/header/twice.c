/* The header compiles as C99 with every warning as an error, included twice. */
#include "rmqraft.h"
#include "rmqraft.h"

int main(void) {
    rmqraft_result r = RMQRAFT_OK;
    rmqraft_role role = RMQRAFT_ROLE_LEADER;
    rmqraft_entry_meta meta = {1, 2, 3};
    rmqraft_group_state st;
    rmqraft_append_cb append_cb = 0;
    rmqraft_role_cb role_cb = 0;
    (void)st;
    (void)append_cb;
    (void)role_cb;
    return (int)r + (int)role - 1 + (int)(meta.index - 1) +
           (RMQRAFT_VERSION_MAJOR * 0) + (RMQRAFT_VERSION_MINOR * 0) + (RMQRAFT_VERSION_PATCH * 0);
}
