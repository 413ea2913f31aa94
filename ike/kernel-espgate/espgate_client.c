/*
 * espgate's control socket client: see espgate_client.h.
 */

#include "espgate_client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <daemon.h>
#include <threading/mutex.h>
#include <threading/thread.h>

/** The longest answer read (an sa_query or spi_alloc answer is short). */
#define MAX_ANSWER 65536

/** How long to wait for an answer, in seconds. */
#define ANSWER_TIMEOUT 10

typedef struct private_espgate_client_t private_espgate_client_t;

struct private_espgate_client_t {

	espgate_client_t public;

	/** The socket's path. */
	char *path;

	/** The request connection, -1 when closed. */
	int fd;

	/** One request at a time on it. */
	mutex_t *mutex;

	/** The watching thread, if started. */
	thread_t *watcher;

	espgate_event_cb_t cb;
	void *cb_data;
};

/**
 * Connects to the socket; -1 (errno set) if it cannot.
 */
static int connect_to(char *path, int timeout)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = timeout };
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path))
	{
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
	{
		return -1;
	}
	if (connect(fd, (struct sockaddr*)&addr, sizeof(addr)) < 0)
	{
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	if (timeout)
	{
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	return fd;
}

/**
 * Writes all of `buf`.
 */
static bool write_all(int fd, const char *buf, size_t len)
{
	while (len)
	{
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n <= 0)
		{
			if (n < 0 && errno == EINTR)
			{
				continue;
			}
			return FALSE;
		}
		buf += n;
		len -= n;
	}
	return TRUE;
}

/**
 * Reads one line (without its newline) into an allocated string.
 */
static char *read_line(int fd)
{
	char *buf = malloc(MAX_ANSWER);
	size_t len = 0;

	while (len < MAX_ANSWER - 1)
	{
		ssize_t n = recv(fd, buf + len, 1, 0);
		if (n <= 0)
		{
			if (n < 0 && errno == EINTR)
			{
				continue;
			}
			if (n == 0)
			{	/* the node closed the connection */
				errno = ECONNRESET;
			}
			free(buf);
			return NULL;
		}
		if (buf[len] == '\n')
		{
			buf[len] = '\0';
			return buf;
		}
		len++;
	}
	free(buf);
	errno = EMSGSIZE;
	return NULL;
}

/**
 * One exchange on the request connection, connecting first if needed.
 */
static char *exchange(private_espgate_client_t *this, char *request)
{
	char *answer;

	if (this->fd < 0)
	{
		this->fd = connect_to(this->path, ANSWER_TIMEOUT);
		if (this->fd < 0)
		{
			return NULL;
		}
	}
	if (!write_all(this->fd, request, strlen(request)) ||
		!write_all(this->fd, "\n", 1))
	{
		close(this->fd);
		this->fd = -1;
		return NULL;
	}
	answer = read_line(this->fd);
	if (!answer)
	{
		close(this->fd);
		this->fd = -1;
	}
	return answer;
}

METHOD(espgate_client_t, ask, char*,
	private_espgate_client_t *this, const char *what, char *request)
{
	char *answer, error[512];
	bool reused;

	this->mutex->lock(this->mutex);
	reused = this->fd >= 0;
	answer = exchange(this, request);
	if (!answer && reused && errno != EAGAIN && errno != EWOULDBLOCK)
	{
		/* the connection went with a node that restarted since the last
		 * request: once more, on a new one (not after a timeout: the node
		 * may have carried the request out) */
		answer = exchange(this, request);
	}
	this->mutex->unlock(this->mutex);
	if (!answer)
	{
		DBG1(DBG_KNL, "espgate: %s failed: control socket %s: %s", what,
			 this->path, strerror(errno));
		return NULL;
	}
	if (!strstr(answer, "\"ok\":true"))
	{
		if (!espgate_json_str(answer, "error", error, sizeof(error)))
		{
			snprintf(error, sizeof(error), "%s", answer);
		}
		DBG1(DBG_KNL, "espgate: %s refused: %s", what, error);
		free(answer);
		return NULL;
	}
	return answer;
}

/**
 * Closes the watch connection (a cleanup handler: the thread may be
 * cancelled while it reads).
 */
static void close_fd(void *fd)
{
	close((int)(intptr_t)fd);
}

/**
 * The watching thread: connects, asks to watch, reads events; after the
 * node goes, tries again every second.
 */
static void *watch_events(private_espgate_client_t *this)
{
	char *line;
	bool told = FALSE;
	int fd;

	while (TRUE)
	{
		thread_cancellation_point();
		fd = connect_to(this->path, 0);
		if (fd < 0 || !write_all(fd, "{\"op\":\"watch\"}\n", 15))
		{
			if (!told)
			{
				DBG1(DBG_KNL, "espgate: cannot watch the node's events on %s: "
					 "%s (retrying every second)", this->path, strerror(errno));
				told = TRUE;
			}
			if (fd >= 0)
			{
				close(fd);
			}
			sleep(1);
			continue;
		}
		DBG1(DBG_KNL, "espgate: watching the node's events on %s", this->path);
		told = FALSE;
		thread_cleanup_push(close_fd, (void*)(intptr_t)fd);
		while (TRUE)
		{
			bool old = thread_cancelability(TRUE);
			line = read_line(fd);
			thread_cancelability(old);
			if (!line)
			{
				break;
			}
			this->cb(this->cb_data, line);
			free(line);
		}
		thread_cleanup_pop(TRUE);
		DBG1(DBG_KNL, "espgate: the event watch on %s ended", this->path);
		sleep(1);
	}
	return NULL;
}

METHOD(espgate_client_t, watch, void,
	private_espgate_client_t *this, espgate_event_cb_t cb, void *data)
{
	this->cb = cb;
	this->cb_data = data;
	this->watcher = thread_create((thread_main_t)watch_events, this);
}

METHOD(espgate_client_t, destroy, void,
	private_espgate_client_t *this)
{
	if (this->watcher)
	{
		this->watcher->cancel(this->watcher);
		this->watcher->join(this->watcher);
	}
	if (this->fd >= 0)
	{
		close(this->fd);
	}
	this->mutex->destroy(this->mutex);
	free(this->path);
	free(this);
}

espgate_client_t *espgate_client_create(char *path)
{
	private_espgate_client_t *this;

	INIT(this,
		.public = {
			.ask = _ask,
			.watch = _watch,
			.destroy = _destroy,
		},
		.path = strdup(path),
		.fd = -1,
		.mutex = mutex_create(MUTEX_TYPE_DEFAULT),
	);
	return &this->public;
}

/**
 * Where the value of field `key` begins in `json`, or NULL.
 */
static const char *field(const char *json, const char *key)
{
	char pattern[64];
	const char *at;

	snprintf(pattern, sizeof(pattern), "\"%s\":", key);
	at = strstr(json, pattern);
	return at ? at + strlen(pattern) : NULL;
}

bool espgate_json_u64(const char *json, const char *key, uint64_t *value)
{
	const char *at = field(json, key);
	char *end;

	if (!at || *at < '0' || *at > '9')
	{
		return FALSE;
	}
	errno = 0;
	*value = strtoull(at, &end, 10);
	return errno == 0 && end != at;
}

bool espgate_json_str(const char *json, const char *key, char *buf,
					  size_t len)
{
	const char *at = field(json, key), *end;

	if (!at || *at != '"' || !len)
	{
		return FALSE;
	}
	at++;
	for (end = at; *end && *end != '"'; end++)
	{
		if (*end == '\\' && end[1])
		{
			end++;
		}
	}
	if (*end != '"')
	{
		return FALSE;
	}
	snprintf(buf, len, "%.*s", (int)(end - at), at);
	return TRUE;
}
