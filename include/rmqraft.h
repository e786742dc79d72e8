/*
 * rmqraft: embeddable replicated commitlog groups (Raft over TCP), C ABI version 0 with
 * 0.2's rmqraft_group_wait_leader and messages (topics, sends, pulls, lookups, consumer
 * offsets). The contract, every function and rule: docs/C-API.md.
 *
 * Generated from src/ffi/ by cbindgen (build.rs, cbindgen.toml). Do not edit: change the
 * Rust source and run `RMQRAFT_UPDATE_HEADER=1 cargo build`.
 *
 * Conventions
 * - Every `_open` has a `_close`; `_close(NULL)` is a no-op. A handle may be used from any
 *   thread at once (the library locks inside), except that `_close` must not race with
 *   other calls on the same handle.
 * - Fallible calls return `rmqraft_result`. Outputs come last and are written only on
 *   RMQRAFT_OK (one exception: rmqraft_group_read() sets *len_out to the size needed when
 *   it returns RMQRAFT_ERR_BUFFER_TOO_SMALL). rmqraft_last_error() gives the detail of the
 *   calling thread's last failure.
 * - No call aborts the host: a panic inside the library is caught and returned as
 *   RMQRAFT_ERR_PANIC.
 * - Pointer arguments are required (NULL gives RMQRAFT_ERR_INVALID_ARGUMENT) unless the
 *   function says otherwise; `userdata` is never looked at. Strings in are NUL-terminated
 *   UTF-8 and are not retained after the call. Strings out are static or copied into
 *   caller memory (rmqraft_send_result).
 * - Callbacks get `userdata` first and run on library threads, named in each callback
 *   type's documentation. Their pointer arguments are valid only during the call. A
 *   callback must return promptly, must not throw or longjmp out, and must not call
 *   `_close` on the handle that called it (nor on its engine).
 *   After rmqraft_group_close() or rmqraft_engine_close() returns, no callback of the
 *   closed groups is running or will run.
 */

#ifndef RMQRAFT_H
#define RMQRAFT_H

#include <stddef.h>
#include <stdint.h>

/** The version of the library this header belongs to (rmqraft_version() tells the loaded one). */
#define RMQRAFT_VERSION_MAJOR 0
/** See RMQRAFT_VERSION_MAJOR. */
#define RMQRAFT_VERSION_MINOR 1
/** See RMQRAFT_VERSION_MAJOR. */
#define RMQRAFT_VERSION_PATCH 0


/**
 * The outcome of a fallible call. The numbers never change; retired numbers are never
 * reused. `rmqraft_result_name()` gives the constant's name, `rmqraft_last_error()` the
 * detail of this thread's last failure.
 */
enum rmqraft_result
#ifdef __cplusplus
  : uint32_t
