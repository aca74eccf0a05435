/* The wire: MigrationHello, MigrationWelcome and MigrationFrame (protobuf-c),
 * each after its 4-byte big-endian length; a frame's payload follows it.
 *
 * Hello and Welcome are authenticated over their own packing with the mac
 * field empty: the receiver unpacks, clears mac, packs again and compares.
 * protobuf-c packs fields in number order, so both sides produce the same
 * bytes; a sender that packed differently simply fails the check.
 *
 * A refused Welcome carries no nonce and no MAC and the source believes it
 * unverified: whoever could forge one could as well cut the connection, so
 * a refusal proves nothing either way and costs nothing more.
 *
 * A frame's MAC (HMAC-SHA256 under the session key) covers these bytes:
 *
 *   offset  size  field
 *        0     1  direction: 0 forward (source -> target), 1 back
 *        1     8  seq, big-endian (1, 2, ... per direction)
 *        9     1  kind (MigrationFrameKind)
 *       10     4  raw_len, big-endian
 *       14     4  payload_len, big-endian
 *       18     n  payload
 *
 * so a frame altered, replayed, reordered or reflected the other way is
 * refused. The session key also signs the Welcome, whose packing starts with
 * a protobuf tag byte (>= 0x08), never 0 or 1: the two inputs cannot collide.
 *
 * An ERROR frame carries the sender's errno (positive) in raw_len and its
 * reason as payload text, so both sides report the same cause. */
#include <errno.h>
#include <string.h>
#include <nettle/memops.h>

#include "migration/stream_int.h"
#include "proto/vireo.pb-c.h"

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void mig_sanitize(char *dst, size_t len, const char *src, size_t src_len)
{
	size_t i;

	if (!len)
		return;
	for (i = 0; i < src_len && i + 1 < len && src[i]; i++)
		dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
	dst[i] = '\0';
}

/* One message with its length in front, then the payload. */
static int send_msg(int fd, const struct mig_wait *w, const ProtobufCMessage *m,
		    const uint8_t *payload, size_t payload_len, uint64_t *wire, bool *dirty)
{
	uint8_t buf[4 + MIG_HEADER_MAX];
	size_t len = protobuf_c_message_get_packed_size(m), sent = 0;
	struct iovec iov[2];
	int rc;

	if (len > MIG_HEADER_MAX)
		return -EMSGSIZE;
	protobuf_c_message_pack(m, buf + 4);
	put_be32(buf, (uint32_t)len);
	iov[0] = (struct iovec){ .iov_base = buf, .iov_len = 4 + len };
	iov[1] = (struct iovec){ .iov_base = (void *)payload, .iov_len = payload_len };
	rc = mig_io_writev(fd, iov, 2, w, &sent);
	if (wire)
		*wire += sent;
	if (dirty && rc < 0 && sent)
		*dirty = true;
	return rc;
}

/* A message's bytes into buf (at least MIG_HEADER_MAX long). */
static int recv_msg(int fd, const struct mig_wait *w, uint8_t *buf, size_t *len, uint64_t *wire)
{
	uint8_t be[4];
	uint32_t n;
	int rc;

	if ((rc = mig_io_read_full(fd, be, 4, w)) < 0)
		return rc;
	n = get_be32(be);
	if (n == 0 || n > MIG_HEADER_MAX)
		return -EBADMSG;
	if ((rc = mig_io_read_full(fd, buf, n, w)) < 0)
		return rc;
	*len = n;
	if (wire)
		*wire += 4 + n;
	return 0;
}

/* Packed again, a received message may differ in size from what came
 * (unknown fields kept, repeated fields merged): hence the check. */
static int mac_of(const uint8_t *key, const ProtobufCMessage *m, uint8_t out[MIG_MAC_LEN])
{
	uint8_t buf[MIG_HEADER_MAX];
	struct hmac_sha256_ctx ctx;
	size_t len = protobuf_c_message_get_packed_size(m);

	if (len > sizeof(buf))
		return -EBADMSG;
	protobuf_c_message_pack(m, buf);
	hmac_sha256_set_key(&ctx, MIG_KEY_LEN, key);
	hmac_sha256_update(&ctx, len, buf);
	hmac_sha256_digest(&ctx, MIG_MAC_LEN, out);
	return 0;
}

