/* Acceleration: kvm, tcg, or auto. A /dev/kvm that exists is no proof that
 * KVM runs a Linux guest (nested or paravirtualised KVM such as PVM may
 * not), so auto boots the caller's test guest under KVM as a transient
 * domain and takes KVM only if its first serial line appears in time.
 * Polling the serial log on a loop timer keeps the main loop free. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <libvirt/virterror.h>
#include <qb/qblog.h>

#include "hypervisor/domain_xml.h"
#include "hypervisor/hv_timeouts.h"
#include "hypervisor/libvirt_int.h"

#define PROBE_MEMORY_MIB 128
#define PROBE_CMDLINE "console=ttyS0 quiet panic=-1"
#define KVM_DEV "/dev/kvm"

struct hv_probe {
	struct hv_conn *c;
	hv_accel_done_fn done;
	void *ctx;
	enum hv_accel result;
	char reason[512];
	virDomainPtr dom;
	char name[HV_NAME_MAX + 1];
	char *serial;
	uint64_t started_ms;
	uint32_t timeout_ms;
	qb_loop_timer_handle timer;
	bool timer_armed;
	bool job_queued;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / NS_PER_MS;
}

/* Destroys the probe guest and frees p; done is not called. */
static void probe_free(struct hv_probe *p)
{
	if (p->timer_armed)
		qb_loop_timer_del(p->c->loop, p->timer);
	if (p->dom) {
		if (virDomainDestroy(p->dom) < 0)
			virResetLastError();   /* already gone, or the connection is */
		virDomainFree(p->dom);
	}
	if (p->serial)
		unlink(p->serial);
	free(p->serial);
	free(p);
}

static void finish(struct hv_probe *p)
{
	struct hv_conn *c = p->c;
	hv_accel_done_fn done = p->done;
	void *ctx = p->ctx;
	enum hv_accel result = p->result;
	char reason[sizeof(p->reason)];

	p->timer_armed = false;         /* finish runs from the timer or a job */
	p->job_queued = false;
	memcpy(reason, p->reason, sizeof(reason));
	c->probe = NULL;
	probe_free(p);
	c->accel = result;
	qb_log(LOG_NOTICE, "acceleration: %s (%s)", hv_accel_name(result), reason);
	done(ctx, result, reason);
}

static void finish_job(void *data)
{
	finish(data);
}

