/* Leftovers for the next run: `ipc_leftovers make` creates a keyed SysV
 * shared memory segment, semaphore set and message queue (with a message
 * in it), a POSIX message queue, POSIX shared memory and a named
 * semaphore (both files in /dev/shm), a file in /w, and takes an flock
 * and a POSIX lock on /tmp/lock; then it leaves a detached process
 * holding the locks and attached to the shared memory, and exits.
 *
 * `ipc_leftovers check`, run next in the same container, reports what it
 * can still see, one "<object> present|absent" or "<lock> held|free" line
 * each.
 *
 * Must get: the next run sees no SysV object, no POSIX message queue and
 * no lock (every run has a fresh IPC namespace, and the holder is dead);
 * the files (/dev/shm, /w, /tmp) stay until the host resets the
 * container, after which they are gone too.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <mqueue.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEY 0x686f7374
#define QUEUE "/hostile-queue"
#define SHM "/hostile-shm"
#define SEM "/hostile-sem"
#define LOCK_FILE "/tmp/lock"

static void die(const char *what) {
    perror(what);
    exit(3);
}

static int make(void) {
    int shm = shmget(KEY, 1 << 20, IPC_CREAT | 0666);
    if (shm < 0)
        die("shmget");
    char *attached = shmat(shm, NULL, 0);
    if (attached == (void *)-1)
        die("shmat");
    memset(attached, 'h', 1 << 20);
    if (semget(KEY, 4, IPC_CREAT | 0666) < 0)
        die("semget");
    int msg = msgget(KEY, IPC_CREAT | 0666);
    if (msg < 0)
        die("msgget");
    struct {
        long type;
        char text[16];
    } message = {1, "for the next run"};
    if (msgsnd(msg, &message, sizeof message.text, 0) != 0)
        die("msgsnd");
    mqd_t queue = mq_open(QUEUE, O_CREAT | O_RDWR, 0666, NULL);
    if (queue == (mqd_t)-1)
        die("mq_open");
    if (mq_send(queue, "left", 4, 0) != 0)
        die("mq_send");
    int posix_shm = shm_open(SHM, O_CREAT | O_RDWR, 0666);
    if (posix_shm < 0 || ftruncate(posix_shm, 4096) != 0)
        die("shm_open");
    sem_t *sem = sem_open(SEM, O_CREAT, 0666, 1);
    if (sem == SEM_FAILED)
        die("sem_open");
    int file = open("/w/left", O_CREAT | O_WRONLY, 0644);
    if (file < 0)
        die("/w/left");
    close(file);
    int lock = open(LOCK_FILE, O_CREAT | O_RDWR, 0666);
    if (lock < 0)
        die(LOCK_FILE);
    if (flock(lock, LOCK_EX) != 0)
        die("flock");
    struct flock whole = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(lock, F_SETLK, &whole) != 0)
        die("F_SETLK");
    /* The holder inherits the flock (same open file) and the attachment;
       the POSIX lock belongs to this process, so the holder takes it
       again once this process is gone. */
    pid_t holder = fork();
    if (holder < 0)
        die("fork");
    if (holder == 0) {
        setsid();
        close(0);
        close(1);
        close(2);
        struct flock again = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        fcntl(lock, F_SETLKW, &again);
        for (;;)
            pause();
    }
    printf("made\n");
    return 0;
}

static int check(void) {
    printf("sysv shm %s\n", shmget(KEY, 0, 0) >= 0 ? "present" : "absent");
    printf("sysv sem %s\n", semget(KEY, 0, 0) >= 0 ? "present" : "absent");
    printf("sysv msg %s\n", msgget(KEY, 0) >= 0 ? "present" : "absent");
    mqd_t queue = mq_open(QUEUE, O_RDONLY);
    printf("posix mq %s\n", queue != (mqd_t)-1 ? "present" : "absent");
    int posix_shm = shm_open(SHM, O_RDONLY, 0);
    printf("posix shm %s\n", posix_shm >= 0 ? "present" : "absent");
    sem_t *sem = sem_open(SEM, 0);
    printf("posix sem %s\n", sem != SEM_FAILED ? "present" : "absent");
    struct stat st;
    printf("/w/left %s\n", stat("/w/left", &st) == 0 ? "present" : "absent");
    int lock = open(LOCK_FILE, O_RDWR);
    if (lock < 0) {
        printf("lock file absent\n");
        return 0;
    }
    printf("flock %s\n", flock(lock, LOCK_EX | LOCK_NB) == 0 ? "free" : "held");
    struct flock query = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    fcntl(lock, F_GETLK, &query);
    printf("posix lock %s\n", query.l_type == F_UNLCK ? "free" : "held");
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "make"))
        return make();
    if (argc > 1 && !strcmp(argv[1], "check"))
        return check();
    return 2;
}
