/* Acceleration: kvm, tcg, or auto. A /dev/kvm that exists is no proof that
 * KVM runs a Linux guest (nested or paravirtualised KVM such as PVM may
 * not), so auto boots the caller's test guest under KVM as a transient
 * domain and takes KVM only if its first serial line appears in time.
 *
 * The probe runs in a thread of its own (it calls the daemon, which may
 * hang, and sleeps between looks at the serial log) and posts its answer
 * to the loop, which calls done. A probe stopped meanwhile (disconnect)
 * is marked cancelled; its answer then only frees it. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <libvirt/virterror.h>
#include <qb/qblog.h>

#include "hypervisor/domain_xml.h"
#include "hypervisor/hv_timeouts.h"
#include "hypervisor/libvirt_events.h"
#include "hypervisor/libvirt_int.h"
#include "util/clock.h"

#define PROBE_MEMORY_MIB 128
#define PROBE_CMDLINE "console=ttyS0 quiet panic=-1"
#define KVM_DEV "/dev/kvm"

struct hv_probe {
	struct hv_conn *c;           /* the thread uses it for hv_lv_ref only */
	hv_accel_done_fn done;
	void *ctx;
	bool cancelled;              /* loop thread only */
	enum hv_accel want;
	enum hv_accel result;
	char reason[512];
	char name[HV_NAME_MAX + 1];
	char *serial;
	char *kernel, *initrd, *cmdline;
	uint32_t timeout_ms;
	uint32_t poll_ms;
};

static void probe_free(struct hv_probe *p)
{
	if (p->serial)
		unlink(p->serial);
	free(p->serial);
	free(p->kernel);
	free(p->initrd);
	free(p->cmdline);
	free(p);
}

