// rmqraft.hpp: a header-only C++17 wrapper over the C ABI in rmqraft.h.
//
// - rmqraft::Engine and rmqraft::Group own their handles (RAII, move-only); the
//   destructor closes. A Group may outlive its Engine: closing the engine closes the
//   member, later calls throw rmqraft::Error with RMQRAFT_ERR_CLOSED.
// - Failures throw rmqraft::Error, which carries the result code and the library's detail
//   (rmqraft_last_error) in what().
// - Callbacks are std::function (lambdas welcome). They run on library threads (see
//   rmqraft.h: the engine's role-notification thread for role listeners, the thread that
//   completes appends for async appends), must return promptly and must not throw: an
//   exception escaping a callback calls std::terminate. They must not close the Group or
//   Engine that called them.
// - Messages (ABI 0.2): rmqraft::Message is a builder for sends; Group::send returns a
//   SendResult, Group::send_async takes a lambda run once on a library thread. pull,
//   query_by_key and view_by_id call a lambda with a rmqraft::MessageView on the calling
//   thread; the view (string_views into library memory) is valid only during that call:
//   copy what must outlive it. An exception thrown by such a lambda stops the call and is
//   rethrown to its caller.
// - Thread safety is that of the C ABI: any method from any thread at once, except that
//   destroying, moving into or close()-ing a handle must not race with other calls on it.
#ifndef RMQRAFT_HPP
#define RMQRAFT_HPP

#if !defined(__cplusplus) || __cplusplus < 201703L
static_assert(false, "rmqraft.hpp needs C++17 (compile with -std=c++17 or later); rmqraft.h alone works from C++11");
#else

#include "rmqraft.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace rmqraft {

using EntryMeta = rmqraft_entry_meta;
using GroupState = rmqraft_group_state;
using Role = rmqraft_role;

/// A failed call: the result code and the library's detail.
class Error : public std::runtime_error {
public:
    Error(rmqraft_result code, const std::string &detail)
        : std::runtime_error(std::string(rmqraft_result_name(code)) + ": " + detail), code_(code) {}
    rmqraft_result code() const noexcept { return code_; }

private:
    rmqraft_result code_;
};

namespace detail {
inline std::string last_error() {
    std::string text(256, '\0');
    std::size_t len = rmqraft_last_error(text.data(), text.size());
    if (len >= text.size()) {
        text.assign(len + 1, '\0');
        len = rmqraft_last_error(text.data(), text.size());
    }
    text.resize(len < text.size() ? len : text.size() - 1);
    return text;
}

inline void check(rmqraft_result r) {
    if (r != RMQRAFT_OK) throw Error(r, last_error());
}
}  // namespace detail

/// The library's version string, e.g. "0.1.0".
inline std::string_view version() { return rmqraft_version_string(); }

/// The name of a role, e.g. "LEADER".
inline const char *role_name(Role role) {
    switch (role) {
        case RMQRAFT_ROLE_LEADER: return "LEADER";
        case RMQRAFT_ROLE_FOLLOWER: return "FOLLOWER";
        case RMQRAFT_ROLE_CANDIDATE: return "CANDIDATE";
    }
    return "UNKNOWN";
}

/// A message to send, built step by step:
/// `rmqraft::Message("TopicTest", body).tags("TagA").keys("m600000")`.
class Message {
public:
    Message(std::string topic, std::string body) : topic_(std::move(topic)), body_(std::move(body)) {}
    Message &tags(std::string tags) { tags_ = std::move(tags); return *this; }
    /// Space-separated keys; each is indexed (query_by_key).
    Message &keys(std::string keys) { keys_ = std::move(keys); return *this; }
    /// A user property; UNIQ_KEY sets the message id. Names must not
    /// contain '=' or newlines, values no newlines.
    Message &property(const std::string &name, const std::string &value) {
        properties_ += name + "=" + value + "\n";
        return *this;
    }
    /// -1 (the default): the library picks a write queue.
    Message &queue(std::int32_t queue_id) { queue_id_ = queue_id; return *this; }
    Message &flag(std::int32_t flag) { flag_ = flag; return *this; }
    Message &delay_level(std::int32_t level) { delay_level_ = level; return *this; }

