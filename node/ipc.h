/* The CLI <-> vireod IPC: libqb IPC, one protobuf Request per message and
 * one protobuf Response back, each behind libqb's request/response header. */
#ifndef VIREO_NODE_IPC_H
#define VIREO_NODE_IPC_H

#define NODE_IPC_DEFAULT_NAME "vireo"
#define NODE_IPC_MSG_REQUEST 1
#define NODE_IPC_MSG_RESPONSE 1
/* Largest message either way; a status of 16 nodes is a few KiB. */
#define NODE_IPC_MAX_MSG (1024 * 1024)
/* Members of this group (and root) may use vireod. */
#define NODE_IPC_ADMIN_GROUP "vireo"

#endif
