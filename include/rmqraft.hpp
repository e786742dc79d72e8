// rmqraft.hpp: a header-only C++17 wrapper over the C ABI in rmqraft.h.
//
// - rmqraft::Engine and rmqraft::Group own their handles (RAII, move-only); the
//   destructor closes. A Group may outlive its Engine: closing the engine closes the
//   member, later calls throw rmqraft::Error with RMQRAFT_ERR_CLOSED.
// - Failures throw rmqraft::Error, which carries the result code and the library's detail
//   (rmqraft_last_error) in what().
// - Callbacks are std::function (lambdas welcome). They run on library threads (see
//   rmqraft.h: the member's role-notification thread for role listeners, the thread that
//   completes appends for async appends), must return promptly and must not throw: an
//   exception escaping a callback calls std::terminate. They must not close the Group or
//   Engine that called them.
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
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
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

private:
    friend class Engine;
    explicit Group(rmqraft_group *handle) : handle_(handle) {}

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