    /// The C struct, pointing into this object (valid while it lives unchanged).
    rmqraft_message c() const noexcept {
        rmqraft_message m{};
        m.topic = topic_.c_str();
        m.tags = tags_.c_str();
        m.keys = keys_.c_str();
        m.properties = properties_.c_str();
        m.body = reinterpret_cast<const std::uint8_t *>(body_.data());
        m.body_len = body_.size();
        m.queue_id = queue_id_;
        m.flag = flag_;
        m.delay_level = delay_level_;
        return m;
    }

private:
    std::string topic_, body_, tags_, keys_, properties_;
    std::int32_t queue_id_ = -1, flag_ = 0, delay_level_ = 0;
};

/// What a committed send tells (a copy of rmqraft_send_result).
struct SendResult {
    std::string msg_id;         // UNIQ_KEY
    std::string offset_msg_id;  // store host + commitlog offset
    std::int32_t queue_id = -1;
    std::uint64_t queue_offset = 0;
    std::uint64_t commitlog_offset = 0;

    SendResult() = default;
    explicit SendResult(const rmqraft_send_result &r)
        : msg_id(r.msg_id), offset_msg_id(r.offset_msg_id), queue_id(r.queue_id),
          queue_offset(r.queue_offset), commitlog_offset(r.commitlog_offset) {}
};

/// A stored message as a pull or lookup hands it to a lambda: a view into library memory,
/// valid only during that call.
class MessageView {
public:
    explicit MessageView(const rmqraft_message_view &m) noexcept : m_(m) {}
    std::string_view topic() const noexcept { return m_.topic; }
    std::string_view tags() const noexcept { return m_.tags; }
    std::string_view keys() const noexcept { return m_.keys; }
    std::string_view msg_id() const noexcept { return m_.msg_id; }
    std::string_view offset_msg_id() const noexcept { return m_.offset_msg_id; }
    /// "name=value\n" lines, system properties included.
    std::string_view properties() const noexcept { return m_.properties; }
    /// One property's value; empty when absent.
    std::string_view property(std::string_view name) const noexcept {
        std::string_view all = properties();
        while (!all.empty()) {
            std::size_t end = all.find('\n');
            std::string_view line = all.substr(0, end);
            if (line.size() > name.size() && line.compare(0, name.size(), name) == 0 && line[name.size()] == '=')
                return line.substr(name.size() + 1);
            if (end == std::string_view::npos) break;
            all.remove_prefix(end + 1);
        }
        return {};
    }
    std::string_view body() const noexcept { return {reinterpret_cast<const char *>(m_.body), m_.body_len}; }
    /// The stored record, RocketMQ commitlog format.
    std::string_view record() const noexcept { return {reinterpret_cast<const char *>(m_.record), m_.record_len}; }
    std::int32_t queue_id() const noexcept { return m_.queue_id; }
    std::uint64_t queue_offset() const noexcept { return m_.queue_offset; }
    std::uint64_t commitlog_offset() const noexcept { return m_.commitlog_offset; }
    std::int64_t born_timestamp_ms() const noexcept { return m_.born_timestamp_ms; }
    std::int64_t store_timestamp_ms() const noexcept { return m_.store_timestamp_ms; }
    std::int32_t flag() const noexcept { return m_.flag; }
    std::int32_t reconsume_times() const noexcept { return m_.reconsume_times; }
    const rmqraft_message_view &c() const noexcept { return m_; }

private:
    const rmqraft_message_view &m_;
};

/// A topic as rmqraft_topic_list reports it.
struct TopicConfig {
    std::string name;
    std::int32_t read_queues = 0, write_queues = 0, perm = 0;
};

/// A queue's offsets; max is the next offset to be written.
struct QueueOffsets {
    std::uint64_t min = 0, max = 0;
};

/// Completes one async send: the result and, when it is RMQRAFT_OK, the SendResult (empty
/// otherwise).
using SendCallback = std::function<void(rmqraft_result, const SendResult &)>;

namespace detail {
/// Runs a lambda taking `const MessageView &` (returning void, or bool: false stops) from a
/// C message callback; keeps an exception for rethrowing after the C call returns.
template <typename F>
struct MessageVisitor {
    F &f;
    std::exception_ptr error;

    static int call(void *userdata, const rmqraft_message_view *m) noexcept {
        auto *self = static_cast<MessageVisitor *>(userdata);
        try {
            MessageView view(*m);
            if constexpr (std::is_same_v<std::invoke_result_t<F &, const MessageView &>, bool>) {
                return self->f(view) ? 0 : 1;
            } else {
                self->f(view);
                return 0;
            }
        } catch (...) {
            self->error = std::current_exception();
            return 1;
        }
    }

