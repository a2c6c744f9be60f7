#include <signal.h>

#include <catch2/catch.hpp>

#include "restore/tree_plan.h"

using namespace criu;

namespace {

images::PstreeEntry proc(int pid, int ppid, int pgid, int sid, std::vector<int> extra_threads = {}) {
    images::PstreeEntry e;
    e.set_pid(pid);
    e.set_ppid(ppid);
    e.set_pgid(pgid);
    e.set_sid(sid);
    e.add_threads(pid);
    for (int t : extra_threads)
        e.add_threads(t);
    return e;
}

images::PstreeEntry zombie(int pid, int ppid, int pgid, int sid, int status) {
    images::PstreeEntry e = proc(pid, ppid, pgid, sid);
    e.set_zombie(true);
    e.set_exit_code(status);
    return e;
}

std::string refusal(const std::vector<images::PstreeEntry>& t) {
    auto r = plan_tree(t);
    REQUIRE_FALSE(r);
    return r.error().str();
}

std::vector<size_t> children(const std::vector<ForkStep>& steps) {
    std::vector<size_t> out;
    for (const auto& s : steps)
        if (!s.helper)
            out.push_back(s.child);
    return out;
}

}  // namespace

TEST_CASE("plan_tree: sessions, groups, stand-ins and zombies of the e2e tree", "[tree_plan]") {
    // The shape of test/e2e/workloads/tree.c.
    std::vector<images::PstreeEntry> t = {
        proc(100, 0, 100, 100, {101}),  // 0 R
        proc(110, 100, 110, 110),       // 1 S: setsid
        proc(120, 100, 120, 100),       // 2 G: own group
        proc(130, 100, 120, 100),       // 3 G2: joins G
        proc(140, 100, 100, 100),       // 4 O
        proc(150, 100, 145, 145),       // 5 Y: session 145 lost its leader
        zombie(160, 100, 100, 100, 42 << 8),  // 6 Z
        proc(111, 110, 111, 110),       // 7 S1
        proc(121, 120, 120, 100),       // 8 G1
        proc(112, 111, 111, 110),       // 9 S2
        proc(113, 112, 110, 110),       // 10 S3: joins its grandparent's group
    };
    auto r = plan_tree(t);
    REQUIRE(r);
    const TreePlan& p = *r;
    REQUIRE(p.procs.size() == t.size());
    CHECK(p.procs[0].setsid);
    CHECK(p.procs[0].parent == 0);
    CHECK(p.procs[1].setsid);
    CHECK(p.procs[1].parent == 100);
    CHECK(p.procs[2].pgid == 120);
    CHECK(p.procs[3].pgid == 120);
    CHECK_FALSE(p.procs[3].join_after_forks);
    CHECK(p.procs[10].pgid == 110);
    CHECK_FALSE(p.procs[10].join_after_forks);
    // The root forks S, G, G2, O, Z itself, Y through a stand-in with the dead leader's pid.
    CHECK(p.procs[0].early.empty());
    CHECK(children(p.procs[0].late) == std::vector<size_t>{1, 2, 3, 4, 6});
    auto h = std::find_if(p.procs[0].late.begin(), p.procs[0].late.end(), [](auto& s) { return s.helper; });
    REQUIRE(h != p.procs[0].late.end());
    CHECK(h->helper_pid == 145);
    CHECK(h->helper_setsid);
    CHECK(h->helper_children == std::vector<size_t>{5});
    CHECK(p.helper_pids == std::vector<pid_t>{145});
    CHECK(children(p.procs[9].late) == std::vector<size_t>{10});
}

TEST_CASE("plan_tree: a session leader forks children of its old session before setsid", "[tree_plan]") {
    std::vector<images::PstreeEntry> t = {
        proc(10, 0, 10, 10),
        proc(20, 10, 20, 20),  // setsid after forking 30
        proc(30, 20, 10, 10),  // stays in the root's session and group
        proc(40, 20, 20, 20),  // in the new session
    };
    auto r = plan_tree(t);
    REQUIRE(r);
    CHECK(children(r->procs[1].early) == std::vector<size_t>{2});
    CHECK(children(r->procs[1].late) == std::vector<size_t>{3});
}

