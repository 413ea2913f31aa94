/*
 * charon's kernel IPsec interface on espgate. Each call becomes a request
 * on the node's control socket (docs/ike.md maps them):
 *
 *   get_spi      spi_alloc
 *   add_sa       sa_add (keys, salt, tunnel, ESN, window, UDP ports, lifetimes)
 *   query_sa     sa_query
 *   del_sa       sa_del
 *   add_policy   spd_put (a selector's address ranges split into prefixes)
 *   del_policy   spd_del, or spd_put of the policy's previous SA
 *
 * and the node's events, read on a `watch` connection, come back: lifetime
 * events as charon->kernel->expire(), and a packet that matched the rule of
 * a trap policy (one without an SA yet) as charon->kernel->acquire().
 * Policies name SAs by SPI here, as espgate's
 * rules do; as the kernel does, each policy keeps every SA installed for
 * it (a rekey installs the new one before the old one goes), the newest
 * first, and the rule follows the newest.
 */

#include "kernel_espgate_ipsec.h"
#include "espgate_client.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>

#include <daemon.h>
#include <collections/linked_list.h>
#include <threading/mutex.h>

/** The control socket when strongswan.conf names none. */
#define DEFAULT_SOCKET "/run/espgate/control.sock"

/** The most rules one policy may split into. */
#define MAX_RULES 4096

typedef struct private_kernel_espgate_ipsec_t private_kernel_espgate_ipsec_t;

struct private_kernel_espgate_ipsec_t {

	kernel_espgate_ipsec_t public;

	/** The node's control socket. */
	espgate_client_t *client;

	/** Guards the lists. */
	mutex_t *mutex;

	/** SAs installed (sa_entry_t). */
	linked_list_t *sas;

	/** Policies installed (policy_entry_t). */
	linked_list_t *policies;
};

/**
 * An SA espgate runs for charon.
 */
typedef struct {
	/** SPI, host order. */
	uint32_t spi;
	/** Inbound (else outbound). */
	bool inbound;
	/** ESP. */
	uint8_t proto;
	/** The tunnel's destination, as charon names the SA by. */
	host_t *dst;
	/** Packets counted at the last query, and when they last moved. */
	uint64_t packets;
	time_t used;
} sa_entry_t;

static void sa_entry_destroy(sa_entry_t *this)
{
	this->dst->destroy(this->dst);
	free(this);
}

/**
 * One installation of a policy: the SA it names and how.
 */
typedef struct {
	/** SPI, host order; 0 for a trap, which has no SA yet. */
	uint32_t spi;
	/** IPsec, pass or drop. */
	policy_type_t type;
	/** The CHILD_SA's reqid (what an acquire names). */
	uint32_t reqid;
} mapping_t;

/**
 * A policy: its selectors and its installations, newest first.
 */
typedef struct {
	policy_dir_t dir;
	traffic_selector_t *src;
	traffic_selector_t *dst;
	/** mapping_t, newest first: the rules follow the first. */
	linked_list_t *mappings;
} policy_entry_t;

static void policy_entry_destroy(policy_entry_t *this)
{
	this->src->destroy(this->src);
	this->dst->destroy(this->dst);
	this->mappings->destroy_function(this->mappings, free);
	free(this);
}

/**
 * A growing string.
 */
typedef struct {
	char *s;
	size_t len, size;
	bool failed;
} text_t;

static void add(text_t *t, const char *fmt, ...)
{
	va_list args;
	int n;

	if (t->failed)
	{
		return;
	}
	while (TRUE)
	{
		va_start(args, fmt);
		n = vsnprintf(t->s + t->len, t->size - t->len, fmt, args);
		va_end(args);
		if (n < 0)
		{
			t->failed = TRUE;
			return;
		}
		if ((size_t)n < t->size - t->len)
		{
			t->len += n;
			return;
		}
		t->size = max(t->size * 2, t->len + n + 1);
		t->s = realloc(t->s, t->size);
	}
}

static text_t text_new()
{
	text_t t = { .size = 256 };
	t.s = malloc(t.size);
	t.s[0] = '\0';
	return t;
}

/** Frees a text that held key material. */
static void text_wipe(text_t *t)
{
	memwipe(t->s, t->size);
	free(t->s);
}

/**
 * An address as espgate's YAML writes it (quoted: IPv6 has colons).
 */
static void add_addr(text_t *t, host_t *host)
{
	char buf[INET6_ADDRSTRLEN];
	chunk_t a = host->get_address(host);

	inet_ntop(host->get_family(host), a.ptr, buf, sizeof(buf));
	add(t, "'%s'", buf);
}