static int finish_soon(struct hv_probe *p, enum hv_accel result)
{
	int rc;

	p->result = result;
	if ((rc = qb_loop_job_add(p->c->loop, QB_LOOP_MED, p, finish_job)) == 0)
		p->job_queued = true;
	return rc;
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

static void probe_tick(void *data)
{
	struct hv_probe *p = data;
	struct hv_conn *c = p->c;
	uint64_t waited = mono_ms() - p->started_ms;

	p->timer_armed = false;
	if (serial_has_line(p->serial)) {
		snprintf(p->reason, sizeof(p->reason), "a KVM probe guest printed its first serial "
			 "line %lu ms after it started", (unsigned long)waited);
		p->result = HV_ACCEL_KVM;
	} else if (!c->conn) {
		snprintf(p->reason, sizeof(p->reason), "the connection to libvirt was lost during "
			 "the KVM probe; resolve again once it is restored to try KVM");
		p->result = HV_ACCEL_TCG;
	} else if (virDomainIsActive(p->dom) == 0) {
		snprintf(p->reason, sizeof(p->reason), "the KVM probe guest stopped %lu ms after it "
			 "started without printing anything", (unsigned long)waited);
		p->result = HV_ACCEL_TCG;
	} else if (waited >= p->timeout_ms) {
		snprintf(p->reason, sizeof(p->reason), "a KVM probe guest printed nothing in %lu ms: "
			 "this host's KVM does not run the guest kernel", (unsigned long)waited);
		p->result = HV_ACCEL_TCG;
	} else {
		virResetLastError();
		if (qb_loop_timer_add(c->loop, QB_LOOP_MED,
				      VIREO_HV_SERIAL_POLL_MS(c->token_ms) * NS_PER_MS, p, probe_tick,
				      &p->timer) == 0) {
			p->timer_armed = true;
			return;
		}
		snprintf(p->reason, sizeof(p->reason), "cannot arm a timer to watch the KVM probe");
		p->result = HV_ACCEL_TCG;
	}
	finish(p);
}

/* Boots the probe guest; false (with p->reason) when KVM is out already. */
static bool probe_boot(struct hv_probe *p, const struct hv_accel_probe *probe)
{
	struct hv_conn *c = p->c;
	struct hv_vm_spec spec = {
		.name = p->name,
		.vcpus = 1,
		.memory_mib = PROBE_MEMORY_MIB,
		.boot = HV_BOOT_KERNEL,
		.kernel = probe->kernel,
		.initrd = probe->initrd,
		.cmdline = probe->cmdline ? probe->cmdline : PROBE_CMDLINE,
		.serial_log = p->serial,
		.accel = HV_ACCEL_KVM,
	};
	const char *why = NULL;
	char *caps = NULL, *xml = NULL;
	char detail[300];
	int code, int1;
	bool ok = false;

	if (access(KVM_DEV, R_OK | W_OK) < 0) {
		snprintf(p->reason, sizeof(p->reason), "%s is not usable here (%s)", KVM_DEV,
			 strerror(errno));
		return false;
	}
	if (!(caps = virConnectGetDomainCapabilities(c->conn, NULL, NULL, NULL, "kvm", 0))) {
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
	p->started_ms = mono_ms();
	/* Transient, and destroyed by libvirt if vireo dies mid-probe. */
	if (!(p->dom = virDomainCreateXML(c->conn, xml, VIR_DOMAIN_START_AUTODESTROY))) {
		hv_lv_last_error(&code, &int1, detail, sizeof(detail));
		snprintf(p->reason, sizeof(p->reason), "a KVM guest does not start here (%s)", detail);
		goto cleanup;
	}
	ok = true;
cleanup:
	virResetLastError();
	free(caps);
	free(xml);
	return ok;
}

int hv_lv_resolve_accel(struct hv_conn *c, enum hv_accel want, const struct hv_accel_probe *probe,
			hv_accel_done_fn done, void *ctx)
{
	struct hv_probe *p;
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
	if (want == HV_ACCEL_AUTO && !c->conn) {
		qb_log(LOG_WARNING, "cannot probe KVM while disconnected from libvirt; retry once "
		       "the connection is restored");
		return -ENOTCONN;
	}
	if (!(p = calloc(1, sizeof(*p))))
		return -ENOMEM;
	p->c = c;
	p->done = done;
	p->ctx = ctx;
	if (want != HV_ACCEL_AUTO) {
		snprintf(p->reason, sizeof(p->reason), "configured");
		goto queue;
	}
	snprintf(p->name, sizeof(p->name), "vireo-accel-probe-%ld", (long)getpid());
	if (asprintf(&p->serial, "%s/%s.log", probe->serial_dir, p->name) < 0) {
		p->serial = NULL;
		free(p);
		return -ENOMEM;
	}
	p->timeout_ms = probe->timeout_ms ? probe->timeout_ms : VIREO_HV_ACCEL_PROBE_MS(c->token_ms);
	if (!probe_boot(p, probe)) {
		want = HV_ACCEL_TCG;
		goto queue;
	}
	qb_log(LOG_INFO, "probing KVM with guest %s (up to %u ms)", p->name, p->timeout_ms);
	c->probe = p;
	if ((rc = qb_loop_timer_add(c->loop, QB_LOOP_MED,
				    VIREO_HV_SERIAL_POLL_MS(c->token_ms) * NS_PER_MS, p, probe_tick,
				    &p->timer)) < 0) {
		c->probe = NULL;
		probe_free(p);
		return rc;
	}
	p->timer_armed = true;
	return 0;
queue:
	c->probe = p;
	if ((rc = finish_soon(p, want)) < 0) {
		c->probe = NULL;
		probe_free(p);
		return rc;
	}
	return 0;
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
	if (p->job_queued)
		qb_loop_job_del(c->loop, QB_LOOP_MED, p, finish_job);
	c->probe = NULL;
	probe_free(p);
}