#endif // __cplusplus
 {
  /**
   * Success: the call's outputs are written.
   */
  RMQRAFT_OK = 0,
  /**
   * A NULL pointer, a string that is not UTF-8, an empty entry, or another argument
   * the call cannot accept.
   */
  RMQRAFT_ERR_INVALID_ARGUMENT = 1,
  /**
   * The properties were rejected; the message names the key and why.
   */
  RMQRAFT_ERR_CONFIG = 2,
  /**
   * This member is not the leader; `rmqraft_group_status()` tells who is.
   */
  RMQRAFT_ERR_NOT_LEADER = 3,
  /**
   * Not committed within the timeout; the outcome is unknown.
   */
  RMQRAFT_ERR_TIMEOUT = 4,
  /**
   * The disk or the network failed (including a listen address already in use).
   */
  RMQRAFT_ERR_IO = 5,
  /**
   * Stored data failed its checksum and could not be repaired.
   */
  RMQRAFT_ERR_CORRUPT = 6,
  /**
   * The index is not committed yet, or below the first retained index.
   */
  RMQRAFT_ERR_NOT_FOUND = 7,
  /**
   * The handle is closing or closed.
   */
  RMQRAFT_ERR_CLOSED = 8,
  /**
   * Too many appends in flight; retry later.
   */
  RMQRAFT_ERR_BUSY = 9,
  /**
   * The entry is larger than the group's maximum entry size (`maxEntrySize`).
   */
  RMQRAFT_ERR_TOO_LARGE = 10,
  /**
   * The caller's buffer is too small; `*len_out` holds the size needed.
   */
  RMQRAFT_ERR_BUFFER_TOO_SMALL = 11,
  /**
   * This (group, self id) or its store directory is already open.
   */
  RMQRAFT_ERR_EXISTS = 12,
  /**
   * An internal bug was caught at the boundary; the handle may be unusable.
   */
  RMQRAFT_ERR_PANIC = 13,
  /**
   * The store refused the write for lack of space.
   */
  RMQRAFT_ERR_DISK_FULL = 14,
  /**
   * Idempotent append: `sequence` skips ahead of the producer's next one.
   */
  RMQRAFT_ERR_OUT_OF_ORDER = 15,
  /**
   * The topic does not exist on this group (and is not auto-created).
   */
  RMQRAFT_ERR_NO_TOPIC = 16,
  /**
   * The topic's perm forbids this write or read.
   */
  RMQRAFT_ERR_NO_PERMISSION = 17,
  /**
   * An accepted append or send may or may not commit (leadership changed or the
   * member failed before it was decided): read the log, or resend idempotently.
   */
  RMQRAFT_ERR_OUTCOME_UNKNOWN = 18,
};
#ifndef __cplusplus
typedef uint32_t rmqraft_result;
#endif // __cplusplus

/**
 * A member's role. Leader is RocketMQ's master, follower its slave.
 */
typedef enum rmqraft_role {
  /**
   * No leader is known to this member: it campaigns, or has not yet heard from one (as
   * every member at open).
   */
  RMQRAFT_ROLE_CANDIDATE = 0,
  /**
   * Accepts appends (master).
   */
  RMQRAFT_ROLE_LEADER = 1,
  /**
   * Replicates from the leader (slave).
   */
  RMQRAFT_ROLE_FOLLOWER = 2,
} rmqraft_role;

/**
 * An engine: owns the listeners, the flusher and the groups opened on it. Create with
 * `rmqraft_engine_open()`, free with `rmqraft_engine_close()`.
 */
typedef struct rmqraft_engine rmqraft_engine;

/**
 * One member (replica) of one replicated commitlog group. Create with
 * `rmqraft_group_open()`, free with `rmqraft_group_close()`.
 */
typedef struct rmqraft_group rmqraft_group;

/**
 * Where an entry sits in the group's log.
 */
typedef struct rmqraft_entry_meta {
  /**
   * The entry's index; indexes start at 1.
   */
  uint64_t index;
  /**
   * The term in which the entry was appended.
   */
  uint64_t term;
  /**
   * The entry's byte position in the log (the same on every member of the group).
   */
  uint64_t pos;
} rmqraft_entry_meta;

/**
 * Completes one `rmqraft_group_append_async()`; called exactly once per accepted append.
 *
 * Runs on a library thread: the thread that completes appends on the leader (do not
 * block it: it completes every other append of the engine too), or, for an append still
 * pending when its group closes, on the thread calling `rmqraft_group_close()` or
 * `rmqraft_engine_close()`, before that call returns, with `RMQRAFT_ERR_OUTCOME_UNKNOWN` (the entry may still commit on the other members).
 * `meta` is never NULL: it holds the entry's place when `result` is `RMQRAFT_OK` and
 * zeros otherwise, and is valid only during the call.
 */
typedef void (*rmqraft_append_cb)(void *userdata,
                                  rmqraft_result result,
                                  const struct rmqraft_entry_meta *meta);

/**
 * A member's view of its group.
 */
typedef struct rmqraft_group_state {
  /**
   * This member's role.
   */
  enum rmqraft_role role;
  /**
   * Position of dLegerSelfId in dLegerPeers (0-based).
   */
  int32_t self_peer;
  /**
   * Position of the known leader in dLegerPeers, -1 when none is known.
   */
  int32_t leader_peer;
  /**
   * The current term.
   */
  uint64_t term;
  /**
   * First retained entry; 0 when the log is empty.
   */
  uint64_t first_index;
  /**
   * Last entry in the local log; 0 when empty. Indexes start at 1.
   */
  uint64_t last_index;
  /**
   * Highest entry known committed.
   */
  uint64_t commit_index;
  /**
   * Highest entry durable on this member's disk.
   */
  uint64_t flushed_index;
} rmqraft_group_state;