typedef unsigned __int128 u128;

static u128 to_u128(chunk_t a)
{
	u128 v = 0;
	size_t i;

	for (i = 0; i < a.len; i++)
	{
		v = (v << 8) | a.ptr[i];
	}
	return v;
}

static void add_prefix(text_t *t, u128 net, int bits, int len)
{
	char buf[INET6_ADDRSTRLEN];
	uint8_t bytes[16];
	int i, n = bits / 8;

	for (i = n - 1; i >= 0; i--)
	{
		bytes[i] = (uint8_t)net;
		net >>= 8;
	}
	inet_ntop(bits == 32 ? AF_INET : AF_INET6, bytes, buf, sizeof(buf));
	add(t, "'%s/%d'", buf, len);
}

/**
 * Splits the address range of a selector into the fewest prefixes that
 * cover exactly it; -1 if more than `max`.
 */
static int split(traffic_selector_t *ts, u128 *nets, uint8_t *lens, int max,
				 int *bits)
{
	chunk_t from_c = ts->get_from_address(ts), to_c = ts->get_to_address(ts);
	u128 from = to_u128(from_c), to = to_u128(to_c), top;
	int n = 0, k;

	*bits = from_c.len * 8;
	top = *bits == 128 ? ~(u128)0 : (((u128)1 << *bits) - 1);
	if (from == 0 && to == top)
	{
		nets[0] = 0;
		lens[0] = 0;
		return 1;
	}
	while (from <= to)
	{
		/* the largest block aligned at `from` that ends by `to` */
		for (k = 0; k + 1 < *bits; k++)
		{
			u128 size = (u128)1 << (k + 1);
			if ((from & (size - 1)) || from + size - 1 > to)
			{
				break;
			}
		}
		if (n == max)
		{
			return -1;
		}
		nets[n] = from;
		lens[n] = *bits - k;
		n++;
		if (from + ((u128)1 << k) - 1 == to)
		{
			break;
		}
		from += (u128)1 << k;
	}
	return n;
}

/**
 * A port range as espgate's YAML writes it, or nothing for all ports.
 */
static void add_ports(text_t *t, const char *key, uint16_t from, uint16_t to)
{
	if (from == 0 && to == 0xffff)
	{
		return;
	}
	if (from == to)
	{
		add(t, ", %s: %u", key, from);
	}
	else
	{
		add(t, ", %s: %u-%u", key, from, to);
	}
}

/**
 * The espgate rules of a policy: `action` (protect with `spi`, bypass or
 * discard) for every pair of prefixes its selectors split into. FALSE if
 * the selectors cannot be written as espgate rules (logged).
 */
static bool policy_rules(text_t *t, policy_entry_t *policy, const char *action,
						 uint32_t spi)
{
	/* static: 128 KiB; the callers hold the plugin's mutex */
	static u128 src_nets[MAX_RULES], dst_nets[MAX_RULES];
	static uint8_t src_lens[MAX_RULES], dst_lens[MAX_RULES];
	traffic_selector_t *src = policy->src, *dst = policy->dst;
	uint8_t proto = max(src->get_protocol(src), dst->get_protocol(dst));
	int ns, nd, bits, i, j;
	bool ports = proto == IPPROTO_TCP || proto == IPPROTO_UDP;

	if (!ports && (src->get_from_port(src) != 0 ||
				   src->get_to_port(src) != 0xffff ||
				   dst->get_from_port(dst) != 0 ||
				   dst->get_to_port(dst) != 0xffff))
	{
		DBG1(DBG_KNL, "espgate: %R === %R: espgate matches ports of TCP and "
			 "UDP only (not ICMP types or ports of protocol %u)", src, dst,
			 proto);
		return FALSE;
	}
	ns = split(src, src_nets, src_lens, MAX_RULES, &bits);
	nd = split(dst, dst_nets, dst_lens, MAX_RULES, &bits);
	if (ns < 0 || nd < 0 || ns * nd > MAX_RULES)
	{
		DBG1(DBG_KNL, "espgate: %R === %R splits into more than %d prefix "
			 "pairs", src, dst, MAX_RULES);
		return FALSE;
	}
	add(t, "spd: [");
	for (i = 0; i < ns; i++)
	{
		for (j = 0; j < nd; j++)
		{
			add(t, "%s{direction: %s, src: ", i || j ? ", " : "",
				policy->dir == POLICY_OUT ? "out" : "in");
			add_prefix(t, src_nets[i], src->get_type(src) == TS_IPV4_ADDR_RANGE
					   ? 32 : 128, src_lens[i]);
			add(t, ", dst: ");
			add_prefix(t, dst_nets[j], dst->get_type(dst) == TS_IPV4_ADDR_RANGE
					   ? 32 : 128, dst_lens[j]);
			if (proto)
			{
				add(t, ", protocol: %u", proto);
			}
			if (ports)
			{
				add_ports(t, "sport", src->get_from_port(src),
						  src->get_to_port(src));
				add_ports(t, "dport", dst->get_from_port(dst),
						  dst->get_to_port(dst));
			}
			if (spi)
			{
				add(t, ", action: %s, sa: 0x%08x}", action, spi);
			}
			else
			{
				add(t, ", action: %s}", action);
			}
		}
	}
	add(t, "]");
	return !t->failed;
}

