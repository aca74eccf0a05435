/* The IPC channel: message encode/decode with malformed input, admission
 * by credentials, and a real libqb server/client round trip (the server runs
 * in a forked child with its own main loop). */
#include <errno.h>
#include <stdbool.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <qb/qbipcc.h>
#include <qb/qbloop.h>

#include "node/client.h"
#include "node/ipc.h"
#include "node/ipc_server.h"
#include "unit.h"

static char ipc_name[64];

START_TEST(request_roundtrip_and_garbage)
{
	Vireo__Request req = VIREO__REQUEST__INIT;
	Vireo__NoteRequest note = VIREO__NOTE_REQUEST__INIT;
	Vireo__Request *back;
	uint8_t buf[256];
	size_t len;

	note.text = "hello";
	req.body_case = VIREO__REQUEST__BODY_NOTE;
	req.note = &note;
	len = vireo__request__pack(&req, buf);
	back = vireo__request__unpack(NULL, len, buf);
	ck_assert_ptr_nonnull(back);
	ck_assert_int_eq(back->body_case, VIREO__REQUEST__BODY_NOTE);
	ck_assert_str_eq(back->note->text, "hello");
	vireo__request__free_unpacked(back, NULL);
	/* truncated: the string's length runs past the end */
	ck_assert_ptr_null(vireo__request__unpack(NULL, len - 2, buf));
	memset(buf, 0xff, sizeof(buf));
	ck_assert_ptr_null(vireo__request__unpack(NULL, 16, buf));
}
END_TEST

START_TEST(admission_by_credentials)
{
	gid_t admin = 4242;

	ck_assert(node_ipc_admitted(0, 0, admin));
	ck_assert(node_ipc_admitted(1000, admin, admin));
	ck_assert(!node_ipc_admitted(65534, 65534, admin));
	ck_assert(!node_ipc_admitted(65534, 65534, (gid_t)-1));
}
END_TEST

static void answer(void *ctx, struct node_ipc_call *call, const Vireo__Request *req)
{
	Vireo__Response resp = VIREO__RESPONSE__INIT;
	Vireo__StatusReply st = VIREO__STATUS_REPLY__INIT;

	if (req->body_case != VIREO__REQUEST__BODY_STATUS) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID, "only status here");
		return;
	}
	st.cluster = "unit";
	st.quorate = true;
	resp.body_case = VIREO__RESPONSE__BODY_STATUS;
	resp.status = &st;
	node_ipc_reply(call, &resp);
}

static int32_t stop_loop(int32_t sig, void *data)
{
	qb_loop_stop(data);
	return 0;
}

static pid_t start_server(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		qb_loop_t *loop = qb_loop_create();
		struct node_ipc_server *srv = NULL;
		qb_loop_signal_handle h;

		qb_loop_signal_add(loop, QB_LOOP_HIGH, SIGTERM, loop, stop_loop, &h);
		if (node_ipc_server_start(loop, ipc_name, answer, NULL, &srv) < 0)
			_exit(3);
		qb_loop_run(loop);
		node_ipc_server_stop(srv);
		qb_loop_destroy(loop);
		_exit(0);
	}
	return pid;
}

static int connect_retry(struct vireo_client **c)
{
	int rc = -ECONNREFUSED;

	for (int i = 0; i < 100 && rc < 0; i++) {
		if ((rc = vireo_client_connect(ipc_name, c)) < 0)
			usleep(20000);
	}
	return rc;
}