    void finish(rmqraft_result r) {
        if (error) std::rethrow_exception(error);
        check(r);
    }
};
}  // namespace detail

/// Completes one async append: the result and, when it is RMQRAFT_OK, where the entry sits.
using AppendCallback = std::function<void(rmqraft_result, const EntryMeta &)>;
/// Told the role, term and leader position (-1 when unknown), at once and on every change.
using RoleListener = std::function<void(Role, std::uint64_t, std::int32_t)>;

/// One member of a replicated commitlog group.
class Group {
public:
    Group() = default;
    Group(const Group &) = delete;
    Group &operator=(const Group &) = delete;
    Group(Group &&other) noexcept
        : handle_(std::exchange(other.handle_, nullptr)), role_listener_(std::move(other.role_listener_)) {}
    Group &operator=(Group &&other) noexcept {
        if (this != &other) {
            close();
            handle_ = std::exchange(other.handle_, nullptr);
            role_listener_ = std::move(other.role_listener_);
        }
        return *this;
    }
    ~Group() { close(); }

    /// Closes the member (stops its threads, flushes, frees). Pending async appends are
    /// completed with RMQRAFT_ERR_CLOSED before it returns. Idempotent.
    void close() noexcept {
        rmqraft_group_close(std::exchange(handle_, nullptr));
        role_listener_.reset();  // no callback runs once the close returned
    }

    explicit operator bool() const noexcept { return handle_ != nullptr; }
    rmqraft_group *get() const noexcept { return handle_; }

    /// Appends on the leader and blocks until committed (throws RMQRAFT_ERR_NOT_LEADER on a
    /// follower, RMQRAFT_ERR_TIMEOUT when the outcome is unknown).
    EntryMeta append(const void *data, std::size_t len,
                     std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        EntryMeta meta{};
        detail::check(rmqraft_group_append(handle_, static_cast<const std::uint8_t *>(data), len,
                                           clamp_ms(timeout), &meta));
        return meta;
    }
    EntryMeta append(std::string_view data, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        return append(data.data(), data.size(), timeout);
    }

    /// Appends once per (producer_id, sequence) and blocks until committed. Resending a pair
    /// already in the log returns the original entry's meta and appends nothing; a sequence
    /// beyond the next one or older than the last 1,000 throws RMQRAFT_ERR_OUT_OF_ORDER.
    EntryMeta append_idempotent(std::uint64_t producer_id, std::uint64_t sequence, const void *data,
                                std::size_t len, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        EntryMeta meta{};
        detail::check(rmqraft_group_append_idempotent(handle_, producer_id, sequence,
                                                      static_cast<const std::uint8_t *>(data), len,
                                                      clamp_ms(timeout), &meta));
        return meta;
    }
    EntryMeta append_idempotent(std::uint64_t producer_id, std::uint64_t sequence, std::string_view data,
                                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        return append_idempotent(producer_id, sequence, data.data(), data.size(), timeout);
    }

    /// Appends without blocking; `done` runs exactly once later, on a library thread.
    /// Throws (and never calls `done`) when the append is refused at once, e.g. BUSY.
    void append_async(const void *data, std::size_t len, AppendCallback done) {
        auto owned = std::make_unique<AppendCallback>(std::move(done));
        detail::check(rmqraft_group_append_async(handle_, static_cast<const std::uint8_t *>(data), len,
                                                 &Group::on_append, owned.get()));
        owned.release();  // freed by on_append
    }
    void append_async(std::string_view data, AppendCallback done) {
        append_async(data.data(), data.size(), std::move(done));
    }

    /// Reads a committed entry held by this member.
    std::vector<std::uint8_t> read(std::uint64_t index, EntryMeta *meta = nullptr) const {
        std::vector<std::uint8_t> buf(256);
        EntryMeta m{};
        for (int attempt = 0; attempt < 2; attempt++) {
            std::size_t len = 0;
            rmqraft_result r = rmqraft_group_read(handle_, index, buf.data(), buf.size(), &len, &m);
            if (r == RMQRAFT_ERR_BUFFER_TOO_SMALL) {
                buf.resize(len);  // entries never change once committed: one retry suffices
                continue;
            }
            detail::check(r);
            buf.resize(len);
            if (meta) *meta = m;
            return buf;
        }
        throw Error(RMQRAFT_ERR_BUFFER_TOO_SMALL, "entry size changed between reads");
    }
    std::string read_string(std::uint64_t index) const {
        auto bytes = read(index);
        return std::string(bytes.begin(), bytes.end());
    }