/**
 * Sends a request made of `op` and a YAML text.
 */
static bool ask_yaml(private_kernel_espgate_ipsec_t *this, const char *what,
					 const char *op, text_t *yaml)
{
	text_t req = text_new();
	char *answer;
	bool ok;

	add(&req, "{\"op\":\"%s\",\"yaml\":\"%s\"}", op, yaml->s);
	answer = req.failed ? NULL : this->client->ask(this->client, what, req.s);
	text_wipe(&req);
	ok = answer != NULL;
	free(answer);
	return ok;
}

CALLBACK(sa_match, bool,
	sa_entry_t *sa, va_list args)
{
	uint32_t spi;
	host_t *dst;

	VA_ARGS_VGET(args, spi, dst);
	return sa->spi == spi && dst->ip_equals(dst, sa->dst);
}

CALLBACK(sa_match_direction, bool,
	sa_entry_t *sa, va_list args)
{
	uint32_t spi;
	int inbound;

	VA_ARGS_VGET(args, spi, inbound);
	return sa->spi == spi && sa->inbound == (bool)inbound;
}

METHOD(kernel_ipsec_t, get_features, kernel_feature_t,
	private_kernel_espgate_ipsec_t *this)
{
	/* outbound SAs may go in before the policies name them; the rules do
	 * not hold the tunnel addresses, so an address change moves no rule */
	return KERNEL_POLICY_SPI | KERNEL_NO_POLICY_UPDATES;
}

METHOD(kernel_ipsec_t, get_spi, status_t,
	private_kernel_espgate_ipsec_t *this, host_t *src, host_t *dst,
	uint8_t protocol, uint32_t *spi)
{
	char *answer;
	uint64_t value;

	if (protocol != IPPROTO_ESP)
	{
		DBG1(DBG_KNL, "espgate: only ESP SAs, not protocol %u", protocol);
		return NOT_SUPPORTED;
	}
	answer = this->client->ask(this->client, "get_spi",
							   "{\"op\":\"spi_alloc\"}");
	if (!answer)
	{
		return FAILED;
	}
	if (!espgate_json_u64(answer, "spi", &value) || value > 0xffffffff)
	{
		DBG1(DBG_KNL, "espgate: get_spi: no SPI in %s", answer);
		free(answer);
		return FAILED;
	}
	free(answer);
	*spi = htonl((uint32_t)value);
	DBG2(DBG_KNL, "espgate: got SPI %.8x", (uint32_t)value);
	return SUCCESS;
}

METHOD(kernel_ipsec_t, get_cpi, status_t,
	private_kernel_espgate_ipsec_t *this, host_t *src, host_t *dst,
	uint16_t *cpi)
{
	DBG1(DBG_KNL, "espgate: IPComp is not supported");
	return NOT_SUPPORTED;
}

/**
 * Refuses what espgate does not do, naming it; the AES-GCM key length.
 */