/**
 * Told this member's role, the term and the leader's position in dLegerPeers (-1 when
 * unknown): once at once when set, then on every change.
 *
 * Runs on the engine's role-notification thread (one library thread for every group of
 * the engine, in order per member; do not block it).
 */
typedef void (*rmqraft_role_cb)(void *userdata,
                                enum rmqraft_role role,
                                uint64_t term,
                                int32_t leader_peer);

/**
 * Told one topic (`rmqraft_topic_list()`), on the calling thread; `topic` is valid only
 * during the call. Return nonzero to stop.
 */
typedef int (*rmqraft_topic_cb)(void *userdata,
                                const char *topic,
                                int32_t read_queues,
                                int32_t write_queues,
                                int32_t perm);

/**
 * A message to send (`rmqraft_message_send()`, `rmqraft_message_send_async()`). Every
 * string and the body are copied before the call returns.
 */
typedef struct rmqraft_message {
  /**
   * Required; RocketMQ's topic rules (characters `[%|a-zA-Z0-9_-]`, at most 127 bytes
   * for sends).
   */
  const char *topic;
  /**
   * NULL or "" for none.
   */
  const char *tags;
  /**
   * Space-separated keys, NULL or "" for none; each is indexed.
   */
  const char *keys;
  /**
   * User properties as "name=value\n" lines; NULL or "" for none. A
   * UNIQ_KEY line sets the message id; without one the library
   * makes one.
   */
  const char *properties;
  /**
   * `body_len` bytes.
   */
  const uint8_t *body;
  /**
   * 1 .. maxMessageSize (4 MiB by default).
   */
  size_t body_len;
  /**
   * -1: the library picks a write queue (round robin).
   */
  int32_t queue_id;
  /**
   * Stored as is.
   */
  int32_t flag;
  /**
   * 0 none; 1..N: the Nth of messageDelayLevel (stored as the DELAY property).
   */
  int32_t delay_level;
} rmqraft_message;

/**
 * What a committed send tells.
 */
typedef struct rmqraft_send_result {
  /**
   * The UNIQ_KEY, NUL-terminated (32 hex characters from IPv4 hosts).
   */
  char msg_id[64];
  /**
   * Store host + commitlog offset, RocketMQ's offsetMsgId, NUL-terminated (32 hex
   * characters for an IPv4 store host, 56 for IPv6).
   */
  char offset_msg_id[64];
  int32_t queue_id;
  /**
   * For a delayed message: its place in the schedule queue.
   */
  uint64_t queue_offset;
  /**
   * The record's physical offset.
   */
  uint64_t commitlog_offset;
} rmqraft_send_result;

/**
 * Completes one `rmqraft_message_send_async()`: runs exactly once, only if that call
 * returned RMQRAFT_OK, on a library thread (as `rmqraft_append_cb`: the thread that
 * completes appends on the leader, or, for a send still pending when its group closes,
 * the closing thread, with RMQRAFT_ERR_OUTCOME_UNKNOWN). `res` is NULL unless `r` is
 * RMQRAFT_OK, and valid only during the call.
 */
typedef void (*rmqraft_send_cb)(void *userdata,
                                rmqraft_result r,
                                const struct rmqraft_send_result *res);

/**
 * A stored message, as handed to an `rmqraft_message_cb`. Valid only during the
 * callback: copy what must outlive it. Strings are never NULL ("" when absent).
 */
