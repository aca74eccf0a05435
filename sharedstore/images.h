/* Disk images in the shared pool, made and inspected with qemu-img (run
 * without a shell, its stderr kept for the error message).
 *
 * An image NAME of format FMT is the file <pool>/images/NAME.FMT ("qcow2" or
 * "raw"). The format lives in the file name, not in a probe of the contents:
 * a guest that writes a qcow2 header into its raw disk must not turn the
 * image into something else (a qcow2 with a backing file on the host, say).
 * A VM's disk XML uses the path from store_image_path(), byte for byte, since
 * libvirt's lease for the disk is named after that string (leases.h).
 *
 * Functions return 0 or -errno and leave one sentence in store_error(st).
 * They block for as long as qemu-img runs (bounded by st->timeout_ms).
 * Not thread-safe per handle. */
#ifndef VIREO_SHAREDSTORE_IMAGES_H
#define VIREO_SHAREDSTORE_IMAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_IMAGE_NAME_MAX   64
#define STORE_IMAGE_MIN_BYTES  (1ull << 20)     /* 1 MiB */
#define STORE_IMAGE_MAX_BYTES  (64ull << 40)    /* 64 TiB */
/* qemu-img on a healthy pool takes milliseconds; preallocating a large raw
 * image on NFS without fallocate can take minutes (qemu writes zeros). */
#define STORE_QEMU_IMG_TIMEOUT_MS 120000u

enum store_format {
	STORE_FMT_QCOW2,
	STORE_FMT_RAW,
};

/* store_image_create() flags */
#define STORE_IMAGE_PREALLOCATE 0x1u   /* reserve the space now (fallocate): no ENOSPC later */

struct store {
	char *pool;              /* the pool's mount point, as every host mounts it */
	char *images;            /* <pool>/images */
	char *qemu_img;          /* the program to run; "qemu-img" (from PATH) by default */
	unsigned timeout_ms;     /* for each qemu-img run */
	char error[640];
};

struct store_image_info {
	char name[STORE_IMAGE_NAME_MAX + 1];
	enum store_format format;
	uint64_t virtual_bytes;  /* the size the guest sees */
	uint64_t actual_bytes;   /* space it takes in the pool */
	bool in_use;             /* a VM holds its disk lease */
	int error;               /* list only: 0, or -errno when qemu-img could not read it */
};

/* A handle on the pool at pool (an absolute path; no I/O happens here). */
int store_open(const char *pool, struct store **out);
void store_close(struct store *st);
const char *store_error(const struct store *st);

/* 1-64 letters, digits, '-', '_' or '.', not starting with '.'. */
bool store_image_name_valid(const char *name);

/* "10G", "512M", "1T", "4096K", "10GiB", or plain bytes "1048576"; binary
 * units (K = 1024). 0, -EINVAL (not a size), -ERANGE (does not fit 64 bits). */
int store_parse_size(const char *text, uint64_t *bytes);

/* 0 when bytes is a valid image size (1 MiB .. 64 TiB, a multiple of 512),
 * else -EINVAL / -ERANGE with one sentence in err. */
int store_image_size_check(uint64_t bytes, char *err, size_t errlen);

const char *store_format_name(enum store_format fmt);
int store_format_parse(const char *text, enum store_format *fmt);

/* <pool>/images/NAME.FMT: the path a VM's disk XML must use. */
int store_image_path(const struct store *st, const char *name, enum store_format fmt,
		     char *buf, size_t len);

/* Creates an image. It appears under its name complete or not at all: it is
 * made under a temporary name and linked into place; on any failure (a full
 * pool: -ENOSPC) the temporary file is removed. -EEXIST when an image of that
 * name exists in either format. */
int store_image_create(struct store *st, const char *name, uint64_t bytes,
		       enum store_format fmt, unsigned flags);

/* Grows an image to bytes (shrinking is refused: -EINVAL). -EBUSY when a VM
 * uses it (its lease is held, or QEMU has it open). */
int store_image_resize(struct store *st, const char *name, uint64_t bytes);

/* Deletes an image unless a VM uses it (-EBUSY): it holds the disk's lease
 * while it asks qemu-img whether any QEMU has the image open and unlinks it,
 * so no VM can start on it in between. */
int store_image_delete(struct store *st, const char *name);

int store_image_info(struct store *st, const char *name, struct store_image_info *info);

/* Every image, sorted by name; free *out with free(). An image qemu-img
 * cannot read is listed with its error set. */
int store_image_list(struct store *st, struct store_image_info **out, size_t *n);

#endif