int mig_hello_send(int fd, const struct mig_wait *w, const struct mig_key *key,
		   const struct mig_session_id *id, const uint8_t nonce[MIG_NONCE_LEN])
{
	Vireo__MigrationHello h = VIREO__MIGRATION_HELLO__INIT;
	uint8_t mac[MIG_MAC_LEN];

	h.version = MIG_PROTOCOL_VERSION;
	h.vm_uuid = (char *)id->vm_uuid;
	h.migration_id = id->migration_id;
	h.generation = id->generation;
	h.nonce = (ProtobufCBinaryData){ .len = MIG_NONCE_LEN, .data = (uint8_t *)nonce };
	if (protobuf_c_message_get_packed_size(&h.base) + MIG_MAC_LEN + 2 > MIG_HEADER_MAX)
		return -EMSGSIZE;
	(void)mac_of(key->bytes, &h.base, mac);
	h.mac = (ProtobufCBinaryData){ .len = MIG_MAC_LEN, .data = mac };
	return send_msg(fd, w, &h.base, NULL, 0, NULL, NULL);
}

int mig_hello_recv(int fd, const struct mig_wait *w, const struct mig_key *key,
		   struct mig_session_id *id, uint8_t nonce[MIG_NONCE_LEN], uint32_t *version)
{
	uint8_t buf[MIG_HEADER_MAX], mac[MIG_MAC_LEN];
	Vireo__MigrationHello *h;
	ProtobufCBinaryData sent;
	size_t len;
	int rc;

	if ((rc = recv_msg(fd, w, buf, &len, NULL)) < 0)
		return rc;
	if (!(h = vireo__migration_hello__unpack(NULL, len, buf)))
		return -EBADMSG;
	*version = h->version;
	rc = -EPROTONOSUPPORT;
	if (h->version != MIG_PROTOCOL_VERSION)
		goto cleanup;
	rc = -EBADMSG;
	if (h->nonce.len != MIG_NONCE_LEN || h->mac.len != MIG_MAC_LEN ||
	    strlen(h->vm_uuid) > MIG_UUID_LEN)
		goto cleanup;
	sent = h->mac;
	h->mac = (ProtobufCBinaryData){ 0 };
	rc = mac_of(key->bytes, &h->base, mac);
	h->mac = sent;
	if (rc < 0)
		goto cleanup;
	rc = -EACCES;
	if (!memeql_sec(mac, sent.data, MIG_MAC_LEN))
		goto cleanup;
	memset(id, 0, sizeof(*id));
	strcpy(id->vm_uuid, h->vm_uuid);
	id->migration_id = h->migration_id;
	id->generation = h->generation;
	memcpy(nonce, h->nonce.data, MIG_NONCE_LEN);
	rc = 0;
cleanup:
	vireo__migration_hello__free_unpacked(h, NULL);
	return rc;
}

int mig_welcome_send(int fd, const struct mig_wait *w, const uint8_t *skey,
		     const uint8_t nonce[MIG_NONCE_LEN], const char *reason)
{
	Vireo__MigrationWelcome m = VIREO__MIGRATION_WELCOME__INIT;
	uint8_t mac[MIG_MAC_LEN];

	if (!skey) {
		m.reason = (char *)reason;
		return send_msg(fd, w, &m.base, NULL, 0, NULL, NULL);
	}
	m.accepted = true;
	m.nonce = (ProtobufCBinaryData){ .len = MIG_NONCE_LEN, .data = (uint8_t *)nonce };
	(void)mac_of(skey, &m.base, mac);   /* a few dozen bytes: it fits */
	m.mac = (ProtobufCBinaryData){ .len = MIG_MAC_LEN, .data = mac };
	return send_msg(fd, w, &m.base, NULL, 0, NULL, NULL);
}

