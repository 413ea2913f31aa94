/*
 * charon's kernel IPsec interface on espgate: SAs and policies go to an
 * espgate node's control socket.
 */

#ifndef KERNEL_ESPGATE_IPSEC_H_
#define KERNEL_ESPGATE_IPSEC_H_

#include <kernel/kernel_ipsec.h>

typedef struct kernel_espgate_ipsec_t kernel_espgate_ipsec_t;

struct kernel_espgate_ipsec_t {

	/**
	 * Implements the kernel_ipsec_t interface.
	 */
	kernel_ipsec_t interface;
};

/**
 * Creates the interface, talking to the control socket set in
 * charon.plugins.kernel-espgate.socket.
 */
kernel_espgate_ipsec_t *kernel_espgate_ipsec_create();

#endif /** KERNEL_ESPGATE_IPSEC_H_ */
