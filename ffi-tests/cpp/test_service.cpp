// The C++ wrapper used the way a C++ service would: an engine hosting the three members
// of one group, lambdas as role listeners and async-append callbacks, the message layer
// (sends, pulls and lookups with lambdas), exceptions for failures, RAII for cleanup.
#include "rmqraft.hpp"

#include "../c/testutil.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

int failures = 0;

#define EXPECT(cond)                                                                   \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond);    \
            failures++;                                                                \
            throw std::runtime_error("expectation failed");                            \
        }                                                                              \
    } while (0)

using Clock = std::chrono::steady_clock;

Clock::time_point deadline(std::chrono::milliseconds d) { return Clock::now() + d * time_scale(); }

// What the service learns from the role listeners, per member.
struct RoleBoard {
    std::mutex mu;
    std::condition_variable changed;
    std::map<int, rmqraft::Role> role;
    std::map<int, int> calls;
    std::atomic<int> off_main_thread{0};
    std::thread::id main_thread = std::this_thread::get_id();

    void on_change(int member, rmqraft::Role r) {
        if (std::this_thread::get_id() != main_thread) off_main_thread++;
        std::lock_guard<std::mutex> lock(mu);
        role[member] = r;
        calls[member]++;
        changed.notify_all();
    }

    bool wait_for(int member, rmqraft::Role r, std::chrono::milliseconds timeout) {
        std::unique_lock<std::mutex> lock(mu);
        return changed.wait_until(lock, deadline(timeout), [&] {
            auto it = role.find(member);
            return it != role.end() && it->second == r;
        });
    }
};

struct Service {
    std::string dir;
    std::vector<int> ports;
    RoleBoard board;  // declared first: the listeners use it until the members are closed
    rmqraft::Engine engine;
    std::vector<rmqraft::Group> members;  // destroyed (closed) before the engine

    std::string props(int i) const {
        std::string peers;
        for (size_t k = 0; k < ports.size(); k++) {
            peers += (k ? ";" : "") + std::string("n") + std::to_string(k) + "-127.0.0.1:" + std::to_string(ports[k]);
        }
        return "dLegerGroup = CppGroup\ndLegerPeers = " + peers + "\ndLegerSelfId = n" + std::to_string(i) +
               "\nstorePathRootDir = " + dir + "\nmappedFileSizeCommitLog = 4194304\nflushDiskType = SYNC_FLUSH\n";
    }

    // Opens the engine and three members; new ports when one was taken meanwhile.
    explicit Service(const std::string &store_dir) : dir(store_dir), engine(engine_props()) {
        for (int attempt = 0;; attempt++) {
            ports = {free_port(), free_port(), free_port()};
            try {
                for (int i = 0; i < 3; i++) members.push_back(engine.open_group(props(i)));
                break;
            } catch (const rmqraft::Error &e) {
                members.clear();
                if (e.code() != RMQRAFT_ERR_IO || attempt == 7) throw;
            }
        }
        for (int i = 0; i < 3; i++) {
            members[static_cast<size_t>(i)].set_role_listener(
                [this, i](rmqraft::Role r, std::uint64_t, std::int32_t) { board.on_change(i, r); });
        }
    }

    int wait_leader(std::chrono::milliseconds timeout) {
        auto until = deadline(timeout);
        while (Clock::now() < until) {
            for (size_t i = 0; i < members.size(); i++) {
                if (!members[i]) continue;
                auto st = members[i].status();
                if (st.role == RMQRAFT_ROLE_LEADER) return static_cast<int>(i);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(2));  // between two polls
        }
        return -1;
    }

