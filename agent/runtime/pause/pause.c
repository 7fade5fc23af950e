/*
 * The pod sandbox process: PID 1 of every workload's pod, holding its
 * namespaces open while the workload's container comes and goes. Built
 * statically (no libc in the image) and packed into the sandbox image by
 * tools/mkimage.py. It exits 0 at once on SIGINT or SIGTERM, reaps children
 * handed to it (as PID 1 it inherits orphans in a shared PID namespace),
 * and otherwise sleeps.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAUSE_VERSION "hypercore-pause 1"

static void on_stop(int signo)
{
	(void)signo;
	_exit(0);
}

static void on_child(int signo)
{
	int saved = errno;

	(void)signo;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

static int handle(int signo, void (*fn)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sa.sa_flags = signo == SIGCHLD ? SA_NOCLDSTOP | SA_RESTART : 0;
	sigemptyset(&sa.sa_mask);
	return sigaction(signo, &sa, NULL);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts(PAUSE_VERSION);
		return 0;
	}
	if (handle(SIGINT, on_stop) < 0 || handle(SIGTERM, on_stop) < 0 ||
	    handle(SIGCHLD, on_child) < 0) {
		perror("pause: sigaction");
		return 1;
	}
	/* PID 1 ignores signals it has no handler for, so the handlers above
	 * are what make a plain SIGTERM stop the pod quickly */
	for (;;)
		pause();
}
