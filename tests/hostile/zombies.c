/* Zombies left behind: forks 20 children that exit at once and are never
 * waited for, and a child that does the same with 10 children of its own
 * and then sleeps; then exits while all of them are zombies (the sleeping
 * child included, once it is killed).
 *
 * Must get: ok, and every zombie reaped by the time the reply comes: init
 * has no child left, and the next run sees no process but init and
 * itself.
 */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static void spawn_zombies(int count) {
    for (int i = 0; i < count; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
    }
}

int main(void) {
    spawn_zombies(20);
    pid_t parent_of_zombies = fork();
    if (parent_of_zombies == 0) {
        spawn_zombies(10);
        for (;;)
            pause();
    }
    /* Give the children time to exit and become zombies. */
    struct timespec wait = {0, 100 * 1000 * 1000};
    nanosleep(&wait, NULL);
    printf("left zombies\n");
    return 0;
}
