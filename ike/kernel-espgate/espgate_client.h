/*
 * espgate's control socket, as the kernel-espgate plugin speaks it: one
 * JSON request per line, one JSON answer per line (see espgate's
 * crates/control/src/request.rs), and a second connection that `watch`es
 * the node's events.
 */

#ifndef ESPGATE_CLIENT_H_
#define ESPGATE_CLIENT_H_

#include <library.h>

typedef struct espgate_client_t espgate_client_t;

/**
 * Called with each line a watch connection reads: one event of the node,
 * a JSON object (see espgate's `watch` request).
 */
typedef void (*espgate_event_cb_t)(void *data, const char *line);

struct espgate_client_t {

	/**
	 * Sends one request line and reads the answer. An answer with "ok"
	 * false, or none (the socket is gone), is logged with `what` and the
	 * node's reason, and gives NULL.
	 *
	 * @param what		what the request does, for the log
	 * @param request	the JSON request, without its newline
	 * @return			the answer (to free), or NULL
	 */
	char *(*ask)(espgate_client_t *this, const char *what, char *request);

	/**
	 * Starts a thread that watches the node's events and calls `cb` for
	 * each, reconnecting while the node is away.
	 */
	void (*watch)(espgate_client_t *this, espgate_event_cb_t cb, void *data);

	/**
	 * Stops the watch and closes the connections.
	 */
	void (*destroy)(espgate_client_t *this);
};

/**
 * A client of the control socket at `path`.
 */
espgate_client_t *espgate_client_create(char *path);

/**
 * Reads the unsigned number field `key` of a JSON answer.
 */
bool espgate_json_u64(const char *json, const char *key, uint64_t *value);

/**
 * Reads the string field `key` of a JSON answer into `buf` (escapes are
 * copied as they are: the fields read here have none).
 */
bool espgate_json_str(const char *json, const char *key, char *buf,
					  size_t len);

#endif /** ESPGATE_CLIENT_H_ */