int mig_welcome_recv(int fd, const struct mig_wait *w, const struct mig_key *key,
		     const uint8_t hello_nonce[MIG_NONCE_LEN], bool *accepted, char *reason,
		     size_t reason_len, uint8_t skey[MIG_KEY_LEN])
{
	uint8_t buf[MIG_HEADER_MAX], mac[MIG_MAC_LEN];
	Vireo__MigrationWelcome *m;
	ProtobufCBinaryData sent;
	size_t len;
	int rc;

	*accepted = false;
	if ((rc = recv_msg(fd, w, buf, &len, NULL)) < 0)
		return rc;
	if (!(m = vireo__migration_welcome__unpack(NULL, len, buf)))
		return -EBADMSG;
	rc = 0;
	if (!m->accepted) {
		mig_sanitize(reason, reason_len, m->reason, strlen(m->reason));
		goto cleanup;
	}
	rc = -EBADMSG;
	if (m->nonce.len != MIG_NONCE_LEN || m->mac.len != MIG_MAC_LEN)
		goto cleanup;
	mig_session_key(key, hello_nonce, m->nonce.data, skey);
	sent = m->mac;
	m->mac = (ProtobufCBinaryData){ 0 };
	rc = mac_of(skey, &m->base, mac);
	m->mac = sent;
	if (rc < 0)
		goto cleanup;
	rc = -EACCES;
	if (!memeql_sec(mac, sent.data, MIG_MAC_LEN))
		goto cleanup;
	*accepted = true;
	rc = 0;
cleanup:
	vireo__migration_welcome__free_unpacked(m, NULL);
	return rc;
}

void mig_frame_mac(const struct hmac_sha256_ctx *keyed, enum mig_dir dir, const struct mig_frame *f,
		   const uint8_t *payload, uint8_t out[MIG_MAC_LEN])
{
	struct hmac_sha256_ctx ctx = *keyed;   /* a copy: both directions' threads use it */
	uint8_t head[18];

	head[0] = (uint8_t)dir;
	put_be32(head + 1, (uint32_t)(f->seq >> 32));
	put_be32(head + 5, (uint32_t)f->seq);
	head[9] = (uint8_t)f->kind;
	put_be32(head + 10, f->raw_len);
	put_be32(head + 14, f->payload_len);
	hmac_sha256_update(&ctx, sizeof(head), head);
	hmac_sha256_update(&ctx, f->payload_len, payload);
	hmac_sha256_digest(&ctx, MIG_MAC_LEN, out);
}

int mig_frame_send(int fd, const struct mig_wait *w, const struct mig_frame *f,
		   const uint8_t *payload, uint64_t *wire, bool *dirty)
{
	Vireo__MigrationFrame m = VIREO__MIGRATION_FRAME__INIT;

	m.seq = f->seq;
	m.kind = (Vireo__MigrationFrameKind)f->kind;
	m.raw_len = f->raw_len;
	m.payload_len = f->payload_len;
	m.mac = (ProtobufCBinaryData){ .len = MIG_MAC_LEN, .data = (uint8_t *)f->mac };
	return send_msg(fd, w, &m.base, payload, f->payload_len, wire, dirty);
}

int mig_frame_recv(int fd, const struct mig_wait *w, struct mig_frame *f, uint64_t *wire)
{
	uint8_t buf[MIG_HEADER_MAX];
	Vireo__MigrationFrame *m;
	size_t len;
	int rc;

	if ((rc = recv_msg(fd, w, buf, &len, wire)) < 0)
		return rc;
	if (!(m = vireo__migration_frame__unpack(NULL, len, buf)))
		return -EBADMSG;
	rc = -EBADMSG;
	if (m->mac.len != MIG_MAC_LEN)
		goto cleanup;
	f->seq = m->seq;
	f->kind = (int)m->kind;
	f->raw_len = m->raw_len;
	f->payload_len = m->payload_len;
	memcpy(f->mac, m->mac.data, MIG_MAC_LEN);
	rc = 0;
cleanup:
	vireo__migration_frame__free_unpacked(m, NULL);
	return rc;
}