TEST_CASE("plan_tree: a root that leads nothing keeps criu's session and group", "[tree_plan]") {
    std::vector<images::PstreeEntry> t = {
        proc(10, 0, 5, 5),
        proc(20, 10, 5, 5),
        proc(30, 10, 30, 5),
    };
    auto r = plan_tree(t);
    REQUIRE(r);
    CHECK_FALSE(r->procs[0].setsid);
    CHECK(r->procs[0].pgid == -1);
    CHECK(r->procs[1].pgid == -1);
    CHECK(r->procs[2].pgid == 30);
    CHECK(r->notes.size() == 2);
}

TEST_CASE("plan_tree: a session or group led from outside the pid namespace (shown as 0) is criu's", "[tree_plan]") {
    // criu in a container entered from outside: the kernel shows 0 for leaders it cannot name.
    std::vector<images::PstreeEntry> t = {
        proc(10, 0, 0, 0),
        proc(20, 10, 0, 0),
        proc(30, 10, 30, 0),
        proc(40, 10, 40, 40),
        proc(50, 40, 40, 40),
    };
    auto r = plan_tree(t);
    REQUIRE(r);
    CHECK_FALSE(r->procs[0].setsid);
    CHECK(r->procs[0].pgid == -1);
    CHECK(r->procs[1].pgid == -1);
    CHECK(r->procs[2].pgid == 30);
    CHECK(r->procs[3].setsid);
    CHECK(r->procs[4].pgid == 40);
    // The session visible, only the group outside: the same.
    auto g = plan_tree({proc(10, 0, 0, 7), proc(20, 10, 0, 7)});
    REQUIRE(g);
    CHECK(g->procs[1].pgid == -1);
    // A 0 that is not the root's cannot be told apart from any other outside leader.
    CHECK_THAT(refusal({proc(10, 0, 10, 10), proc(20, 10, 20, 0)}), Catch::Contains("outside the dumper's pid namespace"));
    CHECK_THAT(refusal({proc(10, 0, 10, 10), proc(20, 10, 0, 10)}), Catch::Contains("outside the dumper's pid namespace"));
    CHECK_THAT(refusal({proc(10, 0, -1, 10)}), Catch::Contains("not valid ids"));
}

TEST_CASE("plan_tree: a dead group leader gets a stand-in that forks its members", "[tree_plan]") {
    std::vector<images::PstreeEntry> t = {
        proc(10, 0, 10, 10),
        proc(20, 10, 15, 10),
        proc(30, 10, 15, 10),
        proc(40, 20, 15, 10),  // born in the group from its parent
    };
    auto r = plan_tree(t);
    REQUIRE(r);
    REQUIRE(r->procs[0].late.size() == 1);
    const ForkStep& s = r->procs[0].late[0];
    CHECK(s.helper);
    CHECK(s.helper_pid == 15);
    CHECK_FALSE(s.helper_setsid);
    CHECK(s.helper_children == std::vector<size_t>{1, 2});
    CHECK(r->procs[3].pgid == 15);
}

TEST_CASE("plan_tree: a group created below the joining process is joined after the forks", "[tree_plan]") {
    std::vector<images::PstreeEntry> t = {
        proc(10, 0, 10, 10),
        proc(20, 10, 30, 10),  // joined its child's group
        proc(30, 20, 30, 10),
    };
    auto r = plan_tree(t);
    REQUIRE(r);
    CHECK(r->procs[1].join_after_forks);
    CHECK_FALSE(r->procs[2].join_after_forks);
}