    GroupState status() const {
        GroupState st{};
        detail::check(rmqraft_group_status(handle_, &st));
        return st;
    }

    /// Sets the role listener (called at once, then on every change); an empty function
    /// removes it. The previous listener is not running once this returns.
    void set_role_listener(RoleListener listener) {
        std::unique_ptr<RoleListener> next;
        if (listener) next = std::make_unique<RoleListener>(std::move(listener));
        detail::check(rmqraft_group_set_role_callback(handle_, next ? &Group::on_role : nullptr, next.get()));
        role_listener_ = std::move(next);
    }

    /// Waits until this member knows a leader (itself or a peer); returns its position in
    /// dLegerPeers. Throws rmqraft::Error with RMQRAFT_ERR_TIMEOUT when none is known in time.
    std::int32_t wait_leader(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        std::int32_t leader = -1;
        detail::check(rmqraft_group_wait_leader(handle_, clamp_ms(timeout), &leader));
        return leader;
    }

    /// On the leader: hands leadership to `peer_id` and waits until it leads.
    void transfer_leadership(const std::string &peer_id, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        detail::check(rmqraft_group_transfer_leadership(handle_, peer_id.c_str(), clamp_ms(timeout)));
    }

    // ---- Messages (ABI 0.2). Sends, topic and offset changes on the leader; reads anywhere.

    /// Sends and blocks until committed; throws e.g. NO_TOPIC, NO_PERMISSION, TOO_LARGE,
    /// NOT_LEADER (nothing stored) or TIMEOUT / OUTCOME_UNKNOWN (maybe stored).
    SendResult send(const Message &message, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        rmqraft_message m = message.c();
        rmqraft_send_result r{};
        detail::check(rmqraft_message_send(handle_, &m, clamp_ms(timeout), &r));
        return SendResult(r);
    }

    /// Sends without waiting; `done` runs exactly once later, on a library thread. Throws
    /// (and never calls `done`) when the send is refused at once.
    void send_async(const Message &message, SendCallback done) {
        rmqraft_message m = message.c();
        auto owned = std::make_unique<SendCallback>(std::move(done));
        detail::check(rmqraft_message_send_async(handle_, &m, &Group::on_send, owned.get()));
        owned.release();  // freed by on_send
    }

    /// Pulls up to `max` messages of one queue from `offset` matching `tags` ("*" for
    /// all, else "TagA || TagB"), calling `on_message(const MessageView &)` for each (return
    /// false from it to stop). Returns the offset the next pull starts at (the queue's max
    /// when `offset` is past the end). Does not wait for new messages.
    template <typename F>
    std::uint64_t pull(const std::string &topic, std::int32_t queue_id, std::uint64_t offset, std::uint32_t max,
                       F &&on_message, const std::string &tags = "*") const {
        detail::MessageVisitor<F> v{on_message, nullptr};
        std::uint64_t next = offset;
        v.finish(rmqraft_queue_pull(handle_, topic.c_str(), queue_id, offset, max, tags.c_str(),
                                    &detail::MessageVisitor<F>::call, &v, &next));
        return next;
    }

    QueueOffsets queue_offsets(const std::string &topic, std::int32_t queue_id) const {
        QueueOffsets o;
        detail::check(rmqraft_queue_offsets(handle_, topic.c_str(), queue_id, &o.min, &o.max));
        return o;
    }

    /// Messages of `topic` with `key` among their keys, newest first, at most `max`
    /// (store time in [begin_ms, end_ms], 0 = open).
    template <typename F>
    void query_by_key(const std::string &topic, const std::string &key, std::uint32_t max, F &&on_message,
                      std::int64_t begin_ms = 0, std::int64_t end_ms = 0) const {
        detail::MessageVisitor<F> v{on_message, nullptr};
        v.finish(rmqraft_message_query_by_key(handle_, topic.c_str(), key.c_str(), max, begin_ms, end_ms,
                                              &detail::MessageVisitor<F>::call, &v));
    }

    /// The message with this id (offset msg id or UNIQ_KEY); throws NOT_FOUND.
    template <typename F>
    void view_by_id(const std::string &msg_id, F &&on_message) const {
        detail::MessageVisitor<F> v{on_message, nullptr};
        v.finish(rmqraft_message_view_by_id(handle_, msg_id.c_str(), &detail::MessageVisitor<F>::call, &v));
    }

