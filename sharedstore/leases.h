/* Disk leases: every writable disk of a running VM is protected by a lease on
 * the shared pool, held by libvirt's lock manager (virtlockd, the "lockd"
 * plugin), so a second host starting the same disk fails before QEMU opens
 * it. vireo does not invent a lock of its own: it configures lockd, checks
 * that the configuration is in place, and reads lockd's leases.
 *
 * With file_lockspace_dir set, lockd keeps one file per disk in that
 * directory, named by the SHA-256 (hex) of the disk's path as written in the
 * domain XML, and virtlockd holds an fcntl write lock on its first byte for
 * as long as the VM runs (a shared lock for <shareable/> disks, none for
 * read-only ones). doc/sharedstore.md says what that means when a host dies. */
#ifndef VIREO_SHAREDSTORE_LEASES_H
#define VIREO_SHAREDSTORE_LEASES_H

#include <stdbool.h>
#include <stddef.h>

/* Where a lab host or an installer puts the snippets below. */
#define STORE_LEASE_QEMU_CONF   "qemu.conf"
#define STORE_LEASE_LOCKD_CONF  "qemu-lockd.conf"

/* The qemu.conf line that turns lockd on. Returns the length written, or
 * -ENOSPC when buf is too small. */
int store_lease_render_qemu_conf(char *buf, size_t len);

/* The whole qemu-lockd.conf for a pool mounted at pool: automatic leases for
 * every disk, no disk without one, the lockspace in <pool>/leases. Returns the
 * length, -ENOSPC, or -EINVAL when pool cannot be written as a libvirt
 * config string (relative, or holding a quote, backslash or newline). */
int store_lease_render_lockd_conf(const char *pool, char *buf, size_t len);

/* Checks that this host's libvirt runs QEMU under lockd with its lockspace in
 * <pool>/leases: reads <conf_dir>/qemu.conf and <conf_dir>/qemu-lockd.conf
 * (conf_dir is /etc/libvirt on a host) with libvirt's defaults for what is
 * not set. Returns 0, or -errno with one sentence in err saying what to fix.
 * (libvirt reads these files when it starts: a fixed file needs a restart.) */
int store_lease_check_host(const char *conf_dir, const char *pool, char *err, size_t errlen);

/* <pool>/leases/<sha256 of disk_path>: the file lockd locks for that disk. */
int store_lease_path(const char *pool, const char *disk_path, char *out, size_t len);

/* 1 when some process on some host holds the disk's lease (a running VM),
 * 0 when not (including when no lease file exists), -errno when unknown.
 * A test only: it takes nothing. */
int store_lease_held(const char *pool, const char *disk_path);

/* 1 when some process holds a lock on the disk image itself, 0 when none
 * does (or the image is gone), -errno when unknown. QEMU locks every image
 * it has open and keeps the locks while the guest is paused, when libvirt
 * has already let the disk's lease go (a guest paused on a full pool, or
 * on a host frozen with it paused): a lease alone does not prove that no
 * QEMU could resume on the disk. A test only: it takes nothing. */
int store_disk_locked(const char *disk_path);

/* 1 when the disk is in use anywhere (its lease is held or its image is
 * locked), 0 when it is surely free, -errno when unknown. What fencing
 * must see before it starts the disk's VM elsewhere. */
int store_disk_in_use(const char *pool, const char *disk_path);

/* Takes the disk's lease the way virtlockd does (an exclusive lock on the
 * lease file, created if missing), so that no VM can start on the disk until
 * store_lease_release(). For operations that must not race with a VM start
 * (deleting an image). Returns an fd (>= 0), -EBUSY when a VM holds it, or
 * -errno. The lock is an open-file-description lock: it is not inherited by
 * children and not dropped when other fds of this process close the file. */
int store_lease_take(const char *pool, const char *disk_path);

/* Drops a lease from store_lease_take(). With unlink_file, the lease file is
 * removed first (while still locked, as virtlockd does for the leases it
 * creates), for a disk that no longer exists. */
void store_lease_release(int fd, const char *pool, const char *disk_path, bool unlink_file);

#endif
