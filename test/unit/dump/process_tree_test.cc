// The tree walk and the kcmp checks of criu/dump/process_tree against real processes.
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "criu/dump/process_tree.h"

using namespace criu;

namespace {

// A child killed and reaped when the test ends, whatever happens.
struct Child {
    pid_t pid = -1;
    ~Child() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, __WALL);
        }
    }
};

int sleep_forever(void*) {
    for (;;)
        ::pause();
    return 0;
}

// clone() with `flags`; the child pauses until killed. The stack outlives the child (it is
// freed by the caller after the child is reaped).
pid_t clone_pausing(int flags, std::unique_ptr<char[]>& stack) {
    constexpr size_t kStack = 64 * 1024;
    stack = std::make_unique<char[]>(kStack);
    return ::clone(sleep_forever, stack.get() + kStack, flags | SIGCHLD, nullptr);
}

}  // namespace

TEST_CASE("list_tree: children, grandchildren and zombies, parents first", "[process_tree]") {
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    Child child, zombie;
    child.pid = ::fork();
    REQUIRE(child.pid >= 0);
    if (child.pid == 0) {
        ::close(ready[0]);
        pid_t g = ::fork();
        if (g == 0) {
            for (;;)
                ::pause();
        }
        if (::write(ready[1], &g, sizeof(g)) != sizeof(g))
            ::_exit(1);
        for (;;)
            ::pause();
    }
    ::close(ready[1]);
    pid_t grandchild = 0;
    REQUIRE(::read(ready[0], &grandchild, sizeof(grandchild)) == sizeof(grandchild));
    ::close(ready[0]);
    // Not our child: killed at the end, reaped by whoever it is reparented to.
    struct KillOnly {
        pid_t pid;
        ~KillOnly() { ::kill(pid, SIGKILL); }
    } grandchild_guard{grandchild};
    zombie.pid = ::fork();
    if (zombie.pid == 0)
        ::_exit(7);
    siginfo_t si{};
    REQUIRE(::waitid(P_PID, id_t(zombie.pid), &si, WEXITED | WNOWAIT) == 0);

    auto t = list_tree(::getpid());
    REQUIRE(t);
    auto find = [&](pid_t p) {
        return std::find_if(t->begin(), t->end(), [&](const TreeMember& m) { return m.pid == p; });
    };
    REQUIRE(t->front().pid == ::getpid());
    auto c = find(child.pid), g = find(grandchild), z = find(zombie.pid);
    REQUIRE(c != t->end());
    REQUIRE(g != t->end());
    REQUIRE(z != t->end());
    CHECK(c < g);
    CHECK(g->ppid == child.pid);
    CHECK_FALSE(c->zombie);
    CHECK(z->zombie);
    CHECK(z->ppid == ::getpid());
    CHECK(WIFEXITED(z->exit_status));
    CHECK(WEXITSTATUS(z->exit_status) == 7);
}

namespace {

TreeMember member(pid_t pid, pid_t ppid) {
    TreeMember m;
    m.pid = pid;
    m.ppid = ppid;
    return m;
}

}  // namespace

TEST_CASE("tree_sharing_problems: an address space or fd table shared between processes", "[process_tree]") {
    std::unique_ptr<char[]> s1, s2;
    Child plain, vm, files, fs;
    const TreeMember self = member(::getpid(), ::getppid());
    plain.pid = clone_pausing(0, s1);
    REQUIRE(plain.pid > 0);
    CHECK(tree_sharing_problems({self, member(plain.pid, ::getpid())}).empty());

    vm.pid = clone_pausing(CLONE_VM, s2);
    REQUIRE(vm.pid > 0);
    auto p = tree_sharing_problems({self, member(plain.pid, ::getpid()), member(vm.pid, ::getpid())});
    REQUIRE(p.size() == 1);
    CHECK_THAT(p[0], Catch::Contains(fmt::format("pids {}, {}", ::getpid(), vm.pid)));
    CHECK_THAT(p[0], Catch::Contains("share one address space"));

    // An fd table or fs shared with the parent is restorable: the restore forks with the flag.
    std::unique_ptr<char[]> s3, s4;
    files.pid = clone_pausing(CLONE_FILES, s3);
    fs.pid = clone_pausing(CLONE_FS, s4);
    REQUIRE(files.pid > 0);
    REQUIRE(fs.pid > 0);
    const TreeMember mf = member(files.pid, ::getpid()), ms = member(fs.pid, ::getpid());
    CHECK(tree_sharing_problems({self, mf, ms}).empty());
    ParentSharing sf = parent_sharing(mf), ss = parent_sharing(ms), sp = parent_sharing(member(plain.pid, ::getpid()));
    CHECK((sf.files && !sf.fs));
    CHECK((!ss.files && ss.fs));
    CHECK((!sp.files && !sp.fs));

    // Not when the sharer's parent does not share it (here: said to be `plain`).
    p = tree_sharing_problems({self, member(plain.pid, ::getpid()), member(files.pid, plain.pid)});
    REQUIRE(p.size() == 1);
    CHECK_THAT(p[0], Catch::Contains("share one fd table"));
    CHECK_THAT(p[0], Catch::Contains(fmt::format("pid {} does not share it with its parent {}", files.pid, plain.pid)));

    // Nor when the root shares it with its own parent, outside the dump.
    p = tree_sharing_problems({member(files.pid, ::getpid())});
    REQUIRE(p.size() == 1);
    CHECK_THAT(p[0], Catch::Contains(fmt::format("the root {} and its parent {}", files.pid, ::getpid())));
}