static bool supported(kernel_ipsec_sa_id_t *id, kernel_ipsec_add_sa_t *data,
					  int *key_bits)
{
	if (id->proto != IPPROTO_ESP)
	{
		DBG1(DBG_KNL, "espgate: only ESP SAs, not protocol %u", id->proto);
		return FALSE;
	}
	if (data->mode != MODE_TUNNEL)
	{
		DBG1(DBG_KNL, "espgate: only tunnel mode, not %N", ipsec_mode_names,
			 data->mode);
		return FALSE;
	}
	if (data->enc_alg != ENCR_AES_GCM_ICV16 || data->int_alg != AUTH_UNDEFINED)
	{
		DBG1(DBG_KNL, "espgate: only AES-GCM with a 16-byte ICV "
			 "(aes128gcm16, aes256gcm16), not %N/%N", encryption_algorithm_names,
			 data->enc_alg, integrity_algorithm_names, data->int_alg);
		return FALSE;
	}
	switch (data->enc_key.len)
	{
		case 16 + 4:
			*key_bits = 128;
			break;
		case 32 + 4:
			*key_bits = 256;
			break;
		default:
			DBG1(DBG_KNL, "espgate: AES-GCM with a %u-bit key is not supported",
				 (u_int)(data->enc_key.len - 4) * 8);
			return FALSE;
	}
	if (data->ipcomp != IPCOMP_NONE)
	{
		DBG1(DBG_KNL, "espgate: IPComp is not supported");
		return FALSE;
	}
	if (id->mark.value || id->if_id || data->label)
	{
		DBG1(DBG_KNL, "espgate: marks, interface IDs and security labels "
			 "are not supported");
		return FALSE;
	}
	return TRUE;
}

/**
 * One lifetime limit of an SA; charon's 0 is no limit, which espgate
 * writes by leaving the key out.
 */
static void add_limit(text_t *t, const char *key, uint64_t value)
{
	if (value)
	{
		add(t, "%s%s: %llu", t->s[t->len - 1] == '{' ? "" : ", ", key,
			(unsigned long long)value);
	}
}

METHOD(kernel_ipsec_t, add_sa, status_t,
	private_kernel_espgate_ipsec_t *this, kernel_ipsec_sa_id_t *id,
	kernel_ipsec_add_sa_t *data)
{
	uint32_t spi = ntohl(id->spi), window;
	lifetime_cfg_t *l = data->lifetime;
	sa_entry_t *entry;
	text_t yaml;
	int bits;
	size_t i;
	bool ok;

	if (!supported(id, data, &bits))
	{
		return NOT_SUPPORTED;
	}
	/* espgate's windows run from 32 to 65536; charon's 0 (no replay
	 * check) has no equivalent and takes the smallest */
	window = min(max(data->replay_window, 32), 65536);
	yaml = text_new();
	add(&yaml, "sas: [{spi: 0x%08x, direction: %s, aead: aes-%d-gcm, key: 0x",
		spi, data->inbound ? "inbound" : "outbound", bits);
	for (i = 0; i < data->enc_key.len; i++)
	{
		add(&yaml, "%02x", data->enc_key.ptr[i]);
	}
	add(&yaml, ", tunnel: {src: ");
	add_addr(&yaml, id->src);
	add(&yaml, ", dst: ");
	add_addr(&yaml, id->dst);
	add(&yaml, "}, esn: %s, replay_window: %u", data->esn ? "true" : "false",
		window);
	if (data->encap)
	{
		add(&yaml, ", udp_encap: {src_port: %u, dst_port: %u}",
			id->src->get_port(id->src), id->dst->get_port(id->dst));
	}
	add(&yaml, ", lifetime: {");
	add_limit(&yaml, "soft_seconds", l->time.rekey);
	add_limit(&yaml, "hard_seconds", l->time.life);
	add_limit(&yaml, "soft_bytes", l->bytes.rekey);
	add_limit(&yaml, "hard_bytes", l->bytes.life);
	add_limit(&yaml, "soft_packets", l->packets.rekey);
	add_limit(&yaml, "hard_packets", l->packets.life);
	add(&yaml, "}}]");
	ok = !yaml.failed && ask_yaml(this, "add_sa", "sa_add", &yaml);
	text_wipe(&yaml);
	if (!ok)
	{
		return FAILED;
	}
	INIT(entry,
		.spi = spi,
		.inbound = data->inbound,
		.proto = id->proto,
		.dst = id->dst->clone(id->dst),
	);
	this->mutex->lock(this->mutex);
	this->sas->insert_last(this->sas, entry);
	this->mutex->unlock(this->mutex);
	DBG2(DBG_KNL, "espgate: added %s SA %.8x", data->inbound ? "inbound"
		 : "outbound", spi);
	return SUCCESS;
}

METHOD(kernel_ipsec_t, update_sa, status_t,
	private_kernel_espgate_ipsec_t *this, kernel_ipsec_sa_id_t *id,
	kernel_ipsec_update_sa_t *data)
{
	DBG1(DBG_KNL, "espgate: moving SA %.8x to other addresses or ports "
		 "(MOBIKE, NAT-T) is not supported", ntohl(id->spi));
	return NOT_SUPPORTED;
}