typedef struct rmqraft_message_view {
  const char *topic;
  const char *tags;
  const char *keys;
  /**
   * The UNIQ_KEY (the offset msg id when the record has none).
   */
  const char *msg_id;
  const char *offset_msg_id;
  /**
   * "name=value\n" lines, system properties included.
   */
  const char *properties;
  const uint8_t *body;
  size_t body_len;
  /**
   * The stored record, RocketMQ commitlog format.
   */
  const uint8_t *record;
  size_t record_len;
  int32_t queue_id;
  uint64_t queue_offset;
  uint64_t commitlog_offset;
  int64_t born_timestamp_ms;
  int64_t store_timestamp_ms;
  int32_t flag;
  int32_t reconsume_times;
} rmqraft_message_view;

/**
 * Told one message (`rmqraft_queue_pull()`, `rmqraft_message_query_by_key()`,
 * `rmqraft_message_view_by_id()`): runs on the calling thread, once per message, before
 * that call returns; `m` is valid only during the call. Return nonzero to stop after this
 * message (it counts as delivered). It may call other rmqraft_ functions except `_close`.
 */
typedef int (*rmqraft_message_cb)(void *userdata, const struct rmqraft_message_view *m);

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * The library's version: `RMQRAFT_VERSION_MAJOR << 16 | RMQRAFT_VERSION_MINOR << 8 |
 * RMQRAFT_VERSION_PATCH` of the library actually loaded, which may be newer than the
 * header a host was compiled with.
 */
uint32_t rmqraft_version(void);

/**
 * The library's version as a static string, e.g. "0.1.0".
 */
const char *rmqraft_version_string(void);

/**
 * The name of a result constant as a static string, e.g. "RMQRAFT_ERR_NOT_LEADER";
 * "RMQRAFT_UNKNOWN_RESULT" for a number that is not a result code.
 */
const char *rmqraft_result_name(rmqraft_result r);

/**
 * Copies the detail of this thread's last failed call ("function: message") into `buf`:
 * at most `cap - 1` bytes plus a NUL, nothing when `cap` is 0 or `buf` is NULL. Returns
 * the detail's full length (0 when no call on this thread has failed), so a host can
 * size its buffer. Successful calls leave the detail alone.
 */
size_t rmqraft_last_error(char *buf, size_t cap);

/**
 * Opens an engine. `properties` is broker.conf text (engine keys: brokerClusterName,
 * rmqraftFlusher, rmqraftMaxFrameSize; other keys are ignored) and may be NULL or "".
 * On RMQRAFT_OK, `*out` is a new engine; free it with `rmqraft_engine_close()`.
 *
 * When the environment variable RMQRAFT_LOG is set (e.g. "info" or
 * "rmqraft=debug"), the first engine opened in the process sends the library's log to
 * standard error with that filter; otherwise the library logs through the `log` facade
 * only and a process without a logger sees nothing.
 */
rmqraft_result rmqraft_engine_open(const char *properties, struct rmqraft_engine **out);

/**
 * Closes every group still open on the engine (as `rmqraft_group_close()` would, except
 * that their handles stay allocated: later calls on them return RMQRAFT_ERR_CLOSED and
 * each must still be freed with `rmqraft_group_close()`), stops and joins the engine's
 * threads, then frees the engine. On return no callback of any of its groups is running
 * or will run. NULL is a no-op. Must not be called from a callback.
 */
void rmqraft_engine_close(struct rmqraft_engine *engine);

/**
 * Opens one member of a group on `engine` from broker.conf text (see docs/C-API.md for the
 * keys: dLegerGroup, dLegerPeers, dLegerSelfId and storePathRootDir are required).
 * RMQRAFT_ERR_CONFIG names a bad key; RMQRAFT_ERR_EXISTS means this (group, self id) or
 * its store directory is already open; RMQRAFT_ERR_IO covers a listen address in use.
 * On RMQRAFT_OK, `*out` is a new group handle; free it with `rmqraft_group_close()`.
 */
rmqraft_result rmqraft_group_open(struct rmqraft_engine *engine,
                                  const char *properties,
                                  struct rmqraft_group **out);

/**
 * Closes the member: stops its threads, flushes its log, releases its store, and frees
 * the handle. Async appends still pending are completed with RMQRAFT_ERR_OUTCOME_UNKNOWN on the
 * calling thread before it returns; on return no callback of this group is running or
 * will run. NULL is a no-op. Must not be called from a callback, nor race with other
 * calls on the same handle.
 */
void rmqraft_group_close(struct rmqraft_group *group);

/**
 * Appends `len` bytes (`len` > 0) on the leader and blocks until the entry is committed
 * under the group's flush policy (SYNC_FLUSH: durable on a quorum; ASYNC_FLUSH: in memory
 * on a quorum), at most `timeout_ms` milliseconds. On RMQRAFT_OK, `*out` tells where the
 * entry sits. RMQRAFT_ERR_NOT_LEADER on a follower; RMQRAFT_ERR_TIMEOUT leaves the
 * outcome unknown; RMQRAFT_ERR_TOO_LARGE above maxEntrySize; RMQRAFT_ERR_BUSY when
 * maxPendingRequestsNum appends are in flight.
 */
rmqraft_result rmqraft_group_append(struct rmqraft_group *group,
                                    const uint8_t *data,
                                    size_t len,
                                    uint32_t timeout_ms,
                                    struct rmqraft_entry_meta *out);

/**
 * Starts appending `len` bytes (`len` > 0) on the leader and returns at once; the data
 * is copied before it returns. On RMQRAFT_OK, `cb` runs exactly once later with the
 * final result (see `rmqraft_append_cb` for the thread); on any other result `cb` never
 * runs. RMQRAFT_ERR_BUSY when maxPendingRequestsNum appends are in flight.
 */
rmqraft_result rmqraft_group_append_async(struct rmqraft_group *group,
                                          const uint8_t *data,
                                          size_t len,
                                          rmqraft_append_cb cb,
                                          void *userdata);

/**
 * Reads the committed entry `index` held by this member (leader or follower) into `buf`
 * (`cap` bytes; `buf` may be NULL when `cap` is 0). On RMQRAFT_OK, `*len_out` is the
 * entry's length and `*meta_out` its place. When the entry is longer than `cap`, returns
 * RMQRAFT_ERR_BUFFER_TOO_SMALL with `*len_out` set to the size needed (the one output
 * written on failure). RMQRAFT_ERR_NOT_FOUND when `index` is not committed yet or below
 * the first retained index. The no-op entry a new leader appends at the start of its term
 * reads as 0 bytes.
 */
rmqraft_result rmqraft_group_read(struct rmqraft_group *group,
                                  uint64_t index,
                                  uint8_t *buf,
                                  size_t cap,
                                  size_t *len_out,
                                  struct rmqraft_entry_meta *meta_out);

/**
 * Fills `*out` with this member's view of its group: role, positions of itself and of
 * the known leader in dLegerPeers, term and log indexes.
 */
rmqraft_result rmqraft_group_status(const struct rmqraft_group *group,
                                    struct rmqraft_group_state *out);

/**
 * Sets the role callback, replacing any previous one; NULL `cb` removes it. The new
 * callback is called once at once with the current role (possibly before this call
 * returns), then on every change. On return the previous callback is not running and
 * will not run again, so its `userdata` may be freed.
 */
rmqraft_result rmqraft_group_set_role_callback(struct rmqraft_group *group,
                                               rmqraft_role_cb cb,
                                               void *userdata);

/**
 * On the leader: hands leadership to the member `peer_id` (e.g. "n1", one of
 * dLegerPeers) and waits, at most `timeout_ms` milliseconds, until it leads.
 * RMQRAFT_ERR_NOT_LEADER when this member does not lead; RMQRAFT_ERR_TIMEOUT when the
 * transfer did not finish in time.
 */
rmqraft_result rmqraft_group_transfer_leadership(struct rmqraft_group *group,
                                                 const char *peer_id,
                                                 uint32_t timeout_ms);

/**
 * Blocks until this member knows a leader (itself or a peer), at most `timeout_ms`:
 * RMQRAFT_OK with `*leader_peer_out` = the leader's position in dLegerPeers (0-based), or
 * RMQRAFT_ERR_TIMEOUT when none is known by then. Woken by role changes, not by polling.
 */
rmqraft_result rmqraft_group_wait_leader(struct rmqraft_group *group,
                                         uint32_t timeout_ms,
                                         int32_t *leader_peer_out);

/**
 * Appends `len` bytes (`len` > 0) once per (`producer_id`, `sequence`) and blocks until
 * committed, at most `timeout_ms`. `producer_id`: any nonzero value the host picks
 * (random per producer instance); `sequence`: 0, 1, 2, ... per producer. Resending a
 * pair whose entry is already in the log (committed, or still in flight: then the first
 * one's outcome is awaited) appends nothing and returns RMQRAFT_OK with the original
 * entry's meta, across leader failover and restarts. At least the last 1,000 sequences
 * of each producer are remembered, for producerIdExpirationMs (default 86400000) after
 * its last append. A sequence beyond the next expected one, or older than what is
 * remembered: RMQRAFT_ERR_OUT_OF_ORDER. `rmqraft_group_read` of the entry returns the
 * `len` bytes only. Other results as `rmqraft_group_append` (RMQRAFT_ERR_TIMEOUT: resend
 * the same pair to learn the outcome).
 */
rmqraft_result rmqraft_group_append_idempotent(struct rmqraft_group *group,
                                               uint64_t producer_id,
                                               uint64_t sequence,
                                               const uint8_t *data,
                                               size_t len,
                                               uint32_t timeout_ms,
                                               struct rmqraft_entry_meta *out);

/**
 * Creates or updates `topic` with `read_queues` and `write_queues` queues (1..1024) and
 * RocketMQ's `perm` bits (2 write, 4 read; 6 usual), replicated through the log; waits at
 * most `timeout_ms` until this member applied it. On the leader only
 * (RMQRAFT_ERR_NOT_LEADER elsewhere). A bad topic name or number is
 * RMQRAFT_ERR_INVALID_ARGUMENT naming the rule.
 */
rmqraft_result rmqraft_topic_update(struct rmqraft_group *g,
                                    const char *topic,
                                    int32_t read_queues,
                                    int32_t write_queues,
                                    int32_t perm,
                                    uint32_t timeout_ms);

/**
 * Deletes `topic` with its consume queues and consumer offsets (replicated; on the
 * leader). RMQRAFT_ERR_NO_TOPIC when it does not exist.
 */
rmqraft_result rmqraft_topic_delete(struct rmqraft_group *g,
                                    const char *topic,
                                    uint32_t timeout_ms);

/**
 * Calls `cb` once per topic this member knows (any member), by name, on the calling
 * thread, until it returns nonzero.
 */
rmqraft_result rmqraft_topic_list(const struct rmqraft_group *g,
                                  rmqraft_topic_cb cb,
                                  void *userdata);

/**
 * Sends one message on the leader and blocks until it is committed under the group's
 * flush policy, at most `timeout_ms`; on RMQRAFT_OK `*out` tells its ids and offsets,
 * and the message is visible to pulls and lookups on this member. Refused before
 * anything is stored: RMQRAFT_ERR_INVALID_ARGUMENT (bad topic, empty body, bad
 * properties), RMQRAFT_ERR_TOO_LARGE (body over maxMessageSize), RMQRAFT_ERR_NO_TOPIC
 * (unknown topic with autoCreateTopicEnable=false), RMQRAFT_ERR_NO_PERMISSION (perm
 * without write), RMQRAFT_ERR_NOT_LEADER, RMQRAFT_ERR_BUSY. RMQRAFT_ERR_TIMEOUT and
 * RMQRAFT_ERR_OUTCOME_UNKNOWN: it may or may not be stored.
 */
rmqraft_result rmqraft_message_send(struct rmqraft_group *g,
                                    const struct rmqraft_message *m,
                                    uint32_t timeout_ms,
                                    struct rmqraft_send_result *out);

/**
 * Starts a send on the leader and returns; the message is copied first. On RMQRAFT_OK
 * `cb` runs exactly once later (see `rmqraft_send_cb` for the thread); on any other
 * result it never runs and nothing was stored. A send that must auto-create its topic
 * waits for that (up to 5 s) before returning.
 */
rmqraft_result rmqraft_message_send_async(struct rmqraft_group *g,
                                          const struct rmqraft_message *m,
                                          rmqraft_send_cb cb,
                                          void *userdata);

/**
 * Pulls committed messages of one queue (any member) from `offset`: at most
 * `max_messages` (1..1024; more is read as 1024) that match `tag_expression` (NULL, ""
 * or "*" for all, else "TagA || TagB"), in queue order, each handed to `cb` on the
 * calling thread. `*next_offset_out`: where the next pull starts (one past the last
 * message scanned, or past the one `cb` stopped at). Nothing new: RMQRAFT_OK without a
 * callback. An offset past the end or below the first retained one: RMQRAFT_OK, no
 * callback, `*next_offset_out` = the queue's max or min offset. Does not wait for new
 * messages. RMQRAFT_ERR_NO_TOPIC for an unknown topic, RMQRAFT_ERR_INVALID_ARGUMENT for
 * a queue id that does not exist, RMQRAFT_ERR_NO_PERMISSION when perm lacks read.
 */
rmqraft_result rmqraft_queue_pull(const struct rmqraft_group *g,
                                  const char *topic,
                                  int32_t queue_id,
                                  uint64_t offset,
                                  uint32_t max_messages,
                                  const char *tag_expression,
                                  rmqraft_message_cb cb,
                                  void *userdata,
                                  uint64_t *next_offset_out);

/**
 * The min and max offsets of one queue (any member); max is the next offset to be
 * written (0 and 0 for a queue that never had a message).
 */
rmqraft_result rmqraft_queue_offsets(const struct rmqraft_group *g,
                                     const char *topic,
                                     int32_t queue_id,
                                     uint64_t *min_out,
                                     uint64_t *max_out);

/**
 * Messages of `topic` with `key` among their KEYS (as mqadmin queryMsgByKey), stored in
 * `[begin_ms, end_ms]` (store time, 0 = open), newest first, at most `max_messages`
 * (nonzero), each handed to `cb` on the calling thread until it returns nonzero. Any
 * member. None found: RMQRAFT_OK without a callback.
 */
rmqraft_result rmqraft_message_query_by_key(const struct rmqraft_group *g,
                                            const char *topic,
                                            const char *key,
                                            uint32_t max_messages,
                                            int64_t begin_ms,
                                            int64_t end_ms,
                                            rmqraft_message_cb cb,
                                            void *userdata);

/**
 * The message with id `msg_id` (as mqadmin queryMsgById), handed to `cb` once on the
 * calling thread: an offset msg id naming this group's store host and a record at that
 * offset, or else a UNIQ_KEY (any topic); both forms are tried in that order. Any
 * member. RMQRAFT_ERR_NOT_FOUND when neither names a message here.
 */
rmqraft_result rmqraft_message_view_by_id(const struct rmqraft_group *g,
                                          const char *msg_id,
                                          rmqraft_message_cb cb,
                                          void *userdata);

/**
 * Commits `consumer_group`'s next offset to consume in one queue (replicated; on the
 * leader). Commits are coalesced (at most one entry per consumer group per
 * rmqraftOffsetCommitIntervalMs); a nonzero `timeout_ms` waits until this commit is
 * committed and applied, 0 returns once it is queued. RMQRAFT_ERR_NO_TOPIC for an unknown
 * topic, RMQRAFT_ERR_INVALID_ARGUMENT for a queue that does not exist.
 */
rmqraft_result rmqraft_consumer_offset_commit(struct rmqraft_group *g,
                                              const char *consumer_group,
                                              const char *topic,
                                              int32_t queue_id,
                                              uint64_t offset,
                                              uint32_t timeout_ms);

/**
 * The committed next offset of `consumer_group` in one queue (any member; on the leader
 * a commit still being replicated is included): `*offset_out` = -1 when it has none.
 */
rmqraft_result rmqraft_consumer_offset_fetch(const struct rmqraft_group *g,
                                             const char *consumer_group,
                                             const char *topic,
                                             int32_t queue_id,
                                             int64_t *offset_out);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* RMQRAFT_H */