TEST_CASE("plan_tree: refuses broken trees naming the record", "[tree_plan]") {
    CHECK_THAT(refusal({}), Catch::Contains("no process"));
    CHECK_THAT(refusal({proc(10, 3, 10, 10)}), Catch::Contains("must have parent 0"));
    CHECK_THAT(refusal({proc(10, 0, 10, 10), proc(20, 30, 10, 10)}), Catch::Contains("parent 30 is not listed"));
    CHECK_THAT(refusal({proc(10, 0, 10, 10), proc(10, 10, 10, 10)}), Catch::Contains("appears twice"));
    CHECK_THAT(refusal({proc(10, 0, 10, 10, {11}), proc(20, 10, 10, 10, {11})}), Catch::Contains("tid 11"));
    CHECK_THAT(refusal({proc(10, 0, 10, 10), zombie(20, 10, 10, 10, 0), proc(30, 20, 10, 10)}),
               Catch::Contains("is a zombie"));
    CHECK_THAT(refusal({proc(10, 0, 10, 10), zombie(20, 10, 10, 10, 0x137f)}),
               Catch::Contains("not one a process can end with"));
    CHECK_THAT(refusal({proc(10, 0, 10, 10), zombie(20, 10, 10, 10, SIGCHLD)}),
               Catch::Contains("not one a process can end with"));
    CHECK_THAT(refusal({proc(10, 0, 12, 10)}), Catch::Contains("leads its own group"));
    // Session 20 is alive elsewhere in the tree: the parent 30 cannot give it.
    CHECK_THAT(refusal({proc(10, 0, 10, 10), proc(20, 10, 20, 20), proc(30, 10, 30, 30), proc(40, 30, 20, 20)}),
               Catch::Contains("which its parent cannot give it"));
    // A dead session leader whose members have different parents.
    CHECK_THAT(refusal({proc(10, 0, 10, 10), proc(20, 10, 20, 10), proc(30, 10, 25, 25), proc(40, 20, 25, 25)}),
               Catch::Contains("different parents"));
}

TEST_CASE("plan_tree: fd tables shared down the tree are installed once, by the topmost user", "[tree_plan]") {
    // 10 -> 11 (CLONE_FILES) -> 12 (CLONE_FILES); 10 -> 13 (CLONE_FS only); 11 -> 14 (own table).
    auto p11 = proc(11, 10, 10, 10), p12 = proc(12, 11, 10, 10), p13 = proc(13, 10, 10, 10);
    p11.set_shares_files_with_parent(true);
    p12.set_shares_files_with_parent(true);
    p13.set_shares_fs_with_parent(true);
    auto plan = plan_tree({proc(10, 0, 10, 10), p11, p12, p13, proc(14, 11, 10, 10)});
    REQUIRE(plan);
    CHECK(plan->procs[0].files_owner == 0);
    CHECK(plan->procs[0].files_users == std::vector<size_t>{1, 2});
    CHECK(plan->procs[1].files_owner == 0);
    CHECK(plan->procs[2].files_owner == 0);
    CHECK(plan->procs[3].files_owner == 3);
    CHECK(plan->procs[4].files_owner == 4);
    CHECK(plan->procs[1].files_users.empty());
}

TEST_CASE("plan_tree: refuses sharing that cannot be forked", "[tree_plan]") {
    auto root = proc(10, 0, 10, 10);
    root.set_shares_files_with_parent(true);
    CHECK_THAT(refusal({root}), Catch::Contains("the root cannot share"));
    auto z = zombie(11, 10, 10, 10, 0);
    z.set_shares_fs_with_parent(true);
    CHECK_THAT(refusal({proc(10, 0, 10, 10), z}), Catch::Contains("a zombie cannot share"));
    // 12's session leader 11 is gone: 12 is born through a stand-in, not forked by 10 itself.
    auto orphan = proc(12, 10, 12, 11);
    orphan.set_shares_files_with_parent(true);
    CHECK_THAT(refusal({proc(10, 0, 10, 10), orphan}), Catch::Contains("stand-in"));
}