/**
 * The direction of SA (`spi`, `dst`) as added; FALSE if not added here.
 */
static bool direction_of(private_kernel_espgate_ipsec_t *this, uint32_t spi,
						 host_t *dst, bool *inbound)
{
	sa_entry_t *entry;
	bool found;

	this->mutex->lock(this->mutex);
	found = this->sas->find_first(this->sas, sa_match, (void**)&entry, spi,
								  dst);
	if (found)
	{
		*inbound = entry->inbound;
	}
	this->mutex->unlock(this->mutex);
	return found;
}

METHOD(kernel_ipsec_t, query_sa, status_t,
	private_kernel_espgate_ipsec_t *this, kernel_ipsec_sa_id_t *id,
	kernel_ipsec_query_sa_t *data, uint64_t *bytes, uint64_t *packets,
	time_t *time)
{
	uint32_t spi = ntohl(id->spi);
	uint64_t b = 0, p = 0;
	sa_entry_t *entry;
	char req[128], *answer;
	bool inbound;

	if (!direction_of(this, spi, id->dst, &inbound))
	{
		DBG1(DBG_KNL, "espgate: query_sa: SA %.8x was not added here", spi);
		return NOT_FOUND;
	}
	snprintf(req, sizeof(req), "{\"op\":\"sa_query\",\"spi\":%u,"
			 "\"direction\":\"%s\"}", spi, inbound ? "inbound" : "outbound");
	answer = this->client->ask(this->client, "query_sa", req);
	if (!answer)
	{
		return FAILED;
	}
	if (!espgate_json_u64(answer, "bytes", &b) ||
		!espgate_json_u64(answer, "packets", &p))
	{
		DBG1(DBG_KNL, "espgate: query_sa: no counters in %s", answer);
		free(answer);
		return FAILED;
	}
	free(answer);
	/* espgate keeps no time of last use: it is the first query that saw
	 * the packet count move */
	this->mutex->lock(this->mutex);
	if (this->sas->find_first(this->sas, sa_match, (void**)&entry, spi,
							  id->dst))
	{
		if (p != entry->packets)
		{
			entry->packets = p;
			entry->used = time_monotonic(NULL);
		}
		if (time)
		{
			*time = entry->used;
		}
	}
	this->mutex->unlock(this->mutex);
	if (bytes)
	{
		*bytes = b;
	}
	if (packets)
	{
		*packets = p;
	}
	return SUCCESS;
}

METHOD(kernel_ipsec_t, del_sa, status_t,
	private_kernel_espgate_ipsec_t *this, kernel_ipsec_sa_id_t *id,
	kernel_ipsec_del_sa_t *data)
{
	uint32_t spi = ntohl(id->spi);
	sa_entry_t *entry;
	char req[128], *answer;
	bool inbound, done;

	if (!direction_of(this, spi, id->dst, &inbound))
	{
		DBG1(DBG_KNL, "espgate: del_sa: SA %.8x was not added here", spi);
		return NOT_FOUND;
	}
	snprintf(req, sizeof(req), "{\"op\":\"sa_del\",\"spi\":%u,"
			 "\"direction\":\"%s\"}", spi, inbound ? "inbound" : "outbound");
	answer = this->client->ask(this->client, "del_sa", req);
	done = answer != NULL;
	free(answer);
	this->mutex->lock(this->mutex);
	if (this->sas->find_first(this->sas, sa_match, (void**)&entry, spi,
							  id->dst))
	{
		this->sas->remove(this->sas, entry, NULL);
		sa_entry_destroy(entry);
	}
	this->mutex->unlock(this->mutex);
	return done ? SUCCESS : FAILED;
}

METHOD(kernel_ipsec_t, flush_sas, status_t,
	private_kernel_espgate_ipsec_t *this)
{
	sa_entry_t *entry;
	char req[128], *answer;
	status_t status = SUCCESS;

	this->mutex->lock(this->mutex);
	while (this->sas->remove_first(this->sas, (void**)&entry) == SUCCESS)
	{
		snprintf(req, sizeof(req), "{\"op\":\"sa_del\",\"spi\":%u,"
				 "\"direction\":\"%s\"}", entry->spi,
				 entry->inbound ? "inbound" : "outbound");
		answer = this->client->ask(this->client, "flush_sas", req);
		status = answer ? status : FAILED;
		free(answer);
		sa_entry_destroy(entry);
	}
	this->mutex->unlock(this->mutex);
	return status;
}