static bool serial_has_line(const char *path)
{
	char buf[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	return n > 0 && memchr(buf, '\n', (size_t)n) != NULL;
}

/* Boots the probe guest on conn; NULL (with p->reason) when KVM is out already. */
static virDomainPtr probe_boot(struct hv_probe *p, virConnectPtr conn)
{
	struct hv_vm_spec spec = {
		.name = p->name,
		.vcpus = 1,
		.memory_mib = PROBE_MEMORY_MIB,
		.boot = HV_BOOT_KERNEL,
		.kernel = p->kernel,
		.initrd = p->initrd,
		.cmdline = p->cmdline ? p->cmdline : PROBE_CMDLINE,
		.serial_log = p->serial,
		.accel = HV_ACCEL_KVM,
	};
	const char *why = NULL;
	char *caps = NULL, *xml = NULL;
	virDomainPtr dom = NULL;
	char detail[300];
	int code, int1;

	if (access(KVM_DEV, R_OK | W_OK) < 0) {
		snprintf(p->reason, sizeof(p->reason), "%s is not usable here (%s)", KVM_DEV,
			 strerror(errno));
		return NULL;
	}
	if (!(caps = virConnectGetDomainCapabilities(conn, NULL, NULL, NULL, "kvm", 0))) {
		hv_lv_last_error(&code, &int1, detail, sizeof(detail));
		snprintf(p->reason, sizeof(p->reason), "libvirt cannot run KVM guests here (%s)",
			 detail);
		goto cleanup;
	}
	if (hv_domain_xml(&spec, HV_ACCEL_KVM, &xml, &why) < 0) {
		snprintf(p->reason, sizeof(p->reason), "cannot describe the KVM probe guest (%s)",
			 why ? why : "out of memory");
		goto cleanup;
	}
	unlink(p->serial);
	/* Transient, and destroyed by libvirt if vireo dies mid-probe. */
	if (!(dom = virDomainCreateXML(conn, xml, VIR_DOMAIN_START_AUTODESTROY))) {
		hv_lv_last_error(&code, &int1, detail, sizeof(detail));
		snprintf(p->reason, sizeof(p->reason), "a KVM guest does not start here (%s)", detail);
	}
cleanup:
	virResetLastError();
	free(caps);
	free(xml);
	return dom;
}

/* Watches the booted guest's serial log until it prints, stops, or the
 * time is up. */
static enum hv_accel probe_watch(struct hv_probe *p, virDomainPtr dom)
{
	uint64_t started = util_mono_ms(), waited;
	struct timespec pause = { p->poll_ms / 1000u, (long)(p->poll_ms % 1000u) * 1000000L };

	for (;;) {
		waited = util_mono_ms() - started;
		if (serial_has_line(p->serial)) {
			snprintf(p->reason, sizeof(p->reason), "a KVM probe guest printed its first "
				 "serial line %lu ms after it started", (unsigned long)waited);
			return HV_ACCEL_KVM;
		}
		if (virDomainIsActive(dom) != 1) {
			snprintf(p->reason, sizeof(p->reason), "the KVM probe guest stopped %lu ms after "
				 "it started without printing anything", (unsigned long)waited);
			return HV_ACCEL_TCG;
		}
		if (waited >= p->timeout_ms) {
			snprintf(p->reason, sizeof(p->reason), "a KVM probe guest printed nothing in "
				 "%lu ms: this host's KVM does not run the guest kernel",
				 (unsigned long)waited);
			return HV_ACCEL_TCG;
		}
		nanosleep(&pause, NULL);
	}
}

static void answered(void *data)
{
	struct hv_probe *p = data;
	struct hv_conn *c = p->c;

	if (p->cancelled) {
		probe_free(p);
		return;
	}
	c->probe = NULL;
	c->accel = p->result;
	qb_log(LOG_NOTICE, "acceleration: %s (%s)", hv_accel_name(p->result), p->reason);
	p->done(p->ctx, p->result, p->reason);
	probe_free(p);
}

static void *probe_thread(void *data)
{
	struct hv_probe *p = data;
	virConnectPtr conn = p->want == HV_ACCEL_AUTO ? hv_lv_ref(p->c) : NULL;
	virDomainPtr dom;

	p->result = p->want;
	if (p->want != HV_ACCEL_AUTO) {
		snprintf(p->reason, sizeof(p->reason), "configured");
	} else if (!conn) {
		snprintf(p->reason, sizeof(p->reason), "the connection to libvirt was lost before "
			 "the KVM probe; resolve again once it is restored to try KVM");
		p->result = HV_ACCEL_TCG;
	} else if (!(dom = probe_boot(p, conn))) {
		p->result = HV_ACCEL_TCG;
	} else {
		qb_log(LOG_INFO, "probing KVM with guest %s (up to %u ms)", p->name, p->timeout_ms);
		p->result = probe_watch(p, dom);
		if (virDomainDestroy(dom) < 0)
			virResetLastError();   /* already gone, or the connection is */
		virDomainFree(dom);
	}
	if (conn)
		virConnectClose(conn);
	/* Retried: the loop must hear of it, or the host never learns its accel. */
	while (hv_libvirt_events_post(answered, p) == -ENOMEM)
		sched_yield();
	return NULL;
}

static int dup_opt(char **out, const char *s)
{
	*out = NULL;
	return s && !(*out = strdup(s)) ? -ENOMEM : 0;
}

int hv_lv_resolve_accel(struct hv_conn *c, enum hv_accel want, const struct hv_accel_probe *probe,
			hv_accel_done_fn done, void *ctx)
{
	struct hv_probe *p;
	pthread_t t;
	int rc;

	if (c->probe) {
		qb_log(LOG_ERR, "an acceleration probe is already running; wait for its answer");
		return -EBUSY;
	}
	if (want == HV_ACCEL_AUTO && (!probe || !probe->kernel || !probe->serial_dir)) {
		qb_log(LOG_ERR, "auto acceleration needs the test guest's kernel and a directory for "
		       "its serial log; set them or choose kvm or tcg");
		return -EINVAL;
	}
	if (want == HV_ACCEL_AUTO && !hv_lv_connected(c)) {
		qb_log(LOG_WARNING, "cannot probe KVM while disconnected from libvirt; retry once "
		       "the connection is restored");
		return -ENOTCONN;
	}
	if (!(p = calloc(1, sizeof(*p))))
		return -ENOMEM;
	p->c = c;
	p->done = done;
	p->ctx = ctx;
	p->want = want;
	p->poll_ms = VIREO_HV_SERIAL_POLL_MS(c->token_ms);
	rc = -ENOMEM;
	if (want == HV_ACCEL_AUTO) {
		snprintf(p->name, sizeof(p->name), "vireo-accel-probe-%ld", (long)getpid());
		if (asprintf(&p->serial, "%s/%s.log", probe->serial_dir, p->name) < 0) {
			p->serial = NULL;
			goto fail;
		}
		if (dup_opt(&p->kernel, probe->kernel) < 0 || dup_opt(&p->initrd, probe->initrd) < 0 ||
		    dup_opt(&p->cmdline, probe->cmdline) < 0)
			goto fail;
		p->timeout_ms = probe->timeout_ms ? probe->timeout_ms :
				VIREO_HV_ACCEL_PROBE_MS(c->token_ms);
	}
	if ((rc = -pthread_create(&t, NULL, probe_thread, p)) < 0)
		goto fail;
	pthread_detach(t);
	c->probe = p;
	return 0;
fail:
	probe_free(p);
	return rc;
}

enum hv_accel hv_lv_accel(const struct hv_conn *c)
{
	return c->accel;
}

void hv_lv_probe_stop(struct hv_conn *c)
{
	struct hv_probe *p = c->probe;

	if (!p)
		return;
	/* Its thread still runs: its answer frees it. */
	p->cancelled = true;
	c->probe = NULL;
}