    /// Creates or updates a topic (perm: 2 write, 4 read, 6 both).
    void topic_update(const std::string &topic, std::int32_t read_queues, std::int32_t write_queues,
                      std::int32_t perm = 6, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        detail::check(rmqraft_topic_update(handle_, topic.c_str(), read_queues, write_queues, perm, clamp_ms(timeout)));
    }
    void topic_delete(const std::string &topic, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        detail::check(rmqraft_topic_delete(handle_, topic.c_str(), clamp_ms(timeout)));
    }
    std::vector<TopicConfig> topics() const {
        std::vector<TopicConfig> out;
        detail::check(rmqraft_topic_list(handle_, &Group::on_topic, &out));
        return out;
    }

    /// Commits a consumer group's next offset for a queue (a zero timeout only queues it).
    void commit_offset(const std::string &consumer_group, const std::string &topic, std::int32_t queue_id,
                       std::uint64_t offset, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        detail::check(rmqraft_consumer_offset_commit(handle_, consumer_group.c_str(), topic.c_str(), queue_id, offset,
                                                     clamp_ms(timeout)));
    }
    /// The committed next offset, -1 when the consumer group has none for that queue.
    std::int64_t fetch_offset(const std::string &consumer_group, const std::string &topic, std::int32_t queue_id) const {
        std::int64_t offset = -1;
        detail::check(rmqraft_consumer_offset_fetch(handle_, consumer_group.c_str(), topic.c_str(), queue_id, &offset));
        return offset;
    }

private:
    friend class Engine;
    explicit Group(rmqraft_group *handle) : handle_(handle) {}

    static void on_send(void *userdata, rmqraft_result result, const rmqraft_send_result *res) noexcept {
        std::unique_ptr<SendCallback> done(static_cast<SendCallback *>(userdata));
        (*done)(result, res ? SendResult(*res) : SendResult());
    }

    static int on_topic(void *userdata, const char *topic, std::int32_t r, std::int32_t w, std::int32_t perm) noexcept {
        try {
            static_cast<std::vector<TopicConfig> *>(userdata)->push_back(TopicConfig{topic, r, w, perm});
            return 0;
        } catch (...) {
            return 1;  // out of memory: a shorter list
        }
    }

    static std::uint32_t clamp_ms(std::chrono::milliseconds t) {
        auto ms = t.count();
        if (ms < 0) return 0;
        return ms > 0xffffffffLL ? 0xffffffffu : static_cast<std::uint32_t>(ms);
    }

    static void on_append(void *userdata, rmqraft_result result, const rmqraft_entry_meta *meta) noexcept {
        std::unique_ptr<AppendCallback> done(static_cast<AppendCallback *>(userdata));
        (*done)(result, *meta);
    }

    static void on_role(void *userdata, rmqraft_role role, std::uint64_t term, std::int32_t leader_peer) noexcept {
        (*static_cast<RoleListener *>(userdata))(role, term, leader_peer);
    }

    rmqraft_group *handle_ = nullptr;
    // Heap-allocated so that its address (the C userdata) survives moves of the Group.
    std::unique_ptr<RoleListener> role_listener_;
};

/// The engine: listeners, flusher and the groups opened on it.
class Engine {
public:
    /// Opens an engine from broker.conf text (may be empty).
    explicit Engine(const std::string &properties = "") { detail::check(rmqraft_engine_open(properties.c_str(), &handle_)); }
    Engine(const Engine &) = delete;
    Engine &operator=(const Engine &) = delete;
    Engine(Engine &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Engine &operator=(Engine &&other) noexcept {
        if (this != &other) {
            close();
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    ~Engine() { close(); }

    /// Closes every group still open on it, then frees it. Idempotent.
    void close() noexcept { rmqraft_engine_close(std::exchange(handle_, nullptr)); }

    explicit operator bool() const noexcept { return handle_ != nullptr; }
    rmqraft_engine *get() const noexcept { return handle_; }

    /// Opens one member of a group from broker.conf text.
    Group open_group(const std::string &properties) {
        rmqraft_group *g = nullptr;
        detail::check(rmqraft_group_open(handle_, properties.c_str(), &g));
        return Group(g);
    }

private:
    rmqraft_engine *handle_ = nullptr;
};

}  // namespace rmqraft

#endif // C++17
#endif  // RMQRAFT_HPP