CALLBACK(policy_match, bool,
	policy_entry_t *policy, va_list args)
{
	kernel_ipsec_policy_id_t *id;

	VA_ARGS_VGET(args, id);
	return policy->dir == id->dir &&
		   policy->src->equals(policy->src, id->src_ts) &&
		   policy->dst->equals(policy->dst, id->dst_ts);
}

/**
 * Sends the policy's rules (`action`, naming `spi` when protecting) with
 * request `op` (spd_put or spd_del).
 */
static bool send_rules(private_kernel_espgate_ipsec_t *this,
					   policy_entry_t *policy, const char *action,
					   uint32_t spi, const char *op, const char *what)
{
	text_t yaml = text_new();
	bool ok;

	ok = policy_rules(&yaml, policy, action, spi) &&
		 ask_yaml(this, what, op, &yaml);
	free(yaml.s);
	return ok;
}

/**
 * Writes the policy's rules as they are now: its newest SA's.
 */
static bool put_policy(private_kernel_espgate_ipsec_t *this,
					   policy_entry_t *policy, const char *what)
{
	mapping_t *newest;
	uint32_t spi = 0;
	const char *action;

	if (policy->mappings->get_first(policy->mappings,
									(void**)&newest) != SUCCESS)
	{
		return FALSE;
	}
	spi = newest->spi;
	switch (newest->type)
	{
		case POLICY_PASS:
			action = "bypass";
			spi = 0;
			break;
		case POLICY_IPSEC:
			/* a trap has no SA yet: its traffic asks for one (outbound) */
			action = spi ? "protect" : (policy->dir == POLICY_OUT ? "trap"
																: "discard");
			break;
		default:
			action = "discard";
			spi = 0;
			break;
	}
	return send_rules(this, policy, action, spi, "spd_put", what);
}

METHOD(kernel_ipsec_t, add_policy, status_t,
	private_kernel_espgate_ipsec_t *this, kernel_ipsec_policy_id_t *id,
	kernel_ipsec_manage_policy_t *data)
{
	policy_entry_t *policy;
	mapping_t *mapping;
	bool ok, created = FALSE;

	if (id->dir == POLICY_FWD)
	{	/* espgate forwards what its in rules admit: nothing more to do */
		return SUCCESS;
	}
	if (id->mark.value || id->if_id || id->label || id->interface)
	{
		DBG1(DBG_KNL, "espgate: policies with marks, interface IDs, labels "
			 "or interfaces are not supported");
		return NOT_SUPPORTED;
	}
	this->mutex->lock(this->mutex);
	if (!this->policies->find_first(this->policies, policy_match,
									(void**)&policy, id))
	{
		INIT(policy,
			.dir = id->dir,
			.src = id->src_ts->clone(id->src_ts),
			.dst = id->dst_ts->clone(id->dst_ts),
			.mappings = linked_list_create(),
		);
		created = TRUE;
	}
	INIT(mapping,
		.spi = data->sa->esp.use ? ntohl(data->sa->esp.spi) : 0,
		.type = data->type,
		.reqid = data->sa->reqid,
	);
	policy->mappings->insert_first(policy->mappings, mapping);
	ok = put_policy(this, policy, "add_policy");
	if (ok && created)
	{
		this->policies->insert_last(this->policies, policy);
	}
	else if (!ok)
	{
		/* the mapping just put first; remove() takes no NULL item out */
		policy->mappings->remove(policy->mappings, mapping, NULL);
		free(mapping);
		if (created)
		{
			policy_entry_destroy(policy);
		}
	}
	this->mutex->unlock(this->mutex);
	return ok ? SUCCESS : FAILED;
}

METHOD(kernel_ipsec_t, query_policy, status_t,
	private_kernel_espgate_ipsec_t *this, kernel_ipsec_policy_id_t *id,
	kernel_ipsec_query_policy_t *data, time_t *use_time)
{
	return NOT_SUPPORTED;
}

/**
 * Removes the policy's rules from espgate.
 */
static bool delete_rules(private_kernel_espgate_ipsec_t *this,
						 policy_entry_t *policy, const char *what)
{
	return send_rules(this, policy, "discard", 0, "spd_del", what);
}

