/* The few entry points of intel-ipsec-mb that espgate uses. The library's
 * direct GCM API is a table of function pointers inside its manager
 * structure, reached through macros; this shim sets a manager up once for
 * the best instruction set of this CPU and hands the pointers (and the
 * sizes of the structures they take) to Rust, which then calls them
 * directly. The manager is kept for the life of the process. */
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <intel-ipsec-mb.h>

struct espgate_imb {
	aes_gcm_pre_t pre128;
	aes_gcm_pre_t pre256;
	aes_gcm_enc_dec_t enc128;
	aes_gcm_enc_dec_t dec128;
	aes_gcm_enc_dec_t enc256;
	aes_gcm_enc_dec_t dec256;
	uint64_t key_data_size;
	uint64_t context_size;
	uint64_t context_align;
	int32_t arch;
	int32_t error;
};

/* Fills `out`; returns 0, or -1 with out->error set to the library's
 * error number. */
int espgate_imb_init(struct espgate_imb *out)
{
	IMB_MGR *mgr = alloc_mb_mgr(0);
	IMB_ARCH arch = IMB_ARCH_NONE;

	out->key_data_size = sizeof(struct gcm_key_data);
	out->context_size = sizeof(struct gcm_context_data);
	out->context_align = alignof(struct gcm_context_data);
	if (mgr == NULL) {
		out->error = imb_get_errno(NULL);
		return -1;
	}
	init_mb_mgr_auto(mgr, &arch);
	out->error = imb_get_errno(mgr);
	if (out->error != 0 || arch == IMB_ARCH_NONE) {
		free_mb_mgr(mgr);
		return -1;
	}
	out->arch = (int32_t)arch;
	out->pre128 = mgr->gcm128_pre;
	out->pre256 = mgr->gcm256_pre;
	out->enc128 = mgr->gcm128_enc;
	out->dec128 = mgr->gcm128_dec;
	out->enc256 = mgr->gcm256_enc;
	out->dec256 = mgr->gcm256_dec;
	return 0;
}
