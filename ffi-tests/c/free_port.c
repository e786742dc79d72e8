/* For scripts that start a program on a loopback port:
 *   free_port        prints a port the OS just handed out (and releases it);
 *   free_port hold   prints a port it keeps listening on until killed (at most 60 s). */
#define _GNU_SOURCE
#include "testutil.h"

int main(int argc, char **argv) {
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    int fd;
    if (argc < 2 || strcmp(argv[1], "hold") != 0) {
        int port = free_port();
        if (port == 0) {
            perror("free_port");
            return 1;
        }
        printf("%d\n", port);
        return 0;
    }
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 1) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        perror("free_port hold");
        return 1;
    }
    printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    sleep(60);
    return 0;
}