METHOD(kernel_ipsec_t, del_policy, status_t,
	private_kernel_espgate_ipsec_t *this, kernel_ipsec_policy_id_t *id,
	kernel_ipsec_manage_policy_t *data)
{
	policy_entry_t *policy;
	uint32_t spi = data->sa->esp.use ? ntohl(data->sa->esp.spi) : 0;
	enumerator_t *enumerator;
	mapping_t *mapping;
	bool ok = TRUE, was_newest = FALSE, first = TRUE;

	if (id->dir == POLICY_FWD)
	{
		return SUCCESS;
	}
	this->mutex->lock(this->mutex);
	if (!this->policies->find_first(this->policies, policy_match,
									(void**)&policy, id))
	{
		this->mutex->unlock(this->mutex);
		DBG1(DBG_KNL, "espgate: del_policy: %R === %R was not added here",
			 id->src_ts, id->dst_ts);
		return NOT_FOUND;
	}
	enumerator = policy->mappings->create_enumerator(policy->mappings);
	while (enumerator->enumerate(enumerator, &mapping))
	{
		if (mapping->spi == spi && mapping->type == data->type)
		{
			policy->mappings->remove_at(policy->mappings, enumerator);
			free(mapping);
			was_newest = first;
			break;
		}
		first = FALSE;
	}
	enumerator->destroy(enumerator);
	if (policy->mappings->get_count(policy->mappings) == 0)
	{
		ok = delete_rules(this, policy, "del_policy");
		this->policies->remove(this->policies, policy, NULL);
		policy_entry_destroy(policy);
	}
	else if (was_newest)
	{	/* the SA the rules named goes: they name the newest left */
		ok = put_policy(this, policy, "del_policy");
	}
	this->mutex->unlock(this->mutex);
	return ok ? SUCCESS : FAILED;
}

METHOD(kernel_ipsec_t, flush_policies, status_t,
	private_kernel_espgate_ipsec_t *this)
{
	policy_entry_t *policy;
	status_t status = SUCCESS;

	this->mutex->lock(this->mutex);
	while (this->policies->remove_first(this->policies,
										(void**)&policy) == SUCCESS)
	{
		if (!delete_rules(this, policy, "flush_policies"))
		{
			status = FAILED;
		}
		policy_entry_destroy(policy);
	}
	this->mutex->unlock(this->mutex);
	return status;
}

METHOD(kernel_ipsec_t, bypass_socket, bool,
	private_kernel_espgate_ipsec_t *this, int fd, int family)
{
	/* IKE reaches charon through espgate's punt device, never an SA */
	return TRUE;
}

METHOD(kernel_ipsec_t, enable_udp_decap, bool,
	private_kernel_espgate_ipsec_t *this, int fd, int family, uint16_t port)
{
	/* espgate takes ESP-in-UDP off the wire before the kernel sees it */
	return TRUE;
}

/**
 * An SA event from the node: a lifetime crossed, or the sequence space
 * running low or out, becomes charon's expire (soft: rekey; hard: the SA
 * is gone).
 */
static void sa_event(private_kernel_espgate_ipsec_t *this, const char *line)
{
	char direction[16], kind[32];
	uint64_t value;
	uint32_t spi;
	bool inbound, hard;
	sa_entry_t *entry;
	host_t *dst = NULL;
	uint8_t proto = 0;

	if (!espgate_json_u64(line, "spi", &value) ||
		!espgate_json_str(line, "direction", direction, sizeof(direction)) ||
		!espgate_json_str(line, "kind", kind, sizeof(kind)))
	{
		return;
	}
	spi = (uint32_t)value;
	inbound = streq(direction, "inbound");
	hard = streq(kind, "hard_lifetime") || streq(kind, "seq_exhausted");
	this->mutex->lock(this->mutex);
	if (this->sas->find_first(this->sas, sa_match_direction, (void**)&entry,
							  spi, (int)inbound))
	{
		dst = entry->dst->clone(entry->dst);
		proto = entry->proto;
	}
	this->mutex->unlock(this->mutex);
	if (!dst)
	{
		return;
	}
	DBG1(DBG_KNL, "espgate: %s SA %.8x: %s", direction, spi, kind);
	charon->kernel->expire(charon->kernel, proto, htonl(spi), dst, hard);
	dst->destroy(dst);
}

/**
 * A selector of exactly one address (and port) of a packet.
 */
static traffic_selector_t *packet_ts(host_t *host, uint8_t proto,
									 uint16_t port)
{
	bool ports = proto == IPPROTO_TCP || proto == IPPROTO_UDP;

	return traffic_selector_create_from_bytes(proto,
				host->get_family(host) == AF_INET ? TS_IPV4_ADDR_RANGE
												  : TS_IPV6_ADDR_RANGE,
				host->get_address(host), ports ? port : 0,
				host->get_address(host), ports ? port : 0xffff);
}

