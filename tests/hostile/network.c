/* Network access: TCP to a port the host listens on at 127.0.0.1
 * (argv[1]) and to well-known loopback ports, TCP and UDP to outside
 * addresses, IPv6 loopback, DNS, a raw and a packet socket, bringing the
 * loopback up, and a connect to an abstract unix socket the host listens
 * on (argv[2]; abstract names belong to the network namespace).
 *
 * Must get: no connection of any kind. Every connect fails at once
 * (ENETUNREACH: the container's only interface, lo, is down; or
 * ECONNREFUSED; EADDRNOTAVAIL for IPv6, which has no address), DNS fails (no resolver), raw and packet sockets and the
 * interface change fail with EPERM (a packet socket, like netlink and vsock
 * ones, with EAFNOSUPPORT from the default seccomp policy), and the
 * abstract socket is not found
 * (ECONNREFUSED). One line per attempt, "<what> <result>", where the
 * result is an errno name, "connected", "timeout", "resolved" or "dns
 * failed"; exit 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A non-blocking connect given one second to complete. */
static void try_connect(const char *what, int domain, int type, const struct sockaddr *addr,
                        socklen_t len) {
    int fd = socket(domain, type | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        printf("%s socket %s\n", what, strerrorname_np(errno));
        return;
    }
    int ret = connect(fd, addr, len);
    if (ret == 0) {
        printf("%s connected\n", what);
    } else if (errno == EINPROGRESS) {
        struct pollfd poll_fd = {fd, POLLOUT, 0};
        if (poll(&poll_fd, 1, 1000) == 0) {
            printf("%s timeout\n", what);
        } else {
            int error = 0;
            socklen_t size = sizeof error;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size);
            if (error == 0)
                printf("%s connected\n", what);
            else
                printf("%s %s\n", what, strerrorname_np(error));
        }
    } else {
        printf("%s %s\n", what, strerrorname_np(errno));
    }
    close(fd);
}

static void tcp4(const char *what, const char *ip, int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &addr.sin_addr);
    try_connect(what, AF_INET, SOCK_STREAM, (struct sockaddr *)&addr, sizeof addr);
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    int host_port = atoi(argv[1]);
    tcp4("tcp 127.0.0.1 host port", "127.0.0.1", host_port);
    tcp4("tcp 127.0.0.1:22", "127.0.0.1", 22);
    tcp4("tcp 127.0.0.1:80", "127.0.0.1", 80);
    tcp4("tcp 1.1.1.1:443", "1.1.1.1", 443);
    tcp4("tcp 10.0.2.2:22", "10.0.2.2", 22);

    struct sockaddr_in6 addr6 = {.sin6_family = AF_INET6, .sin6_port = htons(host_port)};
    addr6.sin6_addr = in6addr_loopback;
    try_connect("tcp [::1] host port", AF_INET6, SOCK_STREAM, (struct sockaddr *)&addr6,
                sizeof addr6);

    struct sockaddr_in dns = {.sin_family = AF_INET, .sin_port = htons(53)};
    inet_pton(AF_INET, "8.8.8.8", &dns.sin_addr);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    if (sendto(udp, "x", 1, 0, (struct sockaddr *)&dns, sizeof dns) == 1)
        printf("udp 8.8.8.8:53 sent\n");
    else
        printf("udp 8.8.8.8:53 %s\n", strerrorname_np(errno));
    close(udp);

    const char *names[] = {"example.com", "localhost"};
    for (int i = 0; i < 2; i++) {
        struct addrinfo *found = NULL;
        int ret = getaddrinfo(names[i], "80", NULL, &found);
        if (ret == 0) {
            printf("dns %s resolved\n", names[i]);
            freeaddrinfo(found);
        } else {
            printf("dns %s dns failed (%s)\n", names[i], gai_strerror(ret));
        }
    }

    int raw = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    printf("raw socket %s\n", raw >= 0 ? "opened" : strerrorname_np(errno));
    int packet = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    printf("packet socket %s\n", packet >= 0 ? "opened" : strerrorname_np(errno));
    /* Netlink queues are memory no cgroup counts; vsock reaches the
     * hypervisor past the network namespace. */
    int netlink = socket(AF_NETLINK, SOCK_RAW, 0);
    printf("netlink socket %s\n", netlink >= 0 ? "opened" : strerrorname_np(errno));
    int vsock = socket(AF_VSOCK, SOCK_STREAM, 0);
    printf("vsock socket %s\n", vsock >= 0 ? "opened" : strerrorname_np(errno));

    int ctl = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strcpy(request.ifr_name, "lo");
    ioctl(ctl, SIOCGIFFLAGS, &request);
    printf("lo is %s\n", request.ifr_flags & IFF_UP ? "up" : "down");
    request.ifr_flags |= IFF_UP;
    if (ioctl(ctl, SIOCSIFFLAGS, &request) == 0)
        printf("lo up succeeded\n");
    else
        printf("lo up %s\n", strerrorname_np(errno));
    close(ctl);

    struct sockaddr_un unix_addr = {.sun_family = AF_UNIX};
    size_t name_len = strlen(argv[2]);
    if (name_len + 1 > sizeof unix_addr.sun_path)
        return 2;
    /* Abstract: a leading NUL, then the name. */
    memcpy(unix_addr.sun_path + 1, argv[2], name_len);
    try_connect("abstract unix", AF_UNIX, SOCK_STREAM, (struct sockaddr *)&unix_addr,
                (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + name_len));
    return 0;
}
