/*
 * The kernel-espgate plugin: espgate as charon's IPsec data plane.
 */

#ifndef KERNEL_ESPGATE_PLUGIN_H_
#define KERNEL_ESPGATE_PLUGIN_H_

#include <library.h>
#include <plugins/plugin.h>

typedef struct kernel_espgate_plugin_t kernel_espgate_plugin_t;

struct kernel_espgate_plugin_t {

	/**
	 * Implements the plugin interface.
	 */
	plugin_t plugin;
};

#endif /** KERNEL_ESPGATE_PLUGIN_H_ */
