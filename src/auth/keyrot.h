/*
 * keyrot.h — auth/rotate_signing_key, the coordinator's token signing-key
 * rotation (see keyrot.c).
 */
#ifndef P2P_AUTH_KEYROT_H
#define P2P_AUTH_KEYROT_H

#include "p2p/p2p.h"

/* Registers auth/rotate_signing_key when this node holds the signing key (the
 * coordinator); nothing elsewhere. Needs the "security" component running.
 * Returns 0 or a p2p_method_register error. */
int p2p__keyrot_register_method(p2p_ctx *ctx);

#endif
