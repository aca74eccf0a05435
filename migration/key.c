/* Keys: the cluster's migration key from corosync's authkey, each session's
 * key from it and both nonces, and the nonces themselves. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <nettle/hkdf.h>
#include <nettle/hmac.h>

#include "migration/stream_int.h"

#define KEY_FILE_MIN 16
/* corosync's authkey is 128 to 4096 bytes; anything far larger is the wrong file. */
#define KEY_FILE_MAX (64 * 1024)
#define KEY_INFO "vireo migration stream v1"

int mig_key_from_file(const char *path, struct mig_key *out)
{
	static const uint8_t salt[SHA256_DIGEST_SIZE];   /* RFC 5869: no salt = zeros */
	struct hmac_sha256_ctx ctx;
	uint8_t prk[SHA256_DIGEST_SIZE];
	uint8_t *buf = NULL;
	size_t have = 0;
	ssize_t n;
	int fd, rc = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	if (!(buf = malloc(KEY_FILE_MAX + 1))) {
		rc = -ENOMEM;
		goto cleanup;
	}
	while (have <= KEY_FILE_MAX) {
		n = read(fd, buf + have, KEY_FILE_MAX + 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto cleanup;
		}
		if (n == 0)
			break;
		have += (size_t)n;
	}
	if (have < KEY_FILE_MIN || have > KEY_FILE_MAX) {
		rc = -EINVAL;
		goto cleanup;
	}
	hmac_sha256_set_key(&ctx, sizeof(salt), salt);
	hkdf_extract(&ctx, (nettle_hash_update_func *)hmac_sha256_update,
		     (nettle_hash_digest_func *)hmac_sha256_digest, SHA256_DIGEST_SIZE, have, buf,
		     prk);
	hmac_sha256_set_key(&ctx, sizeof(prk), prk);
	hkdf_expand(&ctx, (nettle_hash_update_func *)hmac_sha256_update,
		    (nettle_hash_digest_func *)hmac_sha256_digest, SHA256_DIGEST_SIZE,
		    strlen(KEY_INFO), (const uint8_t *)KEY_INFO, MIG_KEY_LEN, out->bytes);
cleanup:
	if (buf) {
		explicit_bzero(buf, have);
		free(buf);
	}
	explicit_bzero(prk, sizeof(prk));
	explicit_bzero(&ctx, sizeof(ctx));
	close(fd);
	return rc;
}

void mig_session_key(const struct mig_key *cluster, const uint8_t hello_nonce[MIG_NONCE_LEN],
		     const uint8_t welcome_nonce[MIG_NONCE_LEN], uint8_t out[MIG_KEY_LEN])
{
	struct hmac_sha256_ctx ctx;

	hmac_sha256_set_key(&ctx, MIG_KEY_LEN, cluster->bytes);
	hmac_sha256_update(&ctx, 7, (const uint8_t *)"session");
	hmac_sha256_update(&ctx, MIG_NONCE_LEN, hello_nonce);
	hmac_sha256_update(&ctx, MIG_NONCE_LEN, welcome_nonce);
	hmac_sha256_digest(&ctx, MIG_KEY_LEN, out);
	explicit_bzero(&ctx, sizeof(ctx));
}

int mig_random(void *buf, size_t len)
{
	uint8_t *p = buf;
	ssize_t n;

	while (len) {
		n = getrandom(p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
