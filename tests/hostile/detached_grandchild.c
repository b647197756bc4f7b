/* A grandchild that detaches and outlives the program: the program forks
 * a child that calls setsid and forks again, so the grandchild is in a
 * session and process group of its own and its parent is gone. The
 * grandchild ignores every signal it can, closes its standard
 * descriptors, writes its pid to /w/grandchild.pid and waits for ever. The
 * program exits 0 as soon as the pid file is there.
 *
 * `detached_grandchild respawn` does the same with a grandchild that
 * keeps forking a successor and exiting, so that its pid changes all the
 * time (every successor writes its pid).
 *
 * `detached_grandchild check`, run next, prints "grandchild <pid> alive"
 * or "grandchild <pid> gone" for the pid in the file, then every other
 * process it can see but init and itself, "other <pid> <name>".
 *
 * Must get: the first run's verdict is ok, and by the time the reply
 * comes the grandchild is dead and reaped: the check prints "gone" and
 * nothing else.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PID_FILE "/w/grandchild.pid"

static void write_pid(void) {
    char text[32];
    int len = snprintf(text, sizeof text, "%d\n", getpid());
    int fd = open(PID_FILE ".tmp", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0)
        return;
    (void)!write(fd, text, (size_t)len);
    close(fd);
    rename(PID_FILE ".tmp", PID_FILE);
}

static void become_daemon(int respawn) {
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_IGN);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    write_pid();
    if (!respawn)
        for (;;)
            pause();
    for (;;) {
        pid_t successor = fork();
        if (successor == 0) {
            write_pid();
            continue;
        }
        if (successor > 0)
            _exit(0);
    }
}

static int check(void) {
    FILE *file = fopen(PID_FILE, "r");
    int pid = 0;
    if (file == NULL || fscanf(file, "%d", &pid) != 1) {
        printf("no pid file\n");
        return 3;
    }
    fclose(file);
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d", pid);
    printf("grandchild %d %s\n", pid, stat(path, &st) == 0 ? "alive" : "gone");
    DIR *proc = opendir("/proc");
    if (proc == NULL)
        return 4;
    for (struct dirent *entry; (entry = readdir(proc)) != NULL;) {
        if (!isdigit((unsigned char)entry->d_name[0]))
            continue;
        int other = atoi(entry->d_name);
        if (other == 1 || other == getpid())
            continue;
        char name[64] = "?";
        snprintf(path, sizeof path, "/proc/%d/comm", other);
        FILE *comm = fopen(path, "r");
        if (comm != NULL) {
            if (fgets(name, sizeof name, comm) != NULL)
                name[strcspn(name, "\n")] = 0;
            fclose(comm);
        }
        printf("other %d %s\n", other, name);
    }
    closedir(proc);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "daemon";
    if (!strcmp(mode, "check"))
        return check();
    int respawn = !strcmp(mode, "respawn");
    unlink(PID_FILE);
    pid_t child = fork();
    if (child < 0)
        return 2;
    if (child == 0) {
        setsid();
        pid_t grandchild = fork();
        if (grandchild == 0)
            become_daemon(respawn);
        _exit(grandchild > 0 ? 0 : 1);
    }
    int status;
    waitpid(child, &status, 0);
    struct stat st;
    for (int i = 0; i < 1000 && stat(PID_FILE, &st) != 0; i++) {
        struct timespec tick = {0, 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    printf("detached\n");
    return 0;
}