static void stop_server(pid_t pid)
{
	int status;

	kill(pid, SIGTERM);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

START_TEST(server_answers_and_refuses_garbage)
{
	pid_t pid = start_server();
	struct vireo_client *c = NULL;
	Vireo__Request req = VIREO__REQUEST__INIT;
	Vireo__StatusRequest sr = VIREO__STATUS_REQUEST__INIT;
	Vireo__Response *resp = NULL;
	qb_ipcc_connection_t *raw;
	struct {
		struct qb_ipc_request_header hdr;
		uint8_t junk[8];
	} bad;
	uint8_t answer_buf[4096];
	ssize_t n;

	ck_assert_int_eq(connect_retry(&c), 0);
	req.body_case = VIREO__REQUEST__BODY_STATUS;
	req.status = &sr;
	ck_assert_int_eq(vireo_client_call(c, &req, 5000, &resp), 0);
	ck_assert_int_eq(resp->outcome, VIREO__OUTCOME__OUTCOME_OK);
	ck_assert_str_eq(resp->status->cluster, "unit");
	vireo__response__free_unpacked(resp, NULL);
	vireo_client_close(c);

	/* a malformed request gets a clear refusal, and the server lives on */
	raw = qb_ipcc_connect(ipc_name, NODE_IPC_MAX_MSG);
	ck_assert_ptr_nonnull(raw);
	bad.hdr.id = NODE_IPC_MSG_REQUEST;
	bad.hdr.size = sizeof(bad);
	memset(bad.junk, 0xff, sizeof(bad.junk));
	n = qb_ipcc_send(raw, &bad, sizeof(bad));
	ck_assert_int_eq(n, sizeof(bad));
	n = qb_ipcc_recv(raw, answer_buf, sizeof(answer_buf), 5000);
	ck_assert_int_gt(n, (ssize_t)sizeof(struct qb_ipc_response_header));
	resp = vireo__response__unpack(NULL, (size_t)n - sizeof(struct qb_ipc_response_header),
				       answer_buf + sizeof(struct qb_ipc_response_header));
	ck_assert_ptr_nonnull(resp);
	ck_assert_int_eq(resp->outcome, VIREO__OUTCOME__OUTCOME_INVALID);
	ck_assert_ptr_nonnull(strstr(resp->message, "could not decode"));
	vireo__response__free_unpacked(resp, NULL);
	qb_ipcc_disconnect(raw);

	ck_assert_int_eq(connect_retry(&c), 0);
	vireo_client_close(c);
	stop_server(pid);
}
END_TEST

/* A user that is neither root nor in group vireo is turned away by the
 * server, which checks the peer's credentials. */
START_TEST(unprivileged_user_is_refused)
{
	pid_t pid, client;
	int status;
	struct group *g = getgrnam(NODE_IPC_ADMIN_GROUP);
	struct vireo_client *c = NULL;

	if (geteuid() != 0) {
		printf("skipped: needs root to act as another user\n");
		return;
	}
	pid = start_server();
	ck_assert_int_eq(connect_retry(&c), 0);   /* root is admitted; server is up */
	vireo_client_close(c);
	client = fork();
	if (client == 0) {
		gid_t nogroup = 65534;
		if (setgroups(1, &nogroup) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
			_exit(10);
		_exit(vireo_client_connect(ipc_name, &c) == 0 ? 11 : 0);
	}
	ck_assert_int_eq(waitpid(client, &status, 0), client);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "an unprivileged user was admitted (status %d)", status);
	if (g) {
		/* the same uid in group vireo is admitted */
		client = fork();
		if (client == 0) {
			gid_t vg = g->gr_gid;
			if (setgroups(1, &vg) < 0 || setgid(vg) < 0 || setuid(65534) < 0)
				_exit(10);
			_exit(vireo_client_connect(ipc_name, &c) == 0 ? 0 : 12);
		}
		ck_assert_int_eq(waitpid(client, &status, 0), client);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			      "a member of group %s was refused (status %d)", NODE_IPC_ADMIN_GROUP,
			      WEXITSTATUS(status));
	}
	stop_server(pid);
}
END_TEST

static Suite *ipc_suite(void)
{
	Suite *s = suite_create("ipc");
	TCase *tc = tcase_create("ipc");

	snprintf(ipc_name, sizeof(ipc_name), "vireo-unit-%d", (int)getpid());
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, request_roundtrip_and_garbage);
	tcase_add_test(tc, admission_by_credentials);
	tcase_add_test(tc, server_answers_and_refuses_garbage);
	tcase_add_test(tc, unprivileged_user_is_refused);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(ipc_suite)