    bool wait_committed(size_t member, std::uint64_t index, std::chrono::milliseconds timeout) {
        auto until = deadline(timeout);
        while (Clock::now() < until) {
            if (members[member].status().commit_index >= index) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        return false;
    }
};

void run(const std::string &dir) {
    EXPECT(rmqraft::version() == rmqraft_version_string());
    Service svc(dir);
    int leader = svc.wait_leader(std::chrono::seconds(15));
    EXPECT(leader >= 0);
    auto &lead = svc.members[static_cast<size_t>(leader)];
    EXPECT(svc.board.wait_for(leader, RMQRAFT_ROLE_LEADER, std::chrono::seconds(5)));

    // Synchronous appends, read back on every member.
    std::vector<std::pair<std::uint64_t, std::string>> written;
    for (int k = 0; k < 20; k++) {
        std::string msg = "order-" + std::to_string(k) + std::string(static_cast<size_t>(k) * 37, 'x');
        auto meta = lead.append(msg);
        EXPECT(meta.index >= 1);
        written.emplace_back(meta.index, msg);
    }
    for (size_t i = 0; i < 3; i++) {
        EXPECT(svc.wait_committed(i, written.back().first, std::chrono::seconds(10)));
        for (auto &w : written) {
            rmqraft::EntryMeta meta{};
            auto bytes = svc.members[i].read(w.first, &meta);
            EXPECT(std::string(bytes.begin(), bytes.end()) == w.second);
            EXPECT(meta.index == w.first);
        }
    }
    // An entry larger than the wrapper's first read buffer.
    std::string big(100000, 'b');
    auto big_meta = lead.append(big);
    EXPECT(lead.read_string(big_meta.index) == big);

    // Async appends with lambdas, collected through futures.
    std::vector<std::future<rmqraft::EntryMeta>> futures;
    for (int k = 0; k < 50; k++) {
        auto promise = std::make_shared<std::promise<rmqraft::EntryMeta>>();
        futures.push_back(promise->get_future());
        std::string msg = "async-" + std::to_string(k);
        lead.append_async(msg, [promise](rmqraft_result r, const rmqraft::EntryMeta &meta) {
            if (r == RMQRAFT_OK) {
                promise->set_value(meta);
            } else {
                promise->set_exception(std::make_exception_ptr(rmqraft::Error(r, "async append")));
            }
        });
    }
    for (size_t k = 0; k < futures.size(); k++) {
        EXPECT(futures[k].wait_until(deadline(std::chrono::seconds(20))) == std::future_status::ready);
        auto meta = futures[k].get();
        EXPECT(lead.read_string(meta.index) == "async-" + std::to_string(k));
    }

    // Messages: topics, sends (sync and with a lambda), pulls, lookups and offsets, read
    // back on a follower.
    {
        auto &fol = svc.members[static_cast<size_t>((leader + 1) % 3)];
        lead.topic_update("CppTopic", 4, 4, 6);
        bool listed = false;
        for (auto &t : lead.topics()) listed |= t.name == "CppTopic" && t.read_queues == 4 && t.write_queues == 4 && t.perm == 6;
        EXPECT(listed);
        std::vector<rmqraft::SendResult> sent;
        for (int k = 0; k < 10; k++) {
            sent.push_back(lead.send(rmqraft::Message("CppTopic", "cpp-" + std::to_string(k))
                                         .tags(k % 2 ? "odd" : "even")
                                         .keys("ck" + std::to_string(k))
                                         .property("seq", std::to_string(k))
                                         .queue(3)));
        }
        EXPECT(sent[9].queue_id == 3 && sent[9].queue_offset == 9 && sent[9].msg_id.size() == 32);
        auto promise = std::make_shared<std::promise<rmqraft::SendResult>>();
        auto sent_async = promise->get_future();
        lead.send_async(rmqraft::Message("CppTopic", "cpp-async").queue(3),
                        [promise](rmqraft_result r, const rmqraft::SendResult &res) {
                            if (r == RMQRAFT_OK) {
                                promise->set_value(res);
                            } else {
                                promise->set_exception(std::make_exception_ptr(rmqraft::Error(r, "async send")));
                            }
                        });
        EXPECT(sent_async.wait_until(deadline(std::chrono::seconds(20))) == std::future_status::ready);
        EXPECT(sent_async.get().queue_offset == 10);
        try {
            fol.send(rmqraft::Message("CppTopic", "nope"));
            EXPECT(!"a follower accepted a send");
        } catch (const rmqraft::Error &e) {
            EXPECT(e.code() == RMQRAFT_ERR_NOT_LEADER);
        }
        auto until = deadline(std::chrono::seconds(15));
        while (fol.queue_offsets("CppTopic", 3).max < 11 && Clock::now() < until) {
            std::this_thread::sleep_for(std::chrono::milliseconds(2));  // between two polls
        }
        EXPECT(fol.queue_offsets("CppTopic", 3).max == 11);
        std::vector<std::string> bodies;
        auto next = fol.pull("CppTopic", 3, 0, 64, [&](const rmqraft::MessageView &m) { bodies.emplace_back(m.body()); });
        EXPECT(next == 11 && bodies.size() == 11 && bodies[0] == "cpp-0" && bodies[10] == "cpp-async");
        int odd = 0;
        fol.pull("CppTopic", 3, 0, 64, [&](const rmqraft::MessageView &m) { odd += m.tags() == "odd"; }, "odd");
        EXPECT(odd == 5);
        int calls = 0;
        next = fol.pull("CppTopic", 3, 0, 64, [&](const rmqraft::MessageView &) { return ++calls < 2; });
        EXPECT(calls == 2 && next == 2);
        EXPECT(fol.pull("CppTopic", 3, 500, 64, [](const rmqraft::MessageView &) {}) == 11);
        std::string got;
        fol.query_by_key("CppTopic", "ck4", 8, [&](const rmqraft::MessageView &m) {
            got = m.body();
            EXPECT(m.property("seq") == "4");
        });
        EXPECT(got == "cpp-4");
        for (auto &id : {sent[6].offset_msg_id, sent[6].msg_id}) {
            got.clear();
            fol.view_by_id(id, [&](const auto &m) { got = m.body(); });
            EXPECT(got == "cpp-6");
        }
        try {
            fol.view_by_id("0123456789ABCDEF0123456789ABCDEF", [](const rmqraft::MessageView &) {});
            EXPECT(!"an unknown id was found");
        } catch (const rmqraft::Error &e) {
            EXPECT(e.code() == RMQRAFT_ERR_NOT_FOUND);
        }
        // An exception from the lambda stops the pull and reaches the caller.
        calls = 0;
        try {
            fol.pull("CppTopic", 3, 0, 64, [&](const rmqraft::MessageView &) {
                calls++;
                throw std::logic_error("enough");
            });
            EXPECT(!"the lambda's exception was lost");
        } catch (const std::logic_error &) {
            EXPECT(calls == 1);
        }
        try {
            fol.pull("NoSuchTopic", 0, 0, 64, [](const rmqraft::MessageView &) {});
            EXPECT(!"a pull of an unknown topic succeeded");
        } catch (const rmqraft::Error &e) {
            EXPECT(e.code() == RMQRAFT_ERR_NO_TOPIC);
        }
        EXPECT(lead.fetch_offset("cpp-cg", "CppTopic", 3) == -1);
        lead.commit_offset("cpp-cg", "CppTopic", 3, 7);
        EXPECT(lead.fetch_offset("cpp-cg", "CppTopic", 3) == 7);
        until = deadline(std::chrono::seconds(15));
        while (fol.fetch_offset("cpp-cg", "CppTopic", 3) != 7 && Clock::now() < until) {
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        EXPECT(fol.fetch_offset("cpp-cg", "CppTopic", 3) == 7);
        lead.topic_delete("CppTopic");
        for (auto &t : lead.topics()) EXPECT(t.name != "CppTopic");
    }

    // Errors are exceptions with the code and the detail.
    size_t follower = static_cast<size_t>((leader + 1) % 3);
    try {
        svc.members[follower].append("nope");
        EXPECT(!"a follower accepted an append");
    } catch (const rmqraft::Error &e) {
        EXPECT(e.code() == RMQRAFT_ERR_NOT_LEADER);
        EXPECT(std::string(e.what()).find("RMQRAFT_ERR_NOT_LEADER") == 0);
    }
    try {
        lead.append("", 0);
        EXPECT(!"an empty entry was accepted");
    } catch (const rmqraft::Error &e) {
        EXPECT(e.code() == RMQRAFT_ERR_INVALID_ARGUMENT);
        EXPECT(std::string(e.what()).find("rmqraft_group_append") != std::string::npos);
    }
    try {
        svc.engine.open_group("dLegerGroup = x\n");
        EXPECT(!"a group without peers opened");
    } catch (const rmqraft::Error &e) {
        EXPECT(e.code() == RMQRAFT_ERR_CONFIG);
        EXPECT(std::string(e.what()).find("dLegerPeers") != std::string::npos);
    }

    // Exactly-once appends: a resend answers with the original, a gap throws OUT_OF_ORDER.
    {
        const std::uint64_t producer = 0x5eed00000000cafeULL;
        auto once = lead.append_idempotent(producer, 0, "once");
        auto again = lead.append_idempotent(producer, 0, "once");
        EXPECT(once.index == again.index && once.term == again.term && once.pos == again.pos);
        EXPECT(lead.read_string(once.index) == "once");
        try {
            lead.append_idempotent(producer, 7, "gap");
            EXPECT(!"a sequence gap was accepted");
        } catch (const rmqraft::Error &e) {
            EXPECT(e.code() == RMQRAFT_ERR_OUT_OF_ORDER);
            EXPECT(std::string(e.what()).find("skips ahead") != std::string::npos);
        }
        EXPECT(lead.append_idempotent(producer, 1, "next").index > once.index);
    }

    // Status from a follower names the leader.
    auto st = svc.members[follower].status();
    EXPECT(st.role == RMQRAFT_ROLE_FOLLOWER && st.leader_peer == leader);

    // Group::wait_leader: every member names the leader without polling.
    for (auto &m : svc.members) EXPECT(m.wait_leader(std::chrono::seconds(15)) == leader);
    {
        // A lone member of another group knows no leader: wait_leader throws TIMEOUT.
        rmqraft::Group lone;
        for (int attempt = 0; !lone; attempt++) {
            std::string peers;
            for (int k = 0; k < 3; k++) peers += (k ? ";" : "") + std::string("n") + std::to_string(k) + "-127.0.0.1:" + std::to_string(free_port());
            try {
                lone = svc.engine.open_group("dLegerGroup = CppLone\ndLegerPeers = " + peers + "\ndLegerSelfId = n0\nstorePathRootDir = " +
                                             svc.dir + "/lone\nmappedFileSizeCommitLog = 4194304\n");
            } catch (const rmqraft::Error &e) {
                if (e.code() != RMQRAFT_ERR_IO || attempt == 7) throw;
            }
        }
        EXPECT(lone.status().role == RMQRAFT_ROLE_CANDIDATE);
        try {
            lone.wait_leader(std::chrono::milliseconds(200));
            EXPECT(!"wait_leader on a lone member returned");
        } catch (const rmqraft::Error &e) {
            EXPECT(e.code() == RMQRAFT_ERR_TIMEOUT);
        }
    }

    // Hand leadership to the follower; its listener hears it on a library thread.
    svc.members[static_cast<size_t>(leader)].transfer_leadership("n" + std::to_string(follower));
    EXPECT(svc.board.wait_for(static_cast<int>(follower), RMQRAFT_ROLE_LEADER, std::chrono::seconds(10)));
    EXPECT(svc.board.off_main_thread.load() > 0);
    auto meta = svc.members[follower].append("after transfer");
    EXPECT(svc.members[follower].read_string(meta.index) == "after transfer");

    // Handles move; the moved-from one is empty, the listener keeps working.
    rmqraft::Group moved = std::move(svc.members[follower]);
    EXPECT(!svc.members[follower] && moved);
    EXPECT(moved.status().role == RMQRAFT_ROLE_LEADER);
    svc.members[follower] = std::move(moved);

    // Closing the engine closes the members; calls then throw CLOSED.
    svc.engine.close();
    try {
        svc.members[0].status();
        EXPECT(!"status on a closed member succeeded");
    } catch (const rmqraft::Error &e) {
        EXPECT(e.code() == RMQRAFT_ERR_CLOSED);
    }
}

}  // namespace

int main() {
    char dir[256];
    if (!make_temp_dir(dir, sizeof dir)) {
        std::perror("mkdtemp");
        return 2;
    }
    try {
        run(dir);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "exception: %s\n", e.what());
        failures++;
    }
    remove_tree(dir);
    std::fprintf(stderr, "C++ service test: %s\n", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 1;
}