/**
 * A packet matched a trap rule: the outbound trap policy whose selectors
 * hold it names the CHILD_SA (by reqid) charon is to negotiate.
 */
static void acquire(private_kernel_espgate_ipsec_t *this, const char *line)
{
	char src_s[INET6_ADDRSTRLEN], dst_s[INET6_ADDRSTRLEN];
	uint64_t proto, sport, dport;
	policy_entry_t *policy;
	mapping_t *newest;
	enumerator_t *enumerator;
	host_t *src, *dst;
	uint32_t reqid = 0;
	kernel_acquire_data_t data = {};

	if (!espgate_json_str(line, "src", src_s, sizeof(src_s)) ||
		!espgate_json_str(line, "dst", dst_s, sizeof(dst_s)) ||
		!espgate_json_u64(line, "protocol", &proto) ||
		!espgate_json_u64(line, "sport", &sport) ||
		!espgate_json_u64(line, "dport", &dport))
	{
		return;
	}
	src = host_create_from_string(src_s, 0);
	dst = host_create_from_string(dst_s, 0);
	if (!src || !dst)
	{
		DESTROY_IF(src);
		DESTROY_IF(dst);
		return;
	}
	data.src = packet_ts(src, proto, sport);
	data.dst = packet_ts(dst, proto, dport);
	this->mutex->lock(this->mutex);
	enumerator = this->policies->create_enumerator(this->policies);
	while (enumerator->enumerate(enumerator, &policy))
	{	/* the trap whose selectors hold the packet: addresses, protocol
		 * and ports */
		if (policy->dir == POLICY_OUT &&
			policy->mappings->get_first(policy->mappings,
										(void**)&newest) == SUCCESS &&
			newest->type == POLICY_IPSEC && !newest->spi &&
			data.src->is_contained_in(data.src, policy->src) &&
			data.dst->is_contained_in(data.dst, policy->dst))
		{
			reqid = newest->reqid;
			break;
		}
	}
	enumerator->destroy(enumerator);
	this->mutex->unlock(this->mutex);
	if (reqid)
	{
		DBG1(DBG_KNL, "espgate: acquire for %H === %H (reqid %u)", src, dst,
			 reqid);
		charon->kernel->acquire(charon->kernel, reqid, &data);
	}
	data.src->destroy(data.src);
	data.dst->destroy(data.dst);
	src->destroy(src);
	dst->destroy(dst);
}

/**
 * One event from the node's watch connection.
 */
static void on_event(private_kernel_espgate_ipsec_t *this, const char *line)
{
	if (strstr(line, "\"event\":\"sa\""))
	{
		sa_event(this, line);
	}
	else if (strstr(line, "\"event\":\"acquire\""))
	{
		acquire(this, line);
	}
}

METHOD(kernel_ipsec_t, destroy, void,
	private_kernel_espgate_ipsec_t *this)
{
	this->client->destroy(this->client);
	this->sas->destroy_function(this->sas, (void*)sa_entry_destroy);
	this->policies->destroy_function(this->policies,
									 (void*)policy_entry_destroy);
	this->mutex->destroy(this->mutex);
	free(this);
}

kernel_espgate_ipsec_t *kernel_espgate_ipsec_create()
{
	private_kernel_espgate_ipsec_t *this;
	char *socket;

	socket = lib->settings->get_str(lib->settings,
						"%s.plugins.kernel-espgate.socket", DEFAULT_SOCKET,
						lib->ns);
	INIT(this,
		.public = {
			.interface = {
				.get_features = _get_features,
				.get_spi = _get_spi,
				.get_cpi = _get_cpi,
				.add_sa = _add_sa,
				.update_sa = _update_sa,
				.query_sa = _query_sa,
				.del_sa = _del_sa,
				.flush_sas = _flush_sas,
				.add_policy = _add_policy,
				.query_policy = _query_policy,
				.del_policy = _del_policy,
				.flush_policies = _flush_policies,
				.bypass_socket = _bypass_socket,
				.enable_udp_decap = _enable_udp_decap,
				.destroy = _destroy,
			},
		},
		.client = espgate_client_create(socket),
		.mutex = mutex_create(MUTEX_TYPE_RECURSIVE),
		.sas = linked_list_create(),
		.policies = linked_list_create(),
	);
	this->client->watch(this->client, (espgate_event_cb_t)on_event, this);
	DBG1(DBG_KNL, "espgate: SAs and policies go to the node at %s", socket);
	return &this->public;
}
